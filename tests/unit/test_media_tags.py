"""FLV audio/video tag bodies: real vectors, Enhanced RTMP, truncation, garbage, round trips."""

from __future__ import annotations

import io
import subprocess
import sys

import attrs
import av
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rtmprelay.errors import MediaError
from rtmprelay.media import flv
from rtmprelay.media.tags import (
    AudioTag,
    VideoTag,
    build_aac_tag,
    build_video_tag,
    encode_audio_tag,
    encode_video_tag,
    parse_audio_tag,
    parse_video_tag,
    with_composition_time,
    with_frame_type,
)

# --- vectors taken from ffmpeg 5.1 + libx264 + ffmpeg's aac, 64x48 testsrc2, FLV muxer

#: AVC sequence header, High profile (the record ends with the fd f8 f8 00 trailer).
AVC_HIGH_SEQ = bytes.fromhex(
    "1700000000"
    "0164000affe100186764000aacd9447b011000000300100000030140f122596001000468ef8fcbfdf8f800"
)
#: Constrained Baseline sequence header: no high profile trailer.
AVC_BASELINE_SEQ = bytes.fromhex(
    "1700000000" "0142c00affe100156742c00ada11ec0440000003004000000503c489a801000468ce0fc8"
)
#: A P frame: one 34-byte slice NAL unit, composition time 100 ms (B-frames on).
AVC_INTER = bytes.fromhex(
    "2701000064" "00000022419e414210fffee83bb53229e4dfc8f8659154a642d2b4a6083781985799dfb1aa57"
)
#: AAC sequence header: LC, 44100 Hz, mono, then ffmpeg's SBR sync extension.
AAC_SEQ = bytes.fromhex("af00" "120856e500")
#: A raw AAC frame.
AAC_RAW = bytes.fromhex(
    "af01"
    "013af28b1ad78e7bfd9fbfb7c5ba69a5eaa5c8e3924922ea40ee7f7ce9bb366367f72193e0c33fb8193e0c33fbc2"
    "3e3e0c33fb81c3e00cfee064f80380"
)

# --- Enhanced RTMP vectors, written from the E-RTMP v2 tables

HVC1_RECORD = bytes.fromhex("01016000000000000000000000f000fcfdf8f800000f03")
#: KeyFrame | SequenceStart, hvc1, HEVCDecoderConfigurationRecord.
HEVC_SEQ = b"\x90hvc1" + HVC1_RECORD
#: KeyFrame | CodedFrames, hvc1, SI24 composition time -2, one NAL unit.
HEVC_KEY = b"\x91hvc1" + b"\xff\xff\xfe" + b"\x00\x00\x00\x03\x26\x01\xaf"
#: InterFrame | CodedFramesX, hvc1: no composition time.
HEVC_INTER_X = b"\xa3hvc1" + b"\x00\x00\x00\x03\x02\x01\xd0"
#: KeyFrame | CodedFrames, av01: av01 carries no composition time.
AV1_KEY = b"\x91av01" + b"\x12\x00\x0a\x0b"
#: InterFrame | SequenceEnd, avc1.
AVC1_END = b"\xa2avc1"
#: Metadata (frame type bits ignored), hvc1, AMF "colorInfo" {}.
HEVC_META = b"\x84hvc1" + b"\x02\x00\x09colorInfo\x03\x00\x00\x09"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (AVC_HIGH_SEQ, VideoTag(1, 7, 0, 0, AVC_HIGH_SEQ[5:], False, 5)),
        (AVC_BASELINE_SEQ, VideoTag(1, 7, 0, 0, AVC_BASELINE_SEQ[5:], False, 5)),
        (AVC_INTER, VideoTag(2, 7, 1, 100, AVC_INTER[5:], False, 5)),
        (b"\x17\x02\x00\x00\x00", VideoTag(1, 7, 2, 0, b"", False, 5)),
        (b"\x37\x01\xff\xff\xd8\x00", VideoTag(3, 7, 1, -40, b"\x00", False, 5)),
        (b"\x27\x01\x7f\xff\xff", VideoTag(2, 7, 1, (1 << 23) - 1, b"", False, 5)),
        (b"\x27\x01\x80\x00\x00", VideoTag(2, 7, 1, -(1 << 23), b"", False, 5)),
        # legacy "HEVC in FLV" (codec id 12) shares AVC's header
        (b"\x1c\x00\x00\x00\x00\x01", VideoTag(1, 12, 0, 0, b"\x01", False, 5)),
        # other legacy codecs: one header byte, everything is coded frames
        (b"\x22\xaa\xbb", VideoTag(2, 2, 1, 0, b"\xaa\xbb", False, 1)),
        (b"\x14\x00", VideoTag(1, 4, 1, 0, b"\x00", False, 1)),
        # command frames: a command byte, no picture
        (b"\x57\x01", VideoTag(5, 7, None, 0, b"\x01", False, 1, None, 1)),
        (b"\x57\x00\x00\x00\x00\x00", VideoTag(5, 7, None, 0, b"\x00\x00\x00\x00\x00", False, 1, None, 0)),
        (HEVC_SEQ, VideoTag(1, b"hvc1", 0, 0, HVC1_RECORD, True, 5, 0)),
        (HEVC_KEY, VideoTag(1, b"hvc1", 1, -2, HEVC_KEY[8:], True, 8, 1)),
        (HEVC_INTER_X, VideoTag(2, b"hvc1", 1, 0, HEVC_INTER_X[5:], True, 5, 3)),
        (AV1_KEY, VideoTag(1, b"av01", 1, 0, AV1_KEY[5:], True, 5, 1)),
        (AVC1_END, VideoTag(2, b"avc1", 2, 0, b"", True, 5, 2)),
        (HEVC_META, VideoTag(0, b"hvc1", 4, 0, HEVC_META[5:], True, 5, 4)),
        (b"\x95vp09\x00", VideoTag(1, b"vp09", 5, 0, b"\x00", True, 5, 5)),
        (b"\xd0\x01", VideoTag(5, None, None, 0, b"\x01", True, 1, 0, 1)),
        (b"\x96\x00\x01hvc1", VideoTag(1, None, 6, 0, b"\x00\x01hvc1", True, 1, 6)),
    ],
)
def test_parse_video_vectors(payload: bytes, expected: VideoTag) -> None:
    tag = parse_video_tag(payload)
    assert tag == expected
    assert encode_video_tag(tag) == payload
    assert parse_video_tag(memoryview(payload)) == expected
    assert payload[tag.header_size :] == tag.data


def test_keyframe_and_sequence_header_properties() -> None:
    assert parse_video_tag(AVC_HIGH_SEQ).is_sequence_header
    assert not parse_video_tag(AVC_HIGH_SEQ).is_keyframe
    assert parse_video_tag(HEVC_KEY).is_keyframe
    assert not parse_video_tag(AVC_INTER).is_keyframe
    assert not parse_video_tag(b"\x57\x01").is_keyframe
    assert not parse_video_tag(b"\x96\x00\x01hvc1").is_keyframe


@pytest.mark.parametrize(
    ("payload", "what", "where"),
    [
        (b"", "empty video tag", "video tag byte 0"),
        (b"\x17", "truncated AVC packet type", "video tag byte 1"),
        (b"\x17\x01", "truncated composition time", "video tag byte 2"),
        (b"\x17\x01\x00\x00", "truncated composition time", "video tag byte 2"),
        (b"\x17\x03\x00\x00\x00", "unknown AVC packet type 3", "video tag byte 1"),
        (b"\x07\x01\x00\x00\x00", "unknown video frame type 0", "video tag byte 0"),
        (b"\x67\x01\x00\x00\x00", "unknown video frame type 6", "video tag byte 0"),
        (b"\x77\x01\x00\x00\x00", "unknown video frame type 7", "video tag byte 0"),
        (b"\x18\x00", "unknown video codec id 8", "video tag byte 0"),
        (b"\x10\x00", "unknown video codec id 0", "video tag byte 0"),
        (b"\x57", "truncated video command", "video tag byte 1"),
        (b"\x91hvc", "truncated video FourCC", "video tag byte 1"),
        (b"\x90", "truncated video FourCC", "video tag byte 1"),
        (b"\x91hvc1\x00\x00", "truncated composition time", "video tag byte 5"),
        (b"\x91avc1", "truncated composition time", "video tag byte 5"),
        (b"\x99hvc1\x00\x00\x00", "unknown video packet type 9", "video tag byte 0"),
        (b"\x97hvc1", "unknown video packet type 7", "video tag byte 0"),
        (b"\x81hvc1\x00\x00\x00", "unknown video frame type 0", "video tag byte 0"),
        (b"\xf1hvc1\x00\x00\x00", "unknown video frame type 7", "video tag byte 0"),
        (b"\xd0", "truncated video command", "video tag byte 1"),
    ],
)
def test_video_errors_name_field_and_byte(payload: bytes, what: str, where: str) -> None:
    with pytest.raises(MediaError) as info:
        parse_video_tag(payload)
    assert (info.value.what, info.value.where) == (what, where)


@pytest.mark.parametrize(
    "payload", [AVC_HIGH_SEQ, AVC_INTER, HEVC_SEQ, HEVC_KEY, HEVC_INTER_X, AV1_KEY, AVC1_END, HEVC_META]
)
def test_video_prefixes_raise_media_error_or_parse(payload: bytes) -> None:
    """Every prefix shorter than the header raises MediaError; longer ones parse
    with the data cut short (a tag body's length is its message's length)."""
    header_size = parse_video_tag(payload).header_size
    for n in range(len(payload)):
        prefix = payload[:n]
        if n < header_size:
            with pytest.raises(MediaError):
                parse_video_tag(prefix)
        else:
            assert parse_video_tag(prefix).data == payload[header_size:n]


# --- build_video_tag and with_frame_type


def test_build_video_tag_reproduces_ffmpeg() -> None:
    assert build_video_tag(1, 0, AVC_HIGH_SEQ[5:]) == AVC_HIGH_SEQ
    assert build_video_tag(2, 1, AVC_INTER[5:], composition_time=100) == AVC_INTER
    assert build_video_tag(3, 1, b"\x00", -40) == b"\x37\x01\xff\xff\xd8\x00"


def test_build_enhanced_video_tag() -> None:
    assert build_video_tag(1, 0, HVC1_RECORD, codec=b"hvc1") == HEVC_SEQ
    assert build_video_tag(1, 1, HEVC_KEY[8:], -2, codec=b"hvc1") == HEVC_KEY
    assert build_video_tag(2, 1, HEVC_INTER_X[5:], codec=b"hvc1", ex_packet_type=3) == HEVC_INTER_X
    assert build_video_tag(1, 1, AV1_KEY[5:], codec=b"av01") == AV1_KEY
    assert build_video_tag(2, 2, b"", codec=b"avc1") == AVC1_END
    assert build_video_tag(1, 5, b"\x00", codec=b"vp09") == b"\x95vp09\x00"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame_type": 0, "packet_type": 1},
        {"frame_type": 6, "packet_type": 1},
        {"frame_type": 1, "packet_type": 3},
        {"frame_type": 1, "packet_type": 1, "composition_time": 1 << 23},
        {"frame_type": 1, "packet_type": 1, "composition_time": -(1 << 23) - 1},
        {"frame_type": 1, "packet_type": 1, "codec": 9},
        {"frame_type": 1, "packet_type": 0, "codec": 2},
        {"frame_type": 1, "packet_type": 1, "codec": b"hvc"},
        {"frame_type": 1, "packet_type": 1, "codec": b"av01", "composition_time": 5},
        {"frame_type": 1, "packet_type": 1, "codec": b"hvc1", "ex_packet_type": 3, "composition_time": 5},
        {"frame_type": 1, "packet_type": 0, "codec": b"hvc1", "ex_packet_type": 3},
        {"frame_type": 1, "packet_type": 6, "codec": b"hvc1"},
    ],
)
def test_build_video_tag_rejects_what_cannot_be_written(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_video_tag(data=b"", **kwargs)


@pytest.mark.parametrize(
    ("payload", "frame_type", "expected"),
    [
        (b"\x17\x01\x00\x00\x00\x65", 2, b"\x27\x01\x00\x00\x00\x65"),
        (b"\x27\x01\x00\x00\x00\x41", 1, b"\x17\x01\x00\x00\x00\x41"),
        (b"\x1c\x01\x00\x00\x00", 4, b"\x4c\x01\x00\x00\x00"),
        (HEVC_KEY, 2, b"\xa1" + HEVC_KEY[1:]),
        (HEVC_INTER_X, 1, b"\x93" + HEVC_INTER_X[1:]),
    ],
)
def test_with_frame_type_changes_only_the_frame_type(payload: bytes, frame_type: int, expected: bytes) -> None:
    out = with_frame_type(payload, frame_type)
    assert out == expected
    assert isinstance(out, bytes)
    assert parse_video_tag(out) == attrs.evolve(parse_video_tag(payload), frame_type=frame_type)


def test_with_frame_type_rejects() -> None:
    with pytest.raises(MediaError):
        with_frame_type(b"", 2)
    for bad in (0, 6, 7, 8, -1):
        with pytest.raises(ValueError):
            with_frame_type(AVC_INTER, bad)


@pytest.mark.parametrize("payload", [AVC_INTER, b"\x17\x01\x00\x00\x00\x65", HEVC_KEY, b"\x1c\x01\x00\x00\x00"])
@pytest.mark.parametrize("composition_time", [0, 22, -40, (1 << 23) - 1])
def test_with_composition_time_changes_only_the_composition_time(payload: bytes, composition_time: int) -> None:
    out = with_composition_time(payload, composition_time)
    assert isinstance(out, bytes) and len(out) == len(payload)
    assert parse_video_tag(out) == attrs.evolve(parse_video_tag(payload), composition_time=composition_time)


def test_with_composition_time_rejects_tags_without_one() -> None:
    for payload in (b"", AVC_HIGH_SEQ, HEVC_INTER_X, AV1_KEY, b"\x22\x00\x01", b"\x27\x01\x00"):
        with pytest.raises(MediaError):
            with_composition_time(payload, 10)
    with pytest.raises(ValueError):
        with_composition_time(AVC_INTER, 1 << 23)


# --- audio


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (AAC_SEQ, AudioTag(10, 3, 1, 1, 0, AAC_SEQ[2:], None, None, 2)),
        (AAC_RAW, AudioTag(10, 3, 1, 1, 1, AAC_RAW[2:], None, None, 2)),
        (b"\xae\x01", AudioTag(10, 3, 1, 0, 1, b"", None, None, 2)),
        (b"\x2f\xff\xfb", AudioTag(2, 3, 1, 1, None, b"\xff\xfb")),  # MP3
        (b"\x72\x55", AudioTag(7, 0, 1, 0, None, b"\x55")),  # G.711 A-law
        (b"\x90mp4a\x12\x10", AudioTag(9, 0, 0, 0, 0, b"\x12\x10", b"mp4a", 0, 5)),
        (b"\x91mp4a\x21", AudioTag(9, 0, 0, 1, 1, b"\x21", b"mp4a", 1, 5)),
        (b"\x92mp4a", AudioTag(9, 0, 1, 0, None, b"", b"mp4a", 2, 5)),
        (b"\x91Opus\xfc", AudioTag(9, 0, 0, 1, None, b"\xfc", b"Opus", 1, 5)),
        (b"\x94Opus\x00\x02", AudioTag(9, 1, 0, 0, None, b"\x00\x02", b"Opus", 4, 5)),
        (b"\x95\x00\x01mp4a", AudioTag(9, 1, 0, 1, None, b"\x00\x01mp4a", None, 5, 1)),
    ],
)
def test_parse_audio_vectors(payload: bytes, expected: AudioTag) -> None:
    tag = parse_audio_tag(payload)
    assert tag == expected
    assert encode_audio_tag(tag) == payload
    assert payload[tag.header_size :] == tag.data


def test_audio_properties() -> None:
    assert parse_audio_tag(AAC_SEQ).is_sequence_header
    assert parse_audio_tag(AAC_RAW).is_aac
    assert not parse_audio_tag(AAC_RAW).enhanced
    assert parse_audio_tag(b"\x90mp4a\x12\x10").is_sequence_header
    assert parse_audio_tag(b"\x90mp4a\x12\x10").enhanced
    assert not parse_audio_tag(b"\x91Opus\xfc").is_aac


@pytest.mark.parametrize(
    ("payload", "what", "where"),
    [
        (b"", "empty audio tag", "audio tag byte 0"),
        (b"\xaf", "truncated AAC packet type", "audio tag byte 1"),
        (b"\xaf\x02", "unknown AAC packet type 2", "audio tag byte 1"),
        (b"\xc0\x00", "unknown sound format 12", "audio tag byte 0"),
        (b"\xd0\x00", "unknown sound format 13", "audio tag byte 0"),
        (b"\x90mp4", "truncated audio FourCC", "audio tag byte 1"),
        (b"\x91", "truncated audio FourCC", "audio tag byte 1"),
        (b"\x93mp4a", "unknown audio packet type 3", "audio tag byte 0"),
        (b"\x9fmp4a", "unknown audio packet type 15", "audio tag byte 0"),
    ],
)
def test_audio_errors_name_field_and_byte(payload: bytes, what: str, where: str) -> None:
    with pytest.raises(MediaError) as info:
        parse_audio_tag(payload)
    assert (info.value.what, info.value.where) == (what, where)


def test_build_aac_tag() -> None:
    assert build_aac_tag(0, AAC_SEQ[2:]) == AAC_SEQ
    assert build_aac_tag(1, AAC_RAW[2:]) == AAC_RAW
    assert build_aac_tag(1, b"\x21", header_byte=0xAE) == b"\xae\x01\x21"
    with pytest.raises(ValueError):
        build_aac_tag(2, b"")
    with pytest.raises(ValueError):
        build_aac_tag(1, b"", header_byte=0x2F)


# --- the tags of a whole FLV muxed by PyAV (libx264 with B-frames + aac)


def _flv_tags(data: bytes) -> list[tuple[int, bytes]]:
    assert data[:3] == b"FLV"
    offset = int.from_bytes(data[5:9], "big") + 4
    tags = []
    while offset + 11 <= len(data):
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        tags.append((data[offset], data[offset + 11 : offset + 11 + size]))
        offset += 11 + size + 4
    return tags


def _mux_flv() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flv") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.options = {"preset": "veryfast", "bf": "2", "g": "4"}
        audio = container.add_stream("aac", rate=44100)
        for i in range(12):
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(i * 20 + 16) % 256]) * plane.buffer_size)
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for i in range(5):
            samples = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            samples.sample_rate = 44100
            for plane in samples.planes:
                plane.update(bytes(plane.buffer_size))
            samples.pts = i * 1024
            container.mux(audio.encode(samples))
        container.mux(audio.encode(None))
    return buffer.getvalue()


def test_every_tag_of_a_real_flv() -> None:
    tags = _flv_tags(_mux_flv())
    videos = [parse_video_tag(p) for t, p in tags if t == 9]
    audios = [parse_audio_tag(p) for t, p in tags if t == 8]
    assert videos[0].packet_type == 0 and videos[0].frame_type == 1
    assert videos[0].data[0] == 1  # configurationVersion of the avcC
    assert sum(v.is_keyframe for v in videos) == 3
    assert any(v.composition_time > 0 for v in videos)  # B-frames reorder
    assert all(v.packet_type == 1 for v in videos[1:-1])
    assert videos[-1].packet_type == 2  # ffmpeg's FLV muxer ends with an end of sequence
    assert audios[0].aac_packet_type == 0 and all(a.aac_packet_type == 1 for a in audios[1:])
    for kind, payload in tags:
        if kind == 9:
            assert encode_video_tag(parse_video_tag(payload)) == payload
            assert flv.classify_video(payload)[0] == parse_video_tag(payload).is_keyframe
        elif kind == 8:
            assert encode_audio_tag(parse_audio_tag(payload)) == payload


# --- properties

frame_types = st.integers(1, 5)
si24 = st.integers(-(1 << 23), (1 << 23) - 1)
fourccs = st.sampled_from([b"avc1", b"hvc1", b"av01", b"vp09", b"vp08"]) | st.binary(min_size=4, max_size=4)


@given(frame_types, st.integers(0, 2), st.binary(max_size=64), si24, st.sampled_from([7, 12]))
def test_legacy_avc_round_trip(frame_type: int, packet_type: int, data: bytes, ct: int, codec: int) -> None:
    payload = build_video_tag(frame_type, packet_type, data, ct, codec)
    tag = parse_video_tag(payload)
    if frame_type == 5:  # a command frame: the AVC header is just data then
        assert (tag.packet_type, tag.command, tag.data) == (None, packet_type, payload[1:])
    else:
        assert tag == VideoTag(frame_type, codec, packet_type, ct, data, False, 5)
    assert encode_video_tag(tag) == payload


@given(frame_types.filter(lambda f: f != 5), st.sampled_from([0, 1, 2, 3, 4, 5]), st.binary(max_size=64), si24, fourccs)
def test_enhanced_round_trip(frame_type: int, ex: int, data: bytes, ct: int, fourcc: bytes) -> None:
    packet_type = {3: 1}.get(ex, ex)
    if not (ex == 1 and fourcc in (b"avc1", b"hvc1")):
        ct = 0
    payload = build_video_tag(frame_type, packet_type, data, ct, fourcc, ex_packet_type=ex)
    tag = parse_video_tag(payload)
    assert (tag.frame_type, tag.codec, tag.packet_type, tag.ex_packet_type) == (frame_type, fourcc, packet_type, ex)
    assert (tag.composition_time, tag.data, tag.enhanced) == (ct, data, True)
    assert encode_video_tag(tag) == payload
    assert flv.classify_video(payload)[:2] == (tag.is_keyframe, tag.is_sequence_header)


@given(st.integers(0, 15).filter(lambda f: f not in (9, 12, 13)), st.integers(0, 15), st.integers(0, 1), st.binary(max_size=32))
def test_audio_round_trip(sound_format: int, low: int, aac_type: int, data: bytes) -> None:
    first = (sound_format << 4) | low
    payload = bytes((first, aac_type)) + data if sound_format == 10 else bytes((first,)) + data
    tag = parse_audio_tag(payload)
    assert (tag.sound_format, tag.sound_rate, tag.sound_size, tag.sound_type) == (
        sound_format, low >> 2, (low >> 1) & 1, low & 1,
    )
    assert tag.aac_packet_type == (aac_type if sound_format == 10 else None)
    assert encode_audio_tag(tag) == payload
    assert flv.classify_audio(payload)[1] == tag.is_sequence_header
    if sound_format == 10:
        assert build_aac_tag(aac_type, tag.data, header_byte=first) == payload


@settings(max_examples=500)
@given(st.binary(max_size=16))
@example(b"\x17")
@example(b"\x91hvc1\x00")
def test_video_garbage_raises_only_media_error(payload: bytes) -> None:
    try:
        tag = parse_video_tag(payload)
    except MediaError:
        return
    assert encode_video_tag(tag) == payload
    assert tag.data == payload[tag.header_size :]


@settings(max_examples=500)
@given(st.binary(max_size=16))
def test_audio_garbage_raises_only_media_error(payload: bytes) -> None:
    try:
        tag = parse_audio_tag(payload)
    except MediaError:
        return
    assert encode_audio_tag(tag) == payload
    assert tag.data == payload[tag.header_size :]


@given(st.binary(min_size=1, max_size=16), frame_types)
def test_with_frame_type_touches_nothing_else(payload: bytes, frame_type: int) -> None:
    out = with_frame_type(payload, frame_type)
    assert out[1:] == payload[1:]
    keep = 0x8F if payload[0] & 0x80 else 0x0F
    assert out[0] & keep == payload[0] & keep
    if payload[0] & 0x80:
        assert (out[0] >> 4) & 7 == frame_type
    else:
        assert out[0] >> 4 == frame_type


def test_media_modules_never_import_twisted() -> None:
    code = (
        "import sys; import rtmprelay.media.tags, rtmprelay.media.avcc, rtmprelay.media.aac; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'twisted'], 'twisted imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
