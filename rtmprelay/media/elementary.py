"""FLV audio/video bodies read as H.264 and AAC units, for whatever decodes or
remuxes the relay's streams (both HLS modes): one reading, one set of errors.

``read_video`` gives the AVC sequence header (parsed, and its raw record) or
one access unit (AVCC framed, with its decode and presentation times);
``read_audio`` the AudioSpecificConfig or one raw AAC frame. Anything else a
tag may carry (end of sequence, Enhanced RTMP metadata) is ``None``; a codec
other than H.264/AAC, or a malformed body, raises ``MediaError``.
"""

from __future__ import annotations

import attrs

from rtmprelay.errors import MediaError
from rtmprelay.media.aac import AacConfig, parse_aac_config
from rtmprelay.media.avcc import AVCConfig, parse_avc_config
from rtmprelay.media.tags import (
    AAC_PACKET_RAW,
    AAC_PACKET_SEQUENCE_HEADER,
    PACKET_CODED_FRAMES,
    PACKET_SEQUENCE_HEADER,
    parse_audio_tag,
    parse_video_tag,
)

__all__ = ["AacFrame", "AacSequenceHeader", "AvcAccessUnit", "AvcSequenceHeader", "read_audio", "read_video"]

_H264 = (7, b"avc1")


@attrs.frozen
class AvcSequenceHeader:
    config: AVCConfig
    #: The AVCDecoderConfigurationRecord as sent (a decoder's extradata).
    record: bytes


@attrs.frozen
class AvcAccessUnit:
    #: NAL units, each behind its ``config.nal_length_size``-byte length.
    data: bytes
    dts_ms: int
    pts_ms: int
    key: bool


@attrs.frozen
class AacSequenceHeader:
    config: AacConfig
    #: The AudioSpecificConfig as sent.
    raw: bytes


@attrs.frozen
class AacFrame:
    data: bytes
    timestamp_ms: int


def read_video(timestamp_ms: int, payload: bytes) -> AvcSequenceHeader | AvcAccessUnit | None:
    tag = parse_video_tag(payload)
    if tag.codec not in _H264:
        raise MediaError(f"video codec {tag.codec!r} is not H.264", "video tag byte 0")
    if tag.packet_type == PACKET_SEQUENCE_HEADER:
        record = bytes(tag.data)
        return AvcSequenceHeader(parse_avc_config(record), record)
    if tag.packet_type != PACKET_CODED_FRAMES:
        return None
    return AvcAccessUnit(tag.data, timestamp_ms, timestamp_ms + tag.composition_time, tag.is_keyframe)


def read_audio(timestamp_ms: int, payload: bytes) -> AacSequenceHeader | AacFrame | None:
    tag = parse_audio_tag(payload)
    if tag.aac_packet_type is None:
        raise MediaError(f"audio format {tag.sound_format} is not AAC", "audio tag byte 0")
    if tag.aac_packet_type == AAC_PACKET_SEQUENCE_HEADER:
        raw = bytes(tag.data)
        return AacSequenceHeader(parse_aac_config(raw), raw)
    if tag.aac_packet_type != AAC_PACKET_RAW:
        return None
    return AacFrame(tag.data, timestamp_ms)
