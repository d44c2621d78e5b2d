"""FLV audio and video tag bodies: what an RTMP audio (8) or video (9) message carries.

There is no 11-byte FLV tag header here; a payload starts with the byte that
holds the frame type and codec (video) or the sound format (audio).

Video, legacy form (FLV spec v10.1, E.4.3.1)::

    byte 0   FrameType UB[4] | CodecID UB[4]
    byte 1   AVCPacketType      (CodecID 7 only: 0 sequence header, 1 NALUs, 2 end)
    byte 2-4 CompositionTime SI24, ms (CodecID 7 only)

Video, Enhanced RTMP form (veovera E-RTMP v1/v2, ExVideoTagHeader)::

    byte 0   IsExHeader UB[1]=1 | FrameType UB[3] | VideoPacketType UB[4]
    byte 1-4 FourCC ("avc1", "hvc1", "av01", "vp09", ...)
    byte 5-7 CompositionTime SI24 (CodedFrames of avc1/hvc1 only)

    VideoPacketType: 0 SequenceStart, 1 CodedFrames, 2 SequenceEnd,
    3 CodedFramesX (CodedFrames with an implied composition time of 0),
    4 Metadata (AMF body; FrameType ignored), 5 MPEG2TSSequenceStart,
    6 Multitrack; 7-15 reserved.

Audio (FLV spec E.4.2.1, E-RTMP ExAudioTagHeader)::

    byte 0   SoundFormat UB[4] | SoundRate UB[2] | SoundSize UB[1] | SoundType UB[1]
    byte 1   AACPacketType      (SoundFormat 10 only: 0 sequence header, 1 raw)
    -- or, when SoundFormat is 9 (ExHeader), the low nibble is AudioPacketType
       (0 SequenceStart, 1 CodedFrames, 2 SequenceEnd, 4 MultichannelConfig,
       5 Multitrack) and bytes 1-4 are a FourCC ("mp4a", "Opus", "fLaC", ...).

How this module normalizes:

- ``VideoTag.packet_type`` is 0 (sequence header / SequenceStart), 1 (coded
  frames: AVC NALU, CodedFrames or CodedFramesX) or 2 (end of sequence) for
  every codec; Enhanced RTMP's other packet types keep their own number (4
  Metadata, 5 MPEG2TSSequenceStart, 6 Multitrack), and ``ex_packet_type`` keeps
  the raw one (3 for CodedFramesX). Legacy codecs other than AVC have no packet
  type on the wire: every such tag is ``packet_type`` 1.
- Command frames (FrameType 5, "video info/command", outside Metadata) carry a
  command byte and no picture: ``packet_type`` is None, ``command`` is that
  byte, ``data`` is everything after byte 0 (the command byte included). We read
  the command byte right after byte 0, as E-RTMP v2's pseudocode does for both
  forms (FLV v10.1 put an AVC header before it; both shapes survive, as ``data``
  is kept raw).
- **Multitrack** (video packet type 6, audio packet type 5) is not unpacked:
  the tag parses with ``codec`` None, the packet type set, ``header_size`` 1
  and ``data`` holding everything after byte 0 raw, so a relay can pass it on or
  drop it; it never raises just for being multitrack.
- Enhanced audio with FourCC ``mp4a`` gets ``aac_packet_type`` 0/1 for
  SequenceStart/CodedFrames like legacy AAC, so AAC code need not care which
  header form carried it. ``sound_rate``/``sound_size``/``sound_type`` are
  always the raw bits of byte 0 (meaningless under ExHeader).
- Legacy CodecID 12 is the widespread non-standard "HEVC in FLV" extension
  (SRS, several CDNs); it shares AVC's 5-byte header, so it parses like 7.
- Reserved values (frame types 0, 6, 7; codec ids 0, 1, 8-11, 13-15; sound
  formats 12, 13; packet types not listed above) raise ``MediaError``, as E-RTMP
  asks ("fail in a controlled manner"). An unknown FourCC does not: it is kept;
  only avc1/hvc1 CodedFrames carry a composition time.

This is the hot path (one call per media message): plain indexing and
``int.from_bytes``, no construct. Errors are ``MediaError(what, where)`` with
``where`` naming the byte offset in the tag body ("video tag byte 2").
"""

from __future__ import annotations

import attrs

from rtmprelay.errors import MediaError

__all__ = [
    "AAC_PACKET_RAW",
    "AAC_PACKET_SEQUENCE_HEADER",
    "AUDIO_EX_CODED_FRAMES",
    "AUDIO_EX_MULTICHANNEL_CONFIG",
    "AUDIO_EX_MULTITRACK",
    "AUDIO_EX_SEQUENCE_END",
    "AUDIO_EX_SEQUENCE_START",
    "AudioTag",
    "CODEC_AVC",
    "CODEC_HEVC_LEGACY",
    "EX_CODED_FRAMES",
    "EX_CODED_FRAMES_X",
    "EX_METADATA",
    "EX_MPEG2TS_SEQUENCE_START",
    "EX_MULTITRACK",
    "EX_SEQUENCE_END",
    "EX_SEQUENCE_START",
    "FOURCC_AAC",
    "FOURCC_AV1",
    "FOURCC_AVC",
    "FOURCC_HEVC",
    "FOURCC_OPUS",
    "FOURCC_VP8",
    "FOURCC_VP9",
    "FRAME_COMMAND",
    "FRAME_DISPOSABLE_INTER",
    "FRAME_GENERATED_KEY",
    "FRAME_INTER",
    "FRAME_KEY",
    "PACKET_CODED_FRAMES",
    "PACKET_SEQUENCE_END",
    "PACKET_SEQUENCE_HEADER",
    "SOUND_AAC",
    "SOUND_EX_HEADER",
    "VideoTag",
    "build_aac_tag",
    "build_video_tag",
    "encode_audio_tag",
    "encode_video_tag",
    "parse_audio_tag",
    "parse_video_tag",
    "with_composition_time",
    "with_frame_type",
]

# --- video

FRAME_KEY = 1
FRAME_INTER = 2
FRAME_DISPOSABLE_INTER = 3
FRAME_GENERATED_KEY = 4
FRAME_COMMAND = 5

CODEC_AVC = 7
CODEC_HEVC_LEGACY = 12  # non-standard, AVC-shaped header

#: Normalized ``VideoTag.packet_type`` values.
PACKET_SEQUENCE_HEADER = 0
PACKET_CODED_FRAMES = 1
PACKET_SEQUENCE_END = 2

#: Enhanced RTMP VideoPacketType values (``VideoTag.ex_packet_type``).
EX_SEQUENCE_START = 0
EX_CODED_FRAMES = 1
EX_SEQUENCE_END = 2
EX_CODED_FRAMES_X = 3
EX_METADATA = 4
EX_MPEG2TS_SEQUENCE_START = 5
EX_MULTITRACK = 6

FOURCC_AVC = b"avc1"
FOURCC_HEVC = b"hvc1"
FOURCC_AV1 = b"av01"
FOURCC_VP8 = b"vp08"
FOURCC_VP9 = b"vp09"

_EX_HEADER = 0x80
_VALID_FRAME_TYPES = frozenset(range(1, 6))
#: Legacy codec ids whose header is FrameType|CodecID, PacketType, SI24.
_AVC_LAYOUT = frozenset({CODEC_AVC, CODEC_HEVC_LEGACY})
#: Legacy codec ids with a one-byte header (2 H.263 .. 6 Screen v2).
_LEGACY_CODECS = frozenset({2, 3, 4, 5, 6}) | _AVC_LAYOUT
#: FourCCs whose CodedFrames carry an SI24 composition time.
_CT_FOURCCS = frozenset({FOURCC_AVC, FOURCC_HEVC})
#: ex packet type -> normalized packet type, for those that carry a FourCC.
_EX_WITH_FOURCC = {
    EX_SEQUENCE_START: PACKET_SEQUENCE_HEADER,
    EX_CODED_FRAMES: PACKET_CODED_FRAMES,
    EX_SEQUENCE_END: PACKET_SEQUENCE_END,
    EX_CODED_FRAMES_X: PACKET_CODED_FRAMES,
    EX_METADATA: EX_METADATA,
    EX_MPEG2TS_SEQUENCE_START: EX_MPEG2TS_SEQUENCE_START,
}
_SI24_MIN = -(1 << 23)
_SI24_MAX = (1 << 23) - 1


@attrs.frozen
class VideoTag:
    """A parsed video tag body; ``data`` is everything after the header.

    ``codec`` is the legacy CodecID (an int, 7 for AVC) or the Enhanced RTMP
    FourCC (bytes, b"avc1"), or None for enhanced command and multitrack tags.
    ``composition_time`` is in ms, 0 where the wire has none. ``command`` is
    the command byte of a command frame, else None.
    """

    frame_type: int
    codec: int | bytes | None
    packet_type: int | None
    composition_time: int
    data: bytes
    enhanced: bool
    header_size: int
    ex_packet_type: int | None = None
    command: int | None = None

    @property
    def is_sequence_header(self) -> bool:
        """Codec configuration: SequenceStart (legacy packet type 0) or MPEG2TSSequenceStart."""
        return self.packet_type == PACKET_SEQUENCE_HEADER or self.packet_type == EX_MPEG2TS_SEQUENCE_START

    @property
    def is_keyframe(self) -> bool:
        """A key picture (not a sequence header, end of sequence or command)."""
        return self.frame_type == FRAME_KEY and self.packet_type == PACKET_CODED_FRAMES


def parse_video_tag(payload: bytes) -> VideoTag:
    """Parse a video message payload (legacy or Enhanced RTMP header)."""
    n = len(payload)
    if not n:
        raise MediaError("empty video tag", "video tag byte 0")
    first = payload[0]
    if first & _EX_HEADER:
        return _parse_ex_video(payload, first, n)
    frame_type = first >> 4
    codec = first & 0x0F
    if frame_type not in _VALID_FRAME_TYPES:
        raise MediaError(f"unknown video frame type {frame_type}", "video tag byte 0")
    if codec not in _LEGACY_CODECS:
        raise MediaError(f"unknown video codec id {codec}", "video tag byte 0")
    if frame_type == FRAME_COMMAND:
        if n < 2:
            raise MediaError("truncated video command", "video tag byte 1")
        return VideoTag(frame_type, codec, None, 0, bytes(payload[1:]), False, 1, None, payload[1])
    if codec not in _AVC_LAYOUT:
        return VideoTag(frame_type, codec, PACKET_CODED_FRAMES, 0, bytes(payload[1:]), False, 1)
    if n < 5:
        if n < 2:
            raise MediaError("truncated AVC packet type", "video tag byte 1")
        raise MediaError("truncated composition time", "video tag byte 2")
    packet_type = payload[1]
    if packet_type > PACKET_SEQUENCE_END:
        raise MediaError(f"unknown AVC packet type {packet_type}", "video tag byte 1")
    ct = int.from_bytes(payload[2:5], "big", signed=True)
    return VideoTag(frame_type, codec, packet_type, ct, bytes(payload[5:]), False, 5)


def _parse_ex_video(payload: bytes, first: int, n: int) -> VideoTag:
    frame_type = (first >> 4) & 0x07
    ex = first & 0x0F
    if ex != EX_METADATA and frame_type not in _VALID_FRAME_TYPES:
        raise MediaError(f"unknown video frame type {frame_type}", "video tag byte 0")
    if frame_type == FRAME_COMMAND and ex != EX_METADATA:
        if n < 2:
            raise MediaError("truncated video command", "video tag byte 1")
        return VideoTag(frame_type, None, None, 0, bytes(payload[1:]), True, 1, ex, payload[1])
    if ex == EX_MULTITRACK:
        return VideoTag(frame_type, None, EX_MULTITRACK, 0, bytes(payload[1:]), True, 1, ex)
    packet_type = _EX_WITH_FOURCC.get(ex)
    if packet_type is None:
        raise MediaError(f"unknown video packet type {ex}", "video tag byte 0")
    if n < 5:
        raise MediaError("truncated video FourCC", "video tag byte 1")
    fourcc = bytes(payload[1:5])
    if ex == EX_CODED_FRAMES and fourcc in _CT_FOURCCS:
        if n < 8:
            raise MediaError("truncated composition time", "video tag byte 5")
        ct = int.from_bytes(payload[5:8], "big", signed=True)
        return VideoTag(frame_type, fourcc, packet_type, ct, bytes(payload[8:]), True, 8, ex)
    return VideoTag(frame_type, fourcc, packet_type, 0, bytes(payload[5:]), True, 5, ex)


def _check_frame_type(frame_type: int) -> None:
    if frame_type not in _VALID_FRAME_TYPES:
        raise ValueError(f"frame type must be 1-5, not {frame_type!r}")


def _si24(composition_time: int) -> bytes:
    if not _SI24_MIN <= composition_time <= _SI24_MAX:
        raise ValueError(f"composition time {composition_time} does not fit in SI24")
    return composition_time.to_bytes(3, "big", signed=True)


def build_video_tag(
    frame_type: int,
    packet_type: int,
    data: bytes,
    composition_time: int = 0,
    codec: int | bytes = CODEC_AVC,
    *,
    ex_packet_type: int | None = None,
) -> bytes:
    """A video tag body: legacy form for an int ``codec``, enhanced for a FourCC.

    Legacy AVC (7, or 12): ``packet_type`` 0/1/2 and an SI24 composition time.
    Other legacy codecs: ``packet_type`` must be 1 (there is no such field).
    FourCC: the VideoPacketType written is ``ex_packet_type`` if given, else
    ``packet_type`` (so 1 becomes CodedFrames, never CodedFramesX); the
    composition time is written for CodedFrames of avc1/hvc1 and must be 0
    everywhere else. Command and multitrack tags: see ``encode_video_tag``.
    """
    _check_frame_type(frame_type)
    if isinstance(codec, int):
        if codec not in _LEGACY_CODECS:
            raise ValueError(f"unknown legacy video codec id {codec!r}")
        first = bytes(((frame_type << 4) | codec,))
        if codec in _AVC_LAYOUT:
            if packet_type not in (0, 1, 2):
                raise ValueError(f"AVC packet type must be 0, 1 or 2, not {packet_type!r}")
            return first + bytes((packet_type,)) + _si24(composition_time) + bytes(data)
        if packet_type != PACKET_CODED_FRAMES or composition_time:
            raise ValueError(f"codec {codec} has no packet type or composition time")
        return first + bytes(data)
    fourcc = bytes(codec)
    if len(fourcc) != 4:
        raise ValueError(f"a FourCC is 4 bytes, not {fourcc!r}")
    ex = packet_type if ex_packet_type is None else ex_packet_type
    if ex not in _EX_WITH_FOURCC:
        raise ValueError(f"video packet type {ex!r} cannot be built with a FourCC")
    if _EX_WITH_FOURCC[ex] != packet_type:
        raise ValueError(f"ex packet type {ex} does not match packet type {packet_type}")
    head = bytes((_EX_HEADER | (frame_type << 4) | ex,)) + fourcc
    if ex == EX_CODED_FRAMES and fourcc in _CT_FOURCCS:
        return head + _si24(composition_time) + bytes(data)
    if composition_time:
        raise ValueError(f"{fourcc!r} packet type {ex} carries no composition time")
    return head + bytes(data)


def encode_video_tag(tag: VideoTag) -> bytes:
    """The exact inverse of ``parse_video_tag`` (also for command/multitrack tags).

    Use with ``attrs.evolve(tag, data=...)`` to rewrite a tag's payload while
    keeping its header.
    """
    if tag.enhanced:
        ex = tag.ex_packet_type
        if ex is None or not 0 <= ex <= 15 or not 0 <= tag.frame_type <= 7:
            raise ValueError(f"not an enhanced video tag: {tag!r}")
        first = bytes((_EX_HEADER | (tag.frame_type << 4) | ex,))
        if tag.command is not None or ex == EX_MULTITRACK:
            return first + tag.data
        if not isinstance(tag.codec, bytes) or len(tag.codec) != 4:
            raise ValueError(f"enhanced video tag without a FourCC: {tag!r}")
        if ex == EX_CODED_FRAMES and tag.codec in _CT_FOURCCS:
            return first + tag.codec + _si24(tag.composition_time) + tag.data
        return first + tag.codec + tag.data
    if not isinstance(tag.codec, int) or not 0 <= tag.codec <= 15 or not 0 <= tag.frame_type <= 15:
        raise ValueError(f"not a legacy video tag: {tag!r}")
    first = bytes(((tag.frame_type << 4) | tag.codec,))
    if tag.command is not None or tag.codec not in _AVC_LAYOUT:
        return first + tag.data
    return first + bytes((tag.packet_type,)) + _si24(tag.composition_time) + tag.data


def with_frame_type(payload: bytes, frame_type: int) -> bytes:
    """``payload`` with only its frame type bits changed (e.g. key -> inter).

    Legacy headers keep the frame type in the high nibble of byte 0, enhanced
    ones in bits 4-6 (bit 7 is IsExHeader); nothing else is touched.
    """
    _check_frame_type(frame_type)
    if not payload:
        raise MediaError("empty video tag", "video tag byte 0")
    first = payload[0]
    keep = 0x8F if first & _EX_HEADER else 0x0F
    return bytes(((first & keep) | (frame_type << 4),)) + payload[1:]


def with_composition_time(payload: bytes, composition_time: int) -> bytes:
    """``payload`` with only its composition time (SI24) changed; the NAL units untouched.

    Where the field is: bytes 2-4 of a legacy AVC/HEVC coded frame (packet type 1),
    bytes 5-7 of an enhanced avc1/hvc1 CodedFrames tag. ``MediaError`` for a tag that
    has no composition time (sequence headers, other codecs, CodedFramesX, short
    tags); ``ValueError`` for a time that does not fit in SI24.
    """
    field = _si24(composition_time)
    first = payload[0] if payload else None
    if first is None:
        raise MediaError("empty video tag", "video tag byte 0")
    if first & _EX_HEADER:
        at = 5 if first & 0x0F == EX_CODED_FRAMES and payload[1:5] in _CT_FOURCCS else None
    else:
        at = 2 if first & 0x0F in _AVC_LAYOUT and payload[1:2] == bytes((PACKET_CODED_FRAMES,)) else None
    if at is None or len(payload) < at + 3:
        raise MediaError("a video tag without a composition time", f"video tag byte 0 ({first:#04x})")
    return payload[:at] + field + payload[at + 3:]


# --- audio

SOUND_EX_HEADER = 9
SOUND_AAC = 10

AAC_PACKET_SEQUENCE_HEADER = 0
AAC_PACKET_RAW = 1

#: Enhanced RTMP AudioPacketType values (``AudioTag.ex_packet_type``).
AUDIO_EX_SEQUENCE_START = 0
AUDIO_EX_CODED_FRAMES = 1
AUDIO_EX_SEQUENCE_END = 2
AUDIO_EX_MULTICHANNEL_CONFIG = 4
AUDIO_EX_MULTITRACK = 5

FOURCC_AAC = b"mp4a"
FOURCC_OPUS = b"Opus"

_RESERVED_SOUND_FORMATS = frozenset({12, 13})
_AUDIO_EX_WITH_FOURCC = frozenset(
    {
        AUDIO_EX_SEQUENCE_START,
        AUDIO_EX_CODED_FRAMES,
        AUDIO_EX_SEQUENCE_END,
        AUDIO_EX_MULTICHANNEL_CONFIG,
    }
)


@attrs.frozen
class AudioTag:
    """A parsed audio tag body; ``data`` is everything after the header.

    ``aac_packet_type`` is 0 (AudioSpecificConfig) or 1 (raw frame) for AAC,
    legacy or enhanced "mp4a", else None. Under ExHeader (``sound_format`` 9),
    ``codec`` is the FourCC (None for multitrack) and ``ex_packet_type`` the
    AudioPacketType; the rate/size/type fields are then just the raw bits.
    """

    sound_format: int
    sound_rate: int
    sound_size: int
    sound_type: int
    aac_packet_type: int | None
    data: bytes
    codec: bytes | None = None
    ex_packet_type: int | None = None
    header_size: int = 1

    @property
    def enhanced(self) -> bool:
        return self.sound_format == SOUND_EX_HEADER

    @property
    def is_aac(self) -> bool:
        return self.aac_packet_type is not None

    @property
    def is_sequence_header(self) -> bool:
        """An AAC AudioSpecificConfig, or any Enhanced RTMP audio SequenceStart."""
        if self.sound_format == SOUND_EX_HEADER:
            return self.ex_packet_type == AUDIO_EX_SEQUENCE_START and self.codec is not None
        return self.aac_packet_type == AAC_PACKET_SEQUENCE_HEADER


def parse_audio_tag(payload: bytes) -> AudioTag:
    """Parse an audio message payload (legacy or Enhanced RTMP header).

    An empty payload (the undocumented "audio silence" message some servers
    send) raises ``MediaError``; a caller that wants to pass those on checks
    ``len(payload)`` first.
    """
    n = len(payload)
    if not n:
        raise MediaError("empty audio tag", "audio tag byte 0")
    first = payload[0]
    fmt = first >> 4
    rate = (first >> 2) & 0x03
    size = (first >> 1) & 0x01
    channels = first & 0x01
    if fmt == SOUND_AAC:
        if n < 2:
            raise MediaError("truncated AAC packet type", "audio tag byte 1")
        aac_type = payload[1]
        if aac_type > AAC_PACKET_RAW:
            raise MediaError(f"unknown AAC packet type {aac_type}", "audio tag byte 1")
        return AudioTag(fmt, rate, size, channels, aac_type, bytes(payload[2:]), None, None, 2)
    if fmt == SOUND_EX_HEADER:
        ex = first & 0x0F
        if ex == AUDIO_EX_MULTITRACK:
            return AudioTag(fmt, rate, size, channels, None, bytes(payload[1:]), None, ex, 1)
        if ex not in _AUDIO_EX_WITH_FOURCC:
            raise MediaError(f"unknown audio packet type {ex}", "audio tag byte 0")
        if n < 5:
            raise MediaError("truncated audio FourCC", "audio tag byte 1")
        fourcc = bytes(payload[1:5])
        aac_type = ex if fourcc == FOURCC_AAC and ex <= AUDIO_EX_CODED_FRAMES else None
        return AudioTag(fmt, rate, size, channels, aac_type, bytes(payload[5:]), fourcc, ex, 5)
    if fmt in _RESERVED_SOUND_FORMATS:
        raise MediaError(f"unknown sound format {fmt}", "audio tag byte 0")
    return AudioTag(fmt, rate, size, channels, None, bytes(payload[1:]))


def build_aac_tag(aac_packet_type: int, data: bytes, header_byte: int = 0xAF) -> bytes:
    """A legacy AAC audio tag body. 0xAF is AAC, 44 kHz, 16-bit, stereo: what
    every muxer writes for AAC whatever the real rate (the ASC has the truth)."""
    if header_byte >> 4 != SOUND_AAC or not 0 <= header_byte <= 0xFF:
        raise ValueError(f"header byte 0x{header_byte:02x} is not an AAC header")
    if aac_packet_type not in (AAC_PACKET_SEQUENCE_HEADER, AAC_PACKET_RAW):
        raise ValueError(f"AAC packet type must be 0 or 1, not {aac_packet_type!r}")
    return bytes((header_byte, aac_packet_type)) + bytes(data)


def encode_audio_tag(tag: AudioTag) -> bytes:
    """The exact inverse of ``parse_audio_tag``."""
    fmt = tag.sound_format
    if fmt == SOUND_EX_HEADER:
        ex = tag.ex_packet_type
        if ex is None or not 0 <= ex <= 15:
            raise ValueError(f"ExHeader audio tag without a packet type: {tag!r}")
        first = bytes(((fmt << 4) | ex,))
        if ex == AUDIO_EX_MULTITRACK:
            return first + tag.data
        if not isinstance(tag.codec, bytes) or len(tag.codec) != 4:
            raise ValueError(f"ExHeader audio tag without a FourCC: {tag!r}")
        return first + tag.codec + tag.data
    in_range = 0 <= fmt <= 15 and 0 <= tag.sound_rate <= 3
    if not (in_range and tag.sound_size in (0, 1) and tag.sound_type in (0, 1)):
        raise ValueError(f"audio header fields out of range: {tag!r}")
    first = bytes(((fmt << 4) | (tag.sound_rate << 2) | (tag.sound_size << 1) | tag.sound_type,))
    if fmt == SOUND_AAC:
        if tag.aac_packet_type not in (AAC_PACKET_SEQUENCE_HEADER, AAC_PACKET_RAW):
            raise ValueError(f"AAC tag without an AAC packet type: {tag!r}")
        return first + bytes((tag.aac_packet_type,)) + tag.data
    return first + tag.data
