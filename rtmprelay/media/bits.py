"""Bit-level reading and writing, most significant bit first: u(n), and the
exp-Golomb codes ue(v) and se(v) of ITU-T H.264 9.1.

One implementation for the bit-packed formats the relay reads and writes: H.264
parameter sets and slice headers (``rtmprelay.media.avc``) and the AAC
AudioSpecificConfig and silent frames (``rtmprelay.media.aac``). Their fields are
conditional and escape-coded, which a bit-level construct would only obscure.

``BitReader`` raises ``MediaError`` naming the field and the bit where it
stopped, never ``IndexError``; ``BitReader.truncated`` is the one place that
words a short read, for a format that reports it its own way. ``BitWriter``
raises ``ValueError`` for a value that does not fit its field (our own bug, not
the peer's).
"""

from __future__ import annotations

from rtmprelay.errors import MediaError

__all__ = ["BitReader", "BitWriter", "put_bits"]

_MAX_EXP_GOLOMB_ZEROS = 31


class BitReader:
    """Reads u(n), ue(v), se(v) from bytes: for H.264 an RBSP (emulation
    prevention already removed), for AAC the config or frame as it is.

    ``what`` names the structure in error messages: ``MediaError("truncated SPS:
    need 8 bits for level_idc, 3 left", where="SPS bit 16")``.
    """

    __slots__ = ("_data", "_pos", "_end", "what")

    def __init__(self, data: bytes, what: str = "RBSP", position: int = 0) -> None:
        self._data = bytes(data)
        self._pos = position
        self._end = len(self._data) * 8
        self.what = what

    @property
    def position(self) -> int:
        """Bit offset of the next bit to read."""
        return self._pos

    @property
    def bits_left(self) -> int:
        return self._end - self._pos

    def where(self, position: int | None = None) -> str:
        return f"{self.what} bit {self._pos if position is None else position}"

    def error(self, what: str, position: int | None = None) -> MediaError:
        return MediaError(what, where=self.where(position))

    def truncated(self, n: int, field: str) -> MediaError:
        """What a read past the end raises (the position is where that read started);
        a format that reports truncation its own way overrides this."""
        for_field = f" for {field}" if field else ""
        return self.error(
            f"truncated {self.what}: need {n} bits{for_field}, {max(self.bits_left, 0)} left"
        )

    def u(self, n: int, field: str = "") -> int:
        """n-bit unsigned integer, most significant bit first."""
        if n == 0:
            return 0
        pos = self._pos
        if pos + n > self._end:
            raise self.truncated(n, field)
        first = pos >> 3
        last = (pos + n + 7) >> 3
        value = int.from_bytes(self._data[first:last], "big")
        value >>= last * 8 - pos - n
        self._pos = pos + n
        return value & ((1 << n) - 1)

    def flag(self, field: str = "") -> bool:
        return bool(self.u(1, field))

    def ue(self, field: str = "") -> int:
        """Unsigned exp-Golomb (9.1)."""
        start = self._pos
        zeros = 0
        while True:
            if self._pos >= self._end:
                self._pos = start
                raise self.truncated(zeros + 1, field)
            if self.u(1):
                break
            zeros += 1
            if zeros > _MAX_EXP_GOLOMB_ZEROS:
                raise self.error(
                    f"exp-Golomb code longer than 32 bits for {field or 'a field'}", start
                )
        if self._pos + zeros > self._end:
            self._pos = start
            raise self.truncated(2 * zeros + 1, field)
        return (1 << zeros) - 1 + self.u(zeros, field)

    def se(self, field: str = "") -> int:
        """Signed exp-Golomb (9.1.1): 1, -1, 2, -2, ..."""
        code = self.ue(field)
        return (code + 1) >> 1 if code & 1 else -(code >> 1)

    def more_rbsp_data(self) -> bool:
        """True while there is data before the rbsp_stop_one_bit (the last 1 bit)."""
        data = self._data
        end = len(data)
        while end and data[end - 1] == 0:
            end -= 1
        if not end:
            return False
        last = data[end - 1]
        stop_bit = (end - 1) * 8 + 7 - ((last & -last).bit_length() - 1)
        return self._pos < stop_bit

    def rbsp_trailing_bits(self) -> None:
        """rbsp_stop_one_bit must follow the last field; what follows it is ignored."""
        at = self._pos
        if not self.u(1, "rbsp_stop_one_bit"):
            raise self.error("rbsp_stop_one_bit is 0: extra or misread fields", at)

    def ranged(self, value: int, low: int, high: int, field: str, position: int) -> int:
        if not low <= value <= high:
            raise self.error(f"{field} {value} out of range {low}..{high}", position)
        return value

    def ue_max(self, high: int, field: str) -> int:
        start = self._pos
        return self.ranged(self.ue(field), 0, high, field, start)

    def se_range(self, low: int, high: int, field: str) -> int:
        start = self._pos
        return self.ranged(self.se(field), low, high, field, start)


class BitWriter:
    """Writes u(n), ue(v), se(v) and RBSP trailing bits into an int, MSB first."""

    __slots__ = ("_value", "_bits")

    def __init__(self) -> None:
        self._value = 0
        self._bits = 0

    @property
    def position(self) -> int:
        """Number of bits written so far."""
        return self._bits

    @property
    def byte_aligned(self) -> bool:
        return self._bits % 8 == 0

    def u(self, n: int, value: int) -> BitWriter:
        if value < 0 or value >> n:
            raise ValueError(f"{value} does not fit in {n} bits")
        self._value = (self._value << n) | value
        self._bits += n
        return self

    def flag(self, value: bool) -> BitWriter:
        return self.u(1, 1 if value else 0)

    def ue(self, value: int) -> BitWriter:
        if value < 0:
            raise ValueError(f"ue(v) cannot hold {value}")
        code = value + 1
        length = code.bit_length()
        return self.u(2 * length - 1, code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def bits(self, value: int, n: int) -> BitWriter:
        """Append the low ``n`` bits of ``value`` (n may be large)."""
        return self.u(n, value & ((1 << n) - 1))

    def align(self, bit: int) -> BitWriter:
        """Pad with ``bit`` (0 or 1) to the next byte boundary."""
        pad = -self._bits % 8
        return self.u(pad, (1 << pad) - 1 if bit else 0)

    def rbsp_trailing_bits(self) -> BitWriter:
        self.u(1, 1)
        return self.align(0)

    def bytes(self) -> bytes:
        if self._bits % 8:
            raise ValueError(f"{self._bits} bits are not a whole number of bytes")
        return self._value.to_bytes(self._bits // 8, "big")


def put_bits(buffer: bytearray, offset: int, width: int, value: int) -> None:
    """Overwrite ``width`` bits of ``buffer`` at bit ``offset`` with ``value`` (a fixed-width
    field patched in place: nothing else moves)."""
    if value < 0 or value >> width:
        raise ValueError(f"{value} does not fit in {width} bits")
    first = offset >> 3
    last = (offset + width + 7) >> 3
    span = (last - first) * 8
    shift = span - (offset - first * 8) - width
    current = int.from_bytes(buffer[first:last], "big")
    mask = ((1 << width) - 1) << shift
    current = (current & ~mask) | (value << shift)
    buffer[first:last] = current.to_bytes(last - first, "big")
