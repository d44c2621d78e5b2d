"""What the relay needs to know about an FLV audio or video tag body, cheaply.

Only the first two bytes are looked at: enough to tell sequence headers from
frames and keyframes from the rest, for legacy FLV codecs and for Enhanced
RTMP (the ``IsExHeader`` bit, FourCC codecs).
"""

from __future__ import annotations

#: FLV tag types, which are also the RTMP message types of audio and video.
AUDIO = 8
VIDEO = 9
VIDEO_FRAME_KEY = 1
VIDEO_FRAME_COMMAND = 5  # video info/command frame: no picture
CODEC_AVC = 7
SOUND_AAC = 10
_EX_HEADER = 0x80
_EX_SEQUENCE_START = 0
_EX_SEQUENCE_END = 2
_EX_METADATA = 4
_EX_MPEG2TS_SEQUENCE_START = 5
_EX_MULTITRACK = 6


def is_video_sequence_header(payload: bytes) -> bool:
    if len(payload) < 2:
        return False
    first = payload[0]
    if first & _EX_HEADER:
        return first & 0x0F == _EX_SEQUENCE_START and (first >> 4) & 0x07 != VIDEO_FRAME_COMMAND
    return first & 0x0F == CODEC_AVC and payload[1] == 0 and first >> 4 != VIDEO_FRAME_COMMAND


def is_keyframe(payload: bytes) -> bool:
    """A keyframe that is a picture (not a sequence header or command frame)."""
    if len(payload) < 2:
        return False
    first = payload[0]
    if first & _EX_HEADER:
        packet_type = first & 0x0F
        return (first >> 4) & 0x07 == VIDEO_FRAME_KEY and packet_type not in (
            _EX_SEQUENCE_START,
            _EX_SEQUENCE_END,
            _EX_METADATA,
            _EX_MPEG2TS_SEQUENCE_START,
        )
    if first >> 4 != VIDEO_FRAME_KEY:
        return False
    return not (first & 0x0F == CODEC_AVC and payload[1] != 1)


def is_audio_sequence_header(payload: bytes) -> bool:
    return len(payload) >= 2 and payload[0] >> 4 == SOUND_AAC and payload[1] == 0
