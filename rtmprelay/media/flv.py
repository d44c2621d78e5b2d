"""The one classifier of FLV audio and video tag bodies: what a relay needs to know, cheaply.

``classify_video(payload)`` and ``classify_audio(payload)`` look at the first
bytes only and say whether a tag is a keyframe (a key picture), a sequence
header (codec configuration a decoder needs first), an end of sequence, and
which codec it is. ``media.message.MediaMessage`` calls them once, where a
message is made; every consumer reads the value's fields and never classifies
again. They agree with ``tags.parse_video_tag`` / ``parse_audio_tag`` on every
input (tests/unit/test_media_flv.py pins the cases where the old fast tests did
not):

Video, legacy (FLV v10.1 E.4.3.1): FrameType UB[4] | CodecID UB[4], then for
codec 7 (AVC) and 12 (the widespread non-standard HEVC-in-FLV, same layout)
AVCPacketType (0 sequence header, 1 NALUs, 2 end of sequence) and an SI24
composition time: such a tag shorter than 5 bytes is malformed. Other legacy
codecs (2-6) have no packet type: every tag is a frame.

Video, Enhanced RTMP (IsExHeader, bit 0x80): FrameType UB[3] | VideoPacketType
UB[4], then a FourCC (avc1, hvc1, av01, vp09, ...). SequenceStart (0) and
MPEG2TSSequenceStart (5) are sequence headers, CodedFrames (1) and
CodedFramesX (3) frames (avc1/hvc1 CodedFrames carry 3 more bytes of
composition time), SequenceEnd (2) the end; Metadata (4) and Multitrack (6)
are neither, and reserved packet types (7-15) are malformed.

Command frames (FrameType 5) are no picture; reserved frame types (0, 6, 7)
and codec ids make a malformed tag. A malformed tag classifies as nothing
(not key, not header, codec None): it is passed on like any other frame.

Audio: AAC (SoundFormat 10) with AACPacketType 0 is the sequence header
(AudioSpecificConfig); Enhanced RTMP audio (SoundFormat 9, ExHeader) with
AudioPacketType SequenceStart (0) and a FourCC ("mp4a", "Opus", ...) is one
too. Audio has no keyframes.
"""

from __future__ import annotations

__all__ = [
    "AUDIO",
    "CODEC_AVC",
    "CODEC_HEVC_LEGACY",
    "SOUND_AAC",
    "VIDEO",
    "classify_audio",
    "classify_video",
]

#: FLV tag types, which are also the RTMP message types of audio and video.
AUDIO = 8
VIDEO = 9
VIDEO_FRAME_KEY = 1
VIDEO_FRAME_COMMAND = 5  # video info/command frame: no picture
CODEC_AVC = 7
CODEC_HEVC_LEGACY = 12
SOUND_EX_HEADER = 9
SOUND_AAC = 10

_EX_HEADER = 0x80
_EX_SEQUENCE_START = 0
_EX_CODED_FRAMES = 1
_EX_SEQUENCE_END = 2
_EX_CODED_FRAMES_X = 3
_EX_METADATA = 4
_EX_MPEG2TS_SEQUENCE_START = 5
_EX_MULTITRACK = 6
_AUDIO_EX_SEQUENCE_START = 0
_AUDIO_EX_MULTITRACK = 5
_AUDIO_EX_WITH_FOURCC = frozenset((0, 1, 2, 4))
_RESERVED_SOUND_FORMATS = frozenset((12, 13))

#: Classification results: (keyframe, sequence header, end of sequence, codec).
NOTHING = (False, False, False, None)

# Legacy codecs: AVC-shaped (packet type + SI24) and one-byte headers.
_AVC_LAYOUT = frozenset((CODEC_AVC, CODEC_HEVC_LEGACY))
_ONE_BYTE_CODECS = frozenset((2, 3, 4, 5, 6))
_FOURCCS_WITH_CT = frozenset((b"avc1", b"hvc1"))


def classify_video(payload: bytes) -> tuple[bool, bool, bool, int | bytes | None]:
    """(keyframe, sequence header, end of sequence, codec) of a video tag body.

    ``codec`` is the legacy CodecID (an int) or the FourCC (bytes); None for a
    malformed tag, multitrack or an enhanced command frame (which has no FourCC).
    """
    n = len(payload)
    if n < 2:
        if n and not payload[0] & _EX_HEADER:
            return _legacy_short(payload[0], n)
        return NOTHING
    first = payload[0]
    if first & _EX_HEADER:
        frame_type = (first >> 4) & 0x07
        ex = first & 0x0F
        if ex == _EX_METADATA:
            return NOTHING if n < 5 else (False, False, False, bytes(payload[1:5]))
        if not 1 <= frame_type <= 4 or ex > _EX_MPEG2TS_SEQUENCE_START or n < 5:
            return NOTHING  # command, multitrack, reserved or truncated
        codec = bytes(payload[1:5])
        if ex == _EX_CODED_FRAMES:
            if n < 8 and codec in _FOURCCS_WITH_CT:
                return NOTHING
            return (frame_type == VIDEO_FRAME_KEY, False, False, codec)
        if ex == _EX_CODED_FRAMES_X:
            return (frame_type == VIDEO_FRAME_KEY, False, False, codec)
        if ex == _EX_SEQUENCE_END:
            return (False, False, True, codec)
        return (False, True, False, codec)  # SequenceStart, MPEG2TSSequenceStart
    frame_type = first >> 4
    codec = first & 0x0F
    if codec in _AVC_LAYOUT:
        if frame_type == VIDEO_FRAME_COMMAND:
            return (False, False, False, codec)
        if not 1 <= frame_type <= 4 or n < 5:
            return NOTHING
        packet_type = payload[1]
        if packet_type == 1:
            return (frame_type == VIDEO_FRAME_KEY, False, False, codec)
        if packet_type == 0:
            return (False, True, False, codec)
        if packet_type == 2:
            return (False, False, True, codec)
        return NOTHING
    return _legacy_short(first, n)


def _legacy_short(first: int, n: int) -> tuple[bool, bool, bool, int | None]:
    """A legacy tag of a one-byte-header codec (the AVC layout needs 5 bytes, a command 2)."""
    frame_type = first >> 4
    codec = first & 0x0F
    if codec not in _ONE_BYTE_CODECS or not 1 <= frame_type <= 5:
        return NOTHING
    if frame_type == VIDEO_FRAME_COMMAND:
        return NOTHING if n < 2 else (False, False, False, codec)
    return (frame_type == VIDEO_FRAME_KEY, False, False, codec)


def classify_audio(payload: bytes) -> tuple[bool, bool, bool, int | bytes | None]:
    """(False, sequence header, end of sequence, codec) of an audio tag body.

    ``codec`` is the SoundFormat (10 for AAC) or, under ExHeader, the FourCC;
    None for a malformed tag or multitrack.
    """
    n = len(payload)
    if not n:
        return NOTHING
    first = payload[0]
    sound_format = first >> 4
    if sound_format == SOUND_AAC:
        if n < 2 or payload[1] > 1:
            return NOTHING
        return (False, payload[1] == 0, False, SOUND_AAC)
    if sound_format == SOUND_EX_HEADER:
        ex = first & 0x0F
        if ex not in _AUDIO_EX_WITH_FOURCC or n < 5:
            return NOTHING
        return (False, ex == _AUDIO_EX_SEQUENCE_START, ex == 2, bytes(payload[1:5]))
    if sound_format in _RESERVED_SOUND_FORMATS:
        return NOTHING
    return (False, False, False, sound_format)

