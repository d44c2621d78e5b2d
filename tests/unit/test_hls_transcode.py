"""Transcoder: the old relay's encode (baseline 3.1, 30 fps CFR, IDR every 60, AAC 48k stereo)
from real ffmpeg FLV input, checked by decoding the output with PyAV."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from rtmprelay.errors import ConfigError, MediaError
from rtmprelay.hls.packets import AUDIO, VIDEO, AudioFormat, EncodedPacket, VideoFormat
from rtmprelay.hls.transcode import TranscodeSettings, Transcoder
from rtmprelay.media.avcc import annexb_to_nal_units, nal_unit_type
from rtmprelay.media.tags import build_video_tag
from rtmprelay.testing.flv import read_flv_tags

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

SECONDS = 6


def _make_flv(directory: Path, name: str, *extra: str, rate: int = 25) -> list:
    path = directory / f"{name}.flv"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={rate}",
            "-f", "lavfi", "-i", "sine=sample_rate=44100:frequency=440",
            "-t", str(SECONDS), "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", *extra,
            "-c:a", "aac", "-ac", "1", "-f", "flv", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return [tag for tag in read_flv_tags(path) if tag.tag_type in (8, 9)]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """25 fps with B-frames, mono 44.1 kHz: everything differs from the output settings."""
    return _make_flv(tmp_path_factory.mktemp("transcode"), "src", "-bf", "2")


def transcode(tags, settings=TranscodeSettings(), retime=lambda tag: tag.timestamp):
    transcoder = Transcoder(settings)
    outputs = []
    for tag in tags:
        outputs += transcoder.push(tag.tag_type, retime(tag), tag.payload)
    outputs += transcoder.flush()
    return transcoder, outputs


def packets(outputs, kind):
    return [o for o in outputs if type(o) is EncodedPacket and o.kind == kind]


def decode_video(outputs):
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for packet in packets(outputs, VIDEO):
        frames += decoder.decode(av.Packet(packet.data))
    frames += decoder.decode(None)
    return decoder, frames


def test_video_is_the_old_relays_encode(source):
    transcoder, outputs = transcode(source)
    video = packets(outputs, VIDEO)
    formats = [o for o in outputs if type(o) is VideoFormat]
    assert len(formats) == 1 and formats[0].width == 320 and formats[0].height == 240
    assert formats[0].codec.startswith("avc1.42")  # baseline
    assert formats[0].codec.endswith("1f")  # level 3.1
    # constant 30 fps: one frame number after the other, in a 1/30 time base, no reordering
    assert all(p.time_base == Fraction(1, 30) for p in video)
    pts = [p.pts for p in video]
    assert pts == list(range(pts[0], pts[0] + len(pts)))
    assert all(p.dts == p.pts for p in video)
    # 6 s of 25 fps source become ~6 s at 30 fps (frames repeated, counted)
    assert abs(len(video) - SECONDS * 30) <= 3
    assert transcoder.counters["frames_repeated"] == len(video) - len(source_video(source))
    # an IDR every 60 frames and nowhere else, with SPS and PPS in front
    keys = [i for i, p in enumerate(video) if p.key]
    assert keys == list(range(0, len(video), 60))
    for i in keys:
        types = [nal_unit_type(n) for n in annexb_to_nal_units(video[i].data)]
        assert 7 in types and 8 in types and 5 in types
    decoder, frames = decode_video(outputs)
    assert len(frames) == len(video)
    assert decoder.profile in ("Constrained Baseline", "Baseline")
    assert {f.format.name for f in frames} == {"yuv420p"}


def source_video(tags):
    return [t for t in tags if t.tag_type == 9 and t.payload[1] == 1]


def test_audio_is_aac_48k_stereo_and_in_sync(source):
    _, outputs = transcode(source)
    (fmt,) = [o for o in outputs if type(o) is AudioFormat]
    assert (fmt.sample_rate, fmt.channels) == (48_000, 2)
    audio = packets(outputs, AUDIO)
    assert all(p.time_base == Fraction(1, 48_000) for p in audio)
    steps = {b.pts - a.pts for a, b in zip(audio, audio[1:])}
    assert steps == {1024}
    assert abs(len(audio) * 1024 / 48_000 - SECONDS) < 0.2
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = fmt.config
    frames = []
    for packet in audio:
        frames += decoder.decode(av.Packet(packet.data))
    assert frames and all(f.sample_rate == 48_000 and len(f.layout.channels) == 2 for f in frames)
    # the first audio and the first picture are where the source had them (to a frame)
    first_video_s = float(packets(outputs, VIDEO)[0].seconds())
    first_audio_s = float(audio[0].seconds())
    src_audio_ms = next(t.timestamp for t in source if t.tag_type == 8 and t.payload[1] == 1)
    src_video = source_video(source)[0]
    src_video_ms = src_video.timestamp + int.from_bytes(src_video.payload[2:5], "big", signed=True)
    assert abs((first_audio_s - first_video_s) * 1000 - (src_audio_ms - src_video_ms)) < 1000 / 30 + 22


def test_a_variable_frame_rate_comes_out_constant(source):
    # drop every third picture's worth of time: frames arrive 9-15 fps like the glasses'
    kept = [t for i, t in enumerate(source) if t.tag_type == 8 or t.payload[1] != 1 or i % 3 or t.payload[0] >> 4 == 1]
    transcoder, outputs = transcode(kept)
    pts = [p.pts for p in packets(outputs, VIDEO)]
    assert pts == list(range(pts[0], pts[0] + len(pts)))
    assert transcoder.counters["frames_repeated"] > 0
    _, frames = decode_video(outputs)
    assert len(frames) == len(pts)


def test_a_jump_forward_rebases_instead_of_repeating_for_seconds(source):
    jump = lambda tag: tag.timestamp + (60_000 if tag.timestamp >= 3000 else 0)  # noqa: E731
    transcoder, outputs = transcode(source, retime=jump)
    video = packets(outputs, VIDEO)
    pts = [p.pts for p in video]
    assert pts == list(range(pts[0], pts[0] + len(pts)))
    assert len(video) < SECONDS * 30 + 10  # not 60 s of frozen video
    audio = packets(outputs, AUDIO)
    assert audio[-1].seconds() > 60  # audio follows its timestamps after a jump


def test_settings_change_the_encode(source):
    settings = TranscodeSettings(fps=15, gop=30, profile="main", level="4.0", width=160, height=120, audio_channels=1)
    _, outputs = transcode(source, settings)
    (video_format,) = [o for o in outputs if type(o) is VideoFormat]
    assert (video_format.width, video_format.height) == (160, 120)
    assert video_format.codec.startswith("avc1.4d") and video_format.codec.endswith("28")
    video = packets(outputs, VIDEO)
    assert abs(len(video) - SECONDS * 15) <= 2
    assert [i for i, p in enumerate(video) if p.key] == list(range(0, len(video), 30))
    (audio_format,) = [o for o in outputs if type(o) is AudioFormat]
    assert audio_format.channels == 1


def test_a_broken_frame_raises_and_video_resumes_at_the_next_keyframe(source):
    transcoder = Transcoder()
    outputs = []
    broken_at = None
    raised = []
    for tag in source:
        payload = tag.payload
        if broken_at is None and tag.tag_type == 9 and tag.timestamp > 1000 and payload[0] >> 4 == 2:
            broken_at = tag.timestamp
            payload = build_video_tag(2, 1, b"\x00\x00\x00\x05\x65\xff\xff\xff\xff")
            try:
                outputs += transcoder.push(9, tag.timestamp, payload)
            except MediaError as error:
                raised.append(error.where)
            continue
        outputs += transcoder.push(tag.tag_type, tag.timestamp, payload)
    outputs += transcoder.flush()
    assert raised == [f"video at {broken_at} ms"]
    _, frames = decode_video(outputs)
    assert len(frames) == len(packets(outputs, VIDEO)) > 100


def test_video_before_its_sequence_header_is_a_media_error():
    transcoder = Transcoder()
    with pytest.raises(MediaError, match="sequence header"):
        transcoder.push(9, 0, build_video_tag(1, 1, b"\x00\x00\x00\x01\x65"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"video_bitrate": "fast"}, "not a bit rate"),
        ({"video_bitrate": "-2M"}, "positive"),
        ({"fps": 0}, "fps"),
        ({"audio_channels": 6}, "channels"),
        ({"width": 640}, "width and height"),
        ({"gop": 0}, "GOP"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TranscodeSettings(**kwargs)


def test_bit_rates_read_like_ffmpegs():
    settings = TranscodeSettings(video_bitrate="2M", maxrate="2500k", bufsize=4_000_000, audio_bitrate="128k")
    assert (settings.video_bitrate, settings.maxrate, settings.bufsize, settings.audio_bitrate) == (
        2_000_000, 2_500_000, 4_000_000, 128_000
    )  # fmt: skip


def test_a_resolution_change_mid_stream_keeps_the_output_size(tmp_path):
    """The glasses lower their resolution on a bad network: a new sequence header, smaller
    pictures; the encode goes on at the size it started with, and decodes."""
    big = _make_flv(tmp_path, "big", rate=30)
    small = [t for t in _make_flv_sized(tmp_path, "small", "160x120") if t.tag_type == 9]
    transcoder = Transcoder()
    outputs = []
    for tag in big:
        outputs += transcoder.push(tag.tag_type, tag.timestamp, tag.payload)
    offset = big[-1].timestamp + 33
    for tag in small:  # its sequence header first, then its frames
        outputs += transcoder.push(9, tag.timestamp + offset, tag.payload)
    outputs += transcoder.flush()
    assert [(f.width, f.height) for f in outputs if type(f) is VideoFormat] == [(320, 240)]
    _, frames = decode_video(outputs)
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    assert len(frames) >= 2 * SECONDS * 30 - 5


def test_video_only_gives_video_packets_only(tmp_path):
    tags = [t for t in _make_flv(tmp_path, "mute", rate=30) if t.tag_type == 9]
    _, outputs = transcode(tags)
    assert not [o for o in outputs if type(o) in (AudioFormat,) or (type(o) is EncodedPacket and o.kind == AUDIO)]
    assert len(packets(outputs, VIDEO)) >= SECONDS * 30 - 2


def _make_flv_sized(directory: Path, name: str, size: str) -> list:
    path = directory / f"{name}.flv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-t", str(SECONDS),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-f", "flv", str(path)],
        check=True,
        timeout=60,
    )  # fmt: skip
    return [tag for tag in read_flv_tags(path) if tag.tag_type in (8, 9)]
