"""The RTMP handshake, both sides, plain and digest schemes, without I/O.

Wire layout::

    C0/S0  1 byte     RTMP version: 3 (6, 8 and 9 are RTMPE, not supported)
    C1/S1  1536 bytes time (4, big-endian) | version (4) | 1528 random bytes
    C2/S2  1536 bytes the answer to the peer's C1/S1

**Plain scheme** (C1 bytes 4-7 zero, as librtmp without SWF verification and
GStreamer's rtmp2 send): the answer to a packet is that packet echoed.

**Digest scheme** (the Flash Player 9 handshake; what ffmpeg and librtmp with SWF
verification send, and what nginx-rtmp answers): C1 and S1 each carry a 32-byte
HMAC-SHA256 of the packet minus those 32 bytes, at an offset computed from the
packet's own bytes, in one of two layouts (elsewhere called "scheme 0" and
"scheme 1"; here ``scheme`` means plain or digest)::

    layout 0: offset = sum(packet[8:12])    % 728 + 12
    layout 1: offset = sum(packet[772:776]) % 728 + 776

A server puts its S1 digest in the layout the client used.

C1's digest is keyed with the first 30 bytes of the Flash Player key, S1's with the
first 36 bytes of the Flash Media Server key. The answer to a digest packet is 1504
random bytes followed by HMAC-SHA256 of them, keyed with HMAC-SHA256(peer's digest,
own full key): S2 uses the 68-byte server key and C1's digest, C2 the 62-byte
player key and S1's digest.

A server that cannot find a digest in a C1 whose version is nonzero answers plain,
as nginx-rtmp and SRS do. Nobody checks C2 strictly; both ffmpeg (when playing) and
librtmp (with SWF verification) refuse an S2 whose digest is wrong.

Both classes follow h11's shape: ``receive_data(data) -> bytes to send``; the time
field and the random bytes come in from outside (``epoch``, ``random_bytes``) so a
test can pin every byte.
"""

from __future__ import annotations

import enum
import hmac
import os
from typing import Callable, Literal

import construct as c

from rtmprelay.errors import HandshakeError

__all__ = [
    "CLIENT_VERSION",
    "FLASH_PLAYER_KEY",
    "FLASH_SERVER_KEY",
    "HANDSHAKE_SIZE",
    "HandshakePacket",
    "RTMP_VERSION",
    "SERVER_VERSION",
    "ClientHandshake",
    "ServerHandshake",
    "digest_offset",
    "find_digest",
]

RTMP_VERSION = 3
HANDSHAKE_SIZE = 1536
DIGEST_SIZE = 32
RANDOM_SIZE = HANDSHAKE_SIZE - 8
ANSWER_RANDOM_SIZE = HANDSHAKE_SIZE - DIGEST_SIZE  # 1504

_KEY_TAIL = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
#: 62 bytes; C1 digests use the first 30 ("Genuine Adobe Flash Player 001").
FLASH_PLAYER_KEY = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
#: 68 bytes; S1 digests use the first 36 ("Genuine Adobe Flash Media Server 001").
FLASH_SERVER_KEY = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
_PLAYER_KEY_OPEN = FLASH_PLAYER_KEY[:30]
_SERVER_KEY_OPEN = FLASH_SERVER_KEY[:36]

#: Flash Player 9.0.124.2, the version ffmpeg claims in its digest C1.
CLIENT_VERSION = bytes((9, 0, 124, 2))
#: What nginx-rtmp claims in S1 (13.14.10.13). Clients only look at whether it is
#: nonzero, and ffmpeg at whether its first byte is at least 3.
SERVER_VERSION = bytes((0x0D, 0x0E, 0x0A, 0x0D))

_RTMPE_VERSIONS = frozenset({6, 8, 9})

#: C1 and S1 (also the shape of a plain C2/S2).
HandshakePacket = c.Struct(
    "time" / c.Int32ub,
    "version" / c.Bytes(4),
    "random" / c.Bytes(RANDOM_SIZE),
)

#: The byte where each layout's four offset bytes start.
_LAYOUT_BASE = {0: 8, 1: 772}

Scheme = Literal["plain", "digest"]
RandomBytes = Callable[[int], bytes]


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def digest_offset(packet: bytes, layout: int) -> int:
    """Where the 32 digest bytes of a C1/S1 start, in layout 0 or 1."""
    base = _LAYOUT_BASE[layout]
    return sum(packet[base : base + 4]) % 728 + base + 4


def _packet_digest(packet: bytes, offset: int, key: bytes) -> bytes:
    return _hmac_sha256(key, packet[:offset] + packet[offset + DIGEST_SIZE :])


def find_digest(packet: bytes, key: bytes) -> tuple[int, int] | None:
    """``(layout, offset)`` of a valid digest in a C1/S1, or ``None``.

    ``key`` is the open part of the sender's key (30 bytes of the player key for
    C1, 36 of the server key for S1). Layout 0 is tried first: every client seen
    uses it (nginx-rtmp and ffmpeg try layout 1 first; a packet valid in both
    layouts has probability 2**-256).
    """
    for layout in (0, 1):
        offset = digest_offset(packet, layout)
        expected = _packet_digest(packet, offset, key)
        if hmac.compare_digest(expected, packet[offset : offset + DIGEST_SIZE]):
            return layout, offset
    return None


def _make_challenge(
    time: int, version: bytes, random_bytes: RandomBytes, key: bytes | None, layout: int
) -> bytes:
    """A C1/S1: with a digest at ``layout`` signed by ``key``, or plain if no key."""
    packet = HandshakePacket.build(
        {
            "time": time & 0xFFFFFFFF,
            "version": version,
            "random": _random(random_bytes, RANDOM_SIZE),
        }
    )
    if key is None:
        return packet
    offset = digest_offset(packet, layout)
    digest = _packet_digest(packet, offset, key)
    return packet[:offset] + digest + packet[offset + DIGEST_SIZE :]


def _answer_key(peer_digest: bytes, own_full_key: bytes) -> bytes:
    return _hmac_sha256(own_full_key, peer_digest)


def _make_answer(peer_digest: bytes, own_full_key: bytes, random_bytes: RandomBytes) -> bytes:
    """A digest-form C2/S2: 1504 random bytes, then their HMAC."""
    body = _random(random_bytes, ANSWER_RANDOM_SIZE)
    return body + _hmac_sha256(_answer_key(peer_digest, own_full_key), body)


def _answer_is_valid(answer: bytes, own_digest: bytes, peer_full_key: bytes) -> bool:
    """Whether a C2/S2 is the digest answer to the packet that carried ``own_digest``."""
    body, signature = answer[:ANSWER_RANDOM_SIZE], answer[ANSWER_RANDOM_SIZE:]
    expected = _hmac_sha256(_answer_key(own_digest, peer_full_key), body)
    return hmac.compare_digest(expected, signature)


def _random(random_bytes: RandomBytes, n: int) -> bytes:
    data = bytes(random_bytes(n))
    if len(data) != n:
        raise ValueError(f"random_bytes({n}) returned {len(data)} bytes")
    return data


def _check_version(byte: int, where: str) -> None:
    if byte == RTMP_VERSION:
        return
    if byte in _RTMPE_VERSIONS:
        raise HandshakeError(
            f"RTMPE (encrypted RTMP, version {byte}) is not supported", where=where
        )
    raise HandshakeError(f"unsupported RTMP version 0x{byte:02x}", where=where)


class _StepMachine:
    """Both sides read fixed-size packets in a fixed order: a table of
    ``state -> (bytes needed, handler)`` run until the data runs out.
    Bytes after the last packet are the peer's first chunks: ``leftover``."""

    _STEPS: dict
    _state: enum.Enum
    _buffer: bytearray
    leftover: bytes

    def _run_steps(self, data: bytes, done: enum.Enum) -> bytes:
        if self._state is done:
            self.leftover += data
            return b""
        self._buffer += data
        out = bytearray()
        while self._state is not done:
            need, handler = self._STEPS[self._state]
            if len(self._buffer) < need:
                break
            chunk = bytes(self._buffer[:need])
            del self._buffer[:need]
            out += handler(self, chunk)
        if self._state is done:
            self.leftover = bytes(self._buffer)
            self._buffer.clear()
        return bytes(out)


class _ServerState(enum.Enum):
    C0 = "waiting for C0"
    C1 = "waiting for C1"
    C2 = "waiting for C2"
    DONE = "done"


class ServerHandshake(_StepMachine):
    """The server side: reads C0 C1 C2, answers S0 S1 S2 as soon as C1 is in.

    ``receive_data(data)`` returns the bytes to send now (S0+S1+S2 once, else
    ``b""``). Once ``done``, every byte after C2 is in ``leftover``, for the chunk
    reader; bytes passed to ``receive_data`` after ``done`` are appended to
    ``leftover`` too (and nothing is returned), so an adapter may keep feeding this
    object until it sees ``done`` without splitting its reads.

    After C1: ``scheme`` is ``"digest"`` or ``"plain"`` (a nonzero version without
    a valid digest counts as plain), ``client_version`` is C1[4:8] and
    ``client_time`` C1[0:4]; ``digest_layout`` is 0 or 1 for digest, else None.
    C2's content is not checked (clients differ), only its length; it is kept
    in ``c2``.
    """

    def __init__(
        self,
        *,
        random_bytes: RandomBytes = os.urandom,
        epoch: int = 0,
        version: bytes = SERVER_VERSION,
    ) -> None:
        if len(version) != 4:
            raise ValueError("version must be 4 bytes")
        self._random_bytes = random_bytes
        self._epoch = epoch
        self._version = version
        self._state = _ServerState.C0
        self._buffer = bytearray()
        self.leftover = b""
        self.scheme: Scheme | None = None
        self.client_version: bytes | None = None
        self.client_time: int | None = None
        self.digest_layout: int | None = None
        self.c2: bytes | None = None

    @property
    def done(self) -> bool:
        return self._state is _ServerState.DONE

    def receive_data(self, data: bytes) -> bytes:
        return self._run_steps(data, _ServerState.DONE)

    def _on_c0(self, c0: bytes) -> bytes:
        _check_version(c0[0], "C0")
        self._state = _ServerState.C1
        return b""

    def _on_c1(self, c1: bytes) -> bytes:
        parsed = HandshakePacket.parse(c1)
        self.client_time = parsed.time
        self.client_version = parsed.version
        found = None
        if parsed.version != b"\0\0\0\0":
            found = find_digest(c1, _PLAYER_KEY_OPEN)
        if found is None:
            self.scheme = "plain"
            s1 = _make_challenge(self._epoch, b"\0\0\0\0", self._random_bytes, None, 0)
            s2 = c1
        else:
            layout, offset = found
            self.scheme = "digest"
            self.digest_layout = layout
            s1 = _make_challenge(
                self._epoch, self._version, self._random_bytes, _SERVER_KEY_OPEN, layout
            )
            client_digest = c1[offset : offset + DIGEST_SIZE]
            s2 = _make_answer(client_digest, FLASH_SERVER_KEY, self._random_bytes)
        self._state = _ServerState.C2
        return bytes((RTMP_VERSION,)) + s1 + s2

    def _on_c2(self, c2: bytes) -> bytes:
        self.c2 = c2
        self._state = _ServerState.DONE
        return b""

    _STEPS = {
        _ServerState.C0: (1, _on_c0),
        _ServerState.C1: (HANDSHAKE_SIZE, _on_c1),
        _ServerState.C2: (HANDSHAKE_SIZE, _on_c2),
    }


class _ClientState(enum.Enum):
    START = "initiate() not called"
    S0 = "waiting for S0"
    S1 = "waiting for S1"
    S2 = "waiting for S2"
    DONE = "done"


class ClientHandshake(_StepMachine):
    """The client side: ``initiate()`` gives C0+C1; ``receive_data`` gives C2.

    ``scheme="digest"`` sends a Flash Player 9 C1 (``version``, default 9.0.124.2,
    digest in layout 0); ``scheme="plain"`` sends version zero. C2 is the digest
    answer when this is a digest handshake and S1 carries a valid server digest,
    else S1 echoed.

    S2 is checked only where it can be: after a digest C1 and an S1 with a valid
    server digest, ``server_verified`` says whether S2 carried the matching digest;
    it is ``None`` otherwise. With ``strict=True`` a digest handshake also fails
    (``HandshakeError``) on an S1 without a server digest or an S2 that does not
    match, as ffmpeg does when playing; the default lets them through, as ffmpeg
    does when publishing, since some servers answer loosely.

    ``done`` once S2 is in; bytes after S2, and any fed after ``done``, go to
    ``leftover``.
    """

    def __init__(
        self,
        scheme: Scheme = "digest",
        *,
        random_bytes: RandomBytes = os.urandom,
        epoch: int = 0,
        version: bytes = CLIENT_VERSION,
        strict: bool = False,
    ) -> None:
        if scheme not in ("plain", "digest"):
            raise ValueError(f"scheme must be 'plain' or 'digest', not {scheme!r}")
        if len(version) != 4:
            raise ValueError("version must be 4 bytes")
        if scheme == "digest" and version == b"\0\0\0\0":
            raise ValueError("a digest C1 needs a nonzero version")
        self.scheme = scheme
        self._random_bytes = random_bytes
        self._epoch = epoch
        self._version = version
        self._strict = strict
        self._state = _ClientState.START
        self._buffer = bytearray()
        self._c1 = b""
        self._c1_digest: bytes | None = None
        self._s1_digest: bytes | None = None
        self.leftover = b""
        self.server_version: bytes | None = None
        self.server_time: int | None = None
        self.server_verified: bool | None = None

    @property
    def done(self) -> bool:
        return self._state is _ClientState.DONE

    def initiate(self) -> bytes:
        """C0 + C1. Call once, before ``receive_data``."""
        if self._state is not _ClientState.START:
            raise RuntimeError("initiate() was already called")
        if self.scheme == "digest":
            self._c1 = _make_challenge(
                self._epoch, self._version, self._random_bytes, _PLAYER_KEY_OPEN, 0
            )
            offset = digest_offset(self._c1, 0)
            self._c1_digest = self._c1[offset : offset + DIGEST_SIZE]
        else:
            self._c1 = _make_challenge(self._epoch, b"\0\0\0\0", self._random_bytes, None, 0)
        self._state = _ClientState.S0
        return bytes((RTMP_VERSION,)) + self._c1

    def receive_data(self, data: bytes) -> bytes:
        if self._state is _ClientState.START:
            raise RuntimeError("call initiate() before receive_data()")
        return self._run_steps(data, _ClientState.DONE)

    def _on_s0(self, s0: bytes) -> bytes:
        _check_version(s0[0], "S0")
        self._state = _ClientState.S1
        return b""

    def _on_s1(self, s1: bytes) -> bytes:
        parsed = HandshakePacket.parse(s1)
        self.server_time = parsed.time
        self.server_version = parsed.version
        self._state = _ClientState.S2
        if self.scheme == "plain":
            return s1
        found = find_digest(s1, _SERVER_KEY_OPEN) if parsed.version != b"\0\0\0\0" else None
        if found is None:
            if self._strict:
                raise HandshakeError("S1 carries no valid server digest", where="S1")
            return s1
        offset = found[1]
        self._s1_digest = s1[offset : offset + DIGEST_SIZE]
        return _make_answer(self._s1_digest, FLASH_PLAYER_KEY, self._random_bytes)

    def _on_s2(self, s2: bytes) -> bytes:
        if self._c1_digest is not None and self._s1_digest is not None:
            self.server_verified = _answer_is_valid(s2, self._c1_digest, FLASH_SERVER_KEY)
            if self._strict and not self.server_verified:
                raise HandshakeError(
                    "S2 digest does not answer our C1", where=f"S2 byte {ANSWER_RANDOM_SIZE}"
                )
        self._state = _ClientState.DONE
        return b""

    _STEPS = {
        _ClientState.S0: (1, _on_s0),
        _ClientState.S1: (HANDSHAKE_SIZE, _on_s1),
        _ClientState.S2: (HANDSHAKE_SIZE, _on_s2),
    }
