"""media.flv, the one classifier, and media.message.MediaMessage, the value it classifies for.

The classifier must agree with the full parser (media.tags) on every input;
the cases listed first are where the relay's old fast tests did not.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rtmprelay.errors import MediaError
from rtmprelay.media import flv
from rtmprelay.media.message import MediaMessage
from rtmprelay.media.tags import parse_audio_tag, parse_video_tag


def _by_parser(payload: bytes) -> tuple[bool, bool, bool, object]:
    """What the full parser says, in the classifier's terms."""
    try:
        tag = parse_video_tag(payload)
    except MediaError:
        return flv.NOTHING
    if tag.codec is None:
        return flv.NOTHING
    return (tag.is_keyframe, tag.is_sequence_header, tag.packet_type == 2, tag.codec)


def _audio_by_parser(payload: bytes) -> tuple[bool, bool, bool, object]:
    try:
        tag = parse_audio_tag(payload)
    except MediaError:
        return flv.NOTHING
    if tag.enhanced and tag.codec is None:
        return flv.NOTHING
    codec = tag.codec if tag.enhanced else tag.sound_format
    return (False, tag.is_sequence_header, tag.enhanced and tag.ex_packet_type == 2, codec)


# (payload, keyframe, header, end, codec): where the old media/flv.py and media/tags.py disagreed.
DISAGREED = [
    # legacy HEVC (CodecID 12, AVC layout): a sequence header, not a keyframe
    (b"\x1c\x00\x00\x00\x00\x01", False, True, False, 12),
    (b"\x1c\x01\x00\x00\x00\x00", True, False, False, 12),
    (b"\x1c\x02\x00\x00\x00", False, False, True, 12),
    # Enhanced RTMP MPEG2TSSequenceStart is a sequence header (a late joiner needs it), not a keyframe
    (b"\x95av01\x00", False, True, False, b"av01"),
    # Enhanced RTMP Multitrack and reserved packet types: neither keyframe nor header
    (b"\x96\x00\x01hvc1", False, False, False, None),
    (b"\x97hvc1", False, False, False, None),
    (b"\x9fhvc1", False, False, False, None),
    # truncated headers are malformed: no classification
    (b"\x17\x01", False, False, False, None),
    (b"\x90hv", False, False, False, None),
    (b"\x91hvc1\x00", False, False, False, None),  # CodedFrames of hvc1 carries a composition time
    # Enhanced RTMP CodedFramesX of hvc1 (no composition time) is a keyframe
    (b"\x93hvc1\x00\x00", True, False, False, b"hvc1"),
    (b"\x91av01\x12", True, False, False, b"av01"),
    (b"\x90vp09\x01", False, True, False, b"vp09"),
    (b"\xa1av01\x12", False, False, False, b"av01"),  # inter
    # a command frame is no picture
    (b"\x57\x01", False, False, False, 7),
    (b"\xd1\x01", False, False, False, None),
]


@pytest.mark.parametrize(("payload", "keyframe", "header", "end", "codec"), DISAGREED)
def test_video_cases_that_disagreed(payload, keyframe, header, end, codec) -> None:
    assert flv.classify_video(payload) == (keyframe, header, end, codec)
    assert _by_parser(payload) == (keyframe, header, end, codec)


AUDIO_CASES = [
    (b"\xaf\x00\x12\x10", True, 10),
    (b"\xaf\x01\x21", False, 10),
    (b"\x90mp4a\x12\x10", True, b"mp4a"),  # Enhanced RTMP audio SequenceStart (the old test missed it)
    (b"\x90Opus\x01", True, b"Opus"),
    (b"\x91mp4a\x21", False, b"mp4a"),
    (b"\x2f\x00", False, 2),  # MP3 has no sequence header
    (b"\xaf", False, None),
    (b"\xaf\x02", False, None),
    (b"\x95\x00", False, None),  # multitrack
]


@pytest.mark.parametrize(("payload", "header", "codec"), AUDIO_CASES)
def test_audio_cases(payload, header, codec) -> None:
    assert flv.classify_audio(payload)[1:4:2] == (header, codec)
    assert _audio_by_parser(payload)[1:4:2] == (header, codec)


@settings(max_examples=2000)
@given(st.binary(max_size=12))
@example(b"\x1c\x00\x00\x00\x00")
@example(b"\x95hvc1")
def test_video_agrees_with_the_parser(payload: bytes) -> None:
    assert flv.classify_video(payload) == _by_parser(payload)


@settings(max_examples=2000)
@given(st.binary(max_size=12))
def test_audio_agrees_with_the_parser(payload: bytes) -> None:
    assert flv.classify_audio(payload) == _audio_by_parser(payload)


@given(st.sampled_from([0x80, 0x90, 0xA0, 0x10, 0x20]), st.sampled_from(range(16)), st.sampled_from([b"avc1", b"hvc1", b"av01", b"vp09"]), st.binary(max_size=6))
def test_enhanced_video_agrees_with_the_parser(high: int, low: int, fourcc: bytes, rest: bytes) -> None:
    payload = bytes((high | low,)) + fourcc + rest
    assert flv.classify_video(payload) == _by_parser(payload)


def test_the_value_is_classified_once_and_retimed_without_classifying() -> None:
    key = MediaMessage.of(flv.VIDEO, 40, b"\x17\x01\x00\x00\x00\x00\x00\x00\x01\x65")
    assert (key.keyframe, key.header, key.end, key.codec) == (True, False, False, 7)
    moved = key.retimed(80)
    assert moved == attrs.evolve(key, timestamp=80)
    assert moved.payload is key.payload
    assert key.retimed(40) is key
    header = MediaMessage.of(flv.AUDIO, 0, b"\xaf\x00\x12\x10")
    assert header.header and not header.keyframe and header.is_audio
    data = MediaMessage.of(18, 5, b"\x02\x00\x0aonMetaData")
    assert (data.keyframe, data.header, data.codec) == (False, False, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        key.timestamp = 0
