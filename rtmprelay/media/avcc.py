"""The AVC decoder configuration record and NAL units in AVCC and Annex B framing.

AVCDecoderConfigurationRecord (ISO/IEC 14496-15, 5.2.4.1), what an FLV/RTMP AVC
sequence header carries after its 5-byte tag header::

    byte 0   configurationVersion = 1
    byte 1   AVCProfileIndication   (profile_idc of the SPS)
    byte 2   profile_compatibility  (the constraint flags byte of the SPS)
    byte 3   AVCLevelIndication
    byte 4   reserved '111111'b | lengthSizeMinusOne UB[2]   (0, 1 or 3)
    byte 5   reserved '111'b | numOfSequenceParameterSets UB[5]
             { UI16 sequenceParameterSetLength, SPS NAL unit } x n
             UI8 numOfPictureParameterSets
             { UI16 pictureParameterSetLength, PPS NAL unit } x n
             [high profiles (avc.HIGH_PROFILES): chroma_format,
              bit depths and SPS extensions; some muxers omit it]

Everything after the PPS list is kept raw in ``AVCConfig.ext``: the high
profile trailer when present, and whatever a muxer appended otherwise, so
``build_avc_config(parse_avc_config(b)) == b``. Reserved bits are accepted
whatever their value and written as ones (0xFC, 0xE0), as ffmpeg, x264 and OBS
write them; a record with zeroed reserved bits comes back normalized.

The record is cold (once per stream) and declared with construct; NAL unit
splitting is hot (once per video message) and uses ``struct``/``memoryview``.
"""

from __future__ import annotations

import struct
from typing import Iterable

import attrs
import construct as c

from rtmprelay.errors import MediaError

# NAL unit types (table 7-1) and the NAL header byte are avc's; exported here too,
# NAL_NON_IDR and NAL_IDR being avc's NAL_SLICE and NAL_IDR_SLICE.
from rtmprelay.media.avc import (
    NAL_AUD,
    NAL_END_OF_SEQUENCE,
    NAL_END_OF_STREAM,
    NAL_FILLER,
    NAL_PPS,
    NAL_SEI,
    NAL_SLICE_A,
    NAL_SLICE_B,
    NAL_SLICE_C,
    NAL_SPS,
    NAL_SPS_EXT,
    nal_ref_idc,
    nal_unit_type,
)
from rtmprelay.media.avc import NAL_IDR_SLICE as NAL_IDR
from rtmprelay.media.avc import NAL_SLICE as NAL_NON_IDR

__all__ = [
    "AVCConfig",
    "NAL_AUD",
    "NAL_END_OF_SEQUENCE",
    "NAL_END_OF_STREAM",
    "NAL_FILLER",
    "NAL_IDR",
    "NAL_NON_IDR",
    "NAL_PPS",
    "NAL_SEI",
    "NAL_SLICE_A",
    "NAL_SLICE_B",
    "NAL_SLICE_C",
    "NAL_SPS",
    "NAL_SPS_EXT",
    "annexb_to_nal_units",
    "build_avc_config",
    "join_nal_units",
    "nal_ref_idc",
    "nal_unit_type",
    "nal_units_to_annexb",
    "parse_avc_config",
    "split_nal_units",
]

_WHERE = "avc config byte {}"


class _Located(c.Subconstruct):
    """Parse ``subcon``; a short read there becomes ``MediaError("truncated <what>")``
    naming the byte where the field starts (construct itself only names a path)."""

    def __init__(self, what: str, subcon: c.Construct) -> None:
        super().__init__(subcon)
        self.what = what

    def _parse(self, stream, context, path):  # noqa: ANN001, ANN202 - construct's signature
        offset = c.stream_tell(stream, path)
        try:
            return self.subcon._parsereport(stream, context, path)
        except c.StreamError:
            raise MediaError(f"truncated {self.what}", _WHERE.format(offset)) from None

    def _build(self, obj, stream, context, path):  # noqa: ANN001, ANN202
        return self.subcon._build(obj, stream, context, path)

    def _sizeof(self, context, path):  # noqa: ANN001, ANN202
        return self.subcon._sizeof(context, path)


def _parameter_set(what: str) -> c.Construct:
    return _Located(what, c.Prefixed(c.Int16ub, c.GreedyBytes))


_RECORD = c.Struct(
    "version" / _Located("configuration version", c.Int8ub),
    "profile" / _Located("profile", c.Int8ub),
    "profile_compat" / _Located("profile compatibility", c.Int8ub),
    "level" / _Located("level", c.Int8ub),
    "length_byte"
    / _Located(
        "NAL length size",
        c.BitStruct("reserved" / c.BitsInteger(6), "length_size_minus_one" / c.BitsInteger(2)),
    ),
    "sps_byte"
    / _Located("SPS count", c.BitStruct("reserved" / c.BitsInteger(3), "count" / c.BitsInteger(5))),
    "sps" / c.Array(c.this.sps_byte.count, _parameter_set("SPS")),
    "pps" / c.PrefixedArray(_Located("PPS count", c.Int8ub), _parameter_set("PPS")),
    "ext" / c.GreedyBytes,
)

_LENGTH_SIZES = (1, 2, 4)


def _tuple_of_bytes(items: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(bytes(item) for item in items)


@attrs.frozen
class AVCConfig:
    """An AVCDecoderConfigurationRecord; ``sps``/``pps`` are whole NAL units."""

    version: int
    profile: int
    profile_compat: int
    level: int
    nal_length_size: int
    sps: tuple[bytes, ...] = attrs.field(converter=_tuple_of_bytes)
    pps: tuple[bytes, ...] = attrs.field(converter=_tuple_of_bytes)
    ext: bytes = attrs.field(default=b"", converter=bytes)


def parse_avc_config(data: bytes) -> AVCConfig:
    """Parse a record; ``MediaError`` names the field and its byte offset.

    Checked beyond the layout: version 1, a NAL length size of 1, 2 or 4, and
    that every SPS/PPS entry is a non-empty NAL unit of type 7/8.
    """
    data = bytes(data)
    try:
        parsed = _RECORD.parse(data)
    except c.ConstructError as exc:  # not expected: every field is _Located
        raise MediaError(f"malformed AVC config ({exc})", _WHERE.format(0)) from None
    if parsed.version != 1:
        raise MediaError(f"unsupported AVC config version {parsed.version}", _WHERE.format(0))
    length_size = parsed.length_byte.length_size_minus_one + 1
    if length_size not in _LENGTH_SIZES:
        raise MediaError(f"invalid NAL length size {length_size}", _WHERE.format(4))
    offset = 6
    for what, nal_type, units in (("SPS", NAL_SPS, parsed.sps), ("PPS", NAL_PPS, parsed.pps)):
        if what == "PPS":
            offset += 1
        for index, unit in enumerate(units):
            if not unit:
                raise MediaError(f"empty {what} {index}", _WHERE.format(offset))
            if unit[0] & 0x1F != nal_type:
                raise MediaError(
                    f"{what} {index} has NAL unit type {unit[0] & 0x1F}", _WHERE.format(offset + 2)
                )
            offset += 2 + len(unit)
    return AVCConfig(
        version=parsed.version,
        profile=parsed.profile,
        profile_compat=parsed.profile_compat,
        level=parsed.level,
        nal_length_size=length_size,
        sps=parsed.sps,
        pps=parsed.pps,
        ext=parsed.ext,
    )


def build_avc_config(cfg: AVCConfig) -> bytes:
    """The record's bytes, reserved bits set; ``ValueError`` for what cannot fit."""
    if cfg.nal_length_size not in _LENGTH_SIZES:
        raise ValueError(f"NAL length size must be 1, 2 or 4, not {cfg.nal_length_size!r}")
    if len(cfg.sps) > 31:
        raise ValueError(f"at most 31 SPS fit in a record, not {len(cfg.sps)}")
    if len(cfg.pps) > 255:
        raise ValueError(f"at most 255 PPS fit in a record, not {len(cfg.pps)}")
    for unit in cfg.sps + cfg.pps:
        if len(unit) > 0xFFFF:
            raise ValueError(f"parameter set of {len(unit)} bytes does not fit a UI16 length")
    try:
        return _RECORD.build(
            {
                "version": cfg.version,
                "profile": cfg.profile,
                "profile_compat": cfg.profile_compat,
                "level": cfg.level,
                "length_byte": {"reserved": 0x3F, "length_size_minus_one": cfg.nal_length_size - 1},
                "sps_byte": {"reserved": 0x07, "count": len(cfg.sps)},
                "sps": list(cfg.sps),
                "pps": list(cfg.pps),
                "ext": cfg.ext,
            }
        )
    except c.ConstructError as exc:
        raise ValueError(f"cannot build AVC config: {exc}") from None


# --- NAL units in AVCC framing (hot path)

_LENGTH_STRUCTS = {1: struct.Struct(">B"), 2: struct.Struct(">H"), 4: struct.Struct(">I")}


def _length_struct(length_size: int) -> struct.Struct:
    try:
        return _LENGTH_STRUCTS[length_size]
    except KeyError:
        raise ValueError(f"NAL length size must be 1, 2 or 4, not {length_size!r}") from None


def split_nal_units(data: bytes, length_size: int = 4) -> list[bytes]:
    """The NAL units of an AVCC-framed access unit (each prefixed by its length).

    Zero-length units are kept (as ``b""``) so that ``join_nal_units`` gives the
    input back; filter them out if you don't want them. A length that runs past
    the end raises ``MediaError`` naming the byte where that length field starts.
    """
    unpack_from = _length_struct(length_size).unpack_from
    view = memoryview(data)
    end = len(view)
    units = []
    offset = 0
    while offset < end:
        start = offset + length_size
        if start > end:
            raise MediaError(
                f"truncated NAL unit length ({end - offset} of {length_size} bytes)",
                f"NAL unit length at byte {offset}",
            )
        (size,) = unpack_from(view, offset)
        stop = start + size
        if stop > end:
            raise MediaError(
                f"NAL unit length {size} overruns the data by {stop - end} bytes",
                f"NAL unit length at byte {offset}",
            )
        units.append(bytes(view[start:stop]))
        offset = stop
    return units


def join_nal_units(nals: Iterable[bytes], length_size: int = 4) -> bytes:
    """AVCC framing: each unit prefixed by its big-endian length."""
    length = _length_struct(length_size)
    limit = 1 << (8 * length_size)
    parts = []
    for nal in nals:
        if len(nal) >= limit:
            raise ValueError(
                f"NAL unit of {len(nal)} bytes does not fit a {length_size}-byte length"
            )
        parts.append(length.pack(len(nal)))
        parts.append(nal)
    return b"".join(parts)


# --- Annex B (start codes), for tests and encoders that emit it


def annexb_to_nal_units(data: bytes) -> list[bytes]:
    """Split an Annex B byte stream on 00 00 01 / 00 00 00 01 start codes.

    Bytes before the first start code and trailing zero bytes of each unit
    (``trailing_zero_8bits``, and the first zero of a 4-byte start code) are
    dropped; units that are empty after that are skipped. Data with no start
    code at all raises ``MediaError``; empty data gives ``[]``.
    """
    data = bytes(data)
    if not data:
        return []
    start = data.find(b"\x00\x00\x01")
    if start < 0:
        raise MediaError("no Annex B start code", "annex b byte 0")
    units = []
    pos = start + 3
    while True:
        following = data.find(b"\x00\x00\x01", pos)
        unit = data[pos:] if following < 0 else data[pos:following]
        unit = unit.rstrip(b"\x00")
        if unit:
            units.append(unit)
        if following < 0:
            return units
        pos = following + 3


def nal_units_to_annexb(nals: Iterable[bytes]) -> bytes:
    """Annex B byte stream with 4-byte start codes (what x264 writes)."""
    return b"".join(b"\x00\x00\x00\x01" + bytes(nal) for nal in nals)
