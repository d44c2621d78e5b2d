"""FlvSegmenter (mpegts): real H.264 + AAC FLV from ffmpeg in, MPEG-TS segments + m3u8 out."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import pytest

from rtmprelay.errors import MediaError
from rtmprelay.hls.segmenter import FlvSegmenter, SegmentSettings
from rtmprelay.testing.flv import read_flv_tags

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

FPS = 30
FRAME_S = 1 / FPS


def _make_flv(directory: Path, seconds: int) -> list:
    path = directory / f"in{seconds}.flv"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=160x96:rate={FPS}",
            "-f", "lavfi", "-i", "sine",
            "-t", str(seconds),
            "-c:v", "libx264", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
            "-c:a", "aac", "-f", "flv", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return [tag for tag in read_flv_tags(path) if tag.tag_type in (8, 9)]


@pytest.fixture(scope="module")
def tags9(tmp_path_factory):
    return _make_flv(tmp_path_factory.mktemp("flv"), 9)


@pytest.fixture(scope="module")
def tags14(tmp_path_factory):
    return _make_flv(tmp_path_factory.mktemp("flv"), 14)


def _coded(tags, kind):
    return [t for t in tags if t.tag_type == kind and not t.is_header and t.payload[1:2] == b"\x01"]


def _push_all(segmenter, tags):
    for tag in tags:
        segmenter.push(tag.tag_type, tag.timestamp, tag.payload)


def _parse_m3u8(text):
    """(header tags, [(duration, uri, discontinuity)], ended)."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    headers, segments, ended = {}, [], False
    duration, discontinuity = None, False
    for line in lines[1:]:
        if line == "#EXT-X-ENDLIST":
            ended = True
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].rstrip(","))
        elif line.startswith("#EXT-X-"):
            key, _, value = line[1:].partition(":")
            headers[key] = value
        else:
            segments.append((duration, line, discontinuity))
            duration, discontinuity = None, False
    return headers, segments, ended


def _decode(path):
    """(video frames, audio frames, first video frame is key) of one segment file."""
    with av.open(str(path)) as container:
        kinds = {s.type for s in container.streams}
        assert kinds == {"video", "audio"}
        video = audio = 0
        first_key = None
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                if first_key is None:
                    first_key = bool(frame.key_frame)
                video += 1
            else:
                audio += 1
    return video, audio, first_key


def _ffmpeg_errors(playlist):
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(playlist), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_segments_are_two_seconds_and_decode_whole(tags9, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings())
    _push_all(segmenter, tags9)
    segmenter.finish()

    headers, segments, ended = _parse_m3u8((tmp_path / "index.m3u8").read_text())
    assert ended
    assert headers["EXT-X-VERSION"] == "3"
    assert headers["EXT-X-TARGETDURATION"] == "2"  # keyframes every 60 frames: 2.000 s
    assert headers["EXT-X-MEDIA-SEQUENCE"] == "0"
    assert [uri for _, uri, _ in segments] == [f"seg{i}.ts" for i in range(5)]
    for duration, _, discontinuity in segments[:-1]:
        assert abs(duration - 2.0) <= FRAME_S
        assert not discontinuity
    assert abs(segments[-1][0] - 1.0) <= FRAME_S

    video_total = audio_total = 0
    for _, uri, _ in segments:
        video, audio, first_key = _decode(tmp_path / uri)
        assert first_key is True
        assert video > 0 and audio > 0
        video_total += video
        audio_total += audio
    assert video_total == len(_coded(tags9, 9))
    assert audio_total == len(_coded(tags9, 8))
    assert not list(tmp_path.glob("*.tmp"))
    assert _ffmpeg_errors(tmp_path / "index.m3u8") == ""


def test_window_keeps_five_and_deletes_older_files(tags14, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings(window=5))
    _push_all(segmenter, tags14)
    headers, segments, ended = _parse_m3u8((tmp_path / "index.m3u8").read_text())
    assert not ended  # still live: the 7th segment is open
    assert [uri for _, uri, _ in segments] == [f"seg{i}.ts" for i in range(1, 6)]
    assert headers["EXT-X-MEDIA-SEQUENCE"] == "1"

    segmenter.finish()
    headers, segments, ended = _parse_m3u8((tmp_path / "index.m3u8").read_text())
    assert ended
    assert headers["EXT-X-MEDIA-SEQUENCE"] == "2"
    names = [uri for _, uri, _ in segments]
    assert names == [f"seg{i}.ts" for i in range(2, 7)]
    # seg0 and seg1 left the window but stay for window + 1 more segments (RFC 8216 6.2.2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["seg0.ts", "seg1.ts", *names, "index.m3u8"])
    assert _ffmpeg_errors(tmp_path / "index.m3u8") == ""


def test_segments_out_of_the_window_are_deleted_window_plus_one_segments_later(tags14, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings(window=1))
    _push_all(segmenter, tags14)
    segmenter.finish()
    _, segments, _ = _parse_m3u8((tmp_path / "index.m3u8").read_text())
    assert [uri for _, uri, _ in segments] == ["seg6.ts"]
    # seg0..seg5 departed; the two latest are kept, the older ones deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.m3u8", "seg4.ts", "seg5.ts", "seg6.ts"]


def test_restart_marks_a_discontinuity(tags9, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings(window=10))
    half = [t for t in tags9 if t.timestamp < 4500]
    _push_all(segmenter, half)
    segmenter.restart()
    _push_all(segmenter, tags9)  # the publisher's clock starts again at 0
    segmenter.finish()

    text = (tmp_path / "index.m3u8").read_text()
    headers, segments, ended = _parse_m3u8(text)
    assert ended
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    flags = [discontinuity for _, _, discontinuity in segments]
    # 0-2, 2-4, 4-4.5 before the restart; the next segment carries the tag
    assert flags == [False, False, False, True, False, False, False, False]
    # cut mid-GOP: 0.5 s of decode time, plus the B-frames' reorder delay (up to 2 frames)
    assert 0.5 - FRAME_S <= segments[2][0] <= 0.5 + 2 * FRAME_S
    for _, uri, _ in segments:
        assert _decode(tmp_path / uri)[2] is True
    assert _ffmpeg_errors(tmp_path / "index.m3u8") == ""


def test_no_endlist_until_finish(tags9, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings())
    _push_all(segmenter, tags9)
    assert "#EXT-X-ENDLIST" not in (tmp_path / "index.m3u8").read_text()
    segmenter.finish()
    assert (tmp_path / "index.m3u8").read_text().endswith("#EXT-X-ENDLIST\n")
    segmenter.finish()  # twice is harmless


def test_bad_frame_raises_and_video_resumes_at_next_keyframe(tags9, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings())
    video = _coded(tags9, 9)
    bad = video[10]  # an inter frame in the first GOP
    dropped = 0
    for tag in tags9:
        if tag is bad:
            broken = tag.payload[:5] + b"\x00\x00\xff\xff" + tag.payload[9:]
            with pytest.raises(MediaError, match="NAL unit length"):
                segmenter.push(tag.tag_type, tag.timestamp, broken)
            dropped = 1
            continue
        if dropped and tag.tag_type == 9 and tag.timestamp < 2000:
            dropped += 1
        segmenter.push(tag.tag_type, tag.timestamp, tag.payload)
    segmenter.finish()

    _, segments, _ = _parse_m3u8((tmp_path / "index.m3u8").read_text())
    frames = sum(_decode(tmp_path / uri)[0] for _, uri, _ in segments)
    assert frames == len(video) - dropped
    assert _ffmpeg_errors(tmp_path / "index.m3u8") == ""


def test_frame_before_sequence_header_is_a_media_error(tags9, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings())
    first = _coded(tags9, 9)[0]
    with pytest.raises(MediaError, match="before the AVC sequence header"):
        segmenter.push(9, 0, first.payload)
    with pytest.raises(MediaError):
        segmenter.push(9, 0, b"")


def test_packet_api_writes_mpegts_and_removes_its_files(tmp_path_factory):
    """Segmenter fed EncodedPackets (encoder time bases, negative B-frame dts) writes
    the same MPEG-TS; on_segment reports each segment once listed."""
    from rtmprelay.hls.segmenter import Segmenter
    from tests.unit.test_hls_cmaf import _encode, mp4_packets

    video_format, audio_format, packets = mp4_packets(_encode(tmp_path_factory.mktemp("mp4") / "in.mp4", 5, fmt="mp4"))
    folder = tmp_path_factory.mktemp("out") / "cam"
    infos = []
    segmenter = Segmenter(folder, SegmentSettings(), on_segment=infos.append)
    assert (segmenter.playlist_path, segmenter.manifest_path) == (folder / "index.m3u8", None)
    segmenter.set_formats(video_format, audio_format)
    for packet in packets:
        segmenter.push(packet)
        if infos:  # listed as soon as it is closed
            assert infos[-1].uri in (folder / "index.m3u8").read_text()
    segmenter.finish()

    headers, segments, ended = _parse_m3u8((folder / "index.m3u8").read_text())
    assert ended
    assert [(i.uri, i.sequence, i.discontinuity, i.playlist, i.manifest) for i in infos] == [
        (f"seg{n}.ts", n, False, "index.m3u8", None) for n in range(3)
    ]
    assert [round(i.duration_s, 3) for i in infos] == [d for d, _, _ in segments] == [2.0, 2.0, 1.0]
    video_total = audio_total = 0
    for _, uri, _ in segments:
        video, audio, first_key = _decode(folder / uri)
        assert first_key is True
        video_total += video
        audio_total += audio
    assert video_total == sum(p.kind == "video" for p in packets)
    assert audio_total > 0
    assert _ffmpeg_errors(folder / "index.m3u8") == ""

    segmenter.remove_files()
    assert not folder.exists()
    with pytest.raises(ValueError):
        segmenter.reopen()  # spent: the caller makes a new one


@pytest.mark.parametrize(
    "settings", [{"container": "mkv"}, {"target_duration_s": 0}, {"window": 0}]
)
def test_settings_that_cannot_work_are_refused(settings):
    from rtmprelay.errors import ConfigError

    with pytest.raises(ConfigError):
        SegmentSettings(**settings)


@pytest.mark.parametrize("container", ["mpegts", "fmp4"])
def test_audio_sent_just_before_the_first_keyframe_is_kept_from_the_keyframes_time(tags9, tmp_path, container):
    """Publishers interleave audio and video of one timestamp either way round: audio that
    arrives before the first keyframe but plays from its time on belongs in the first segment;
    audio that plays before it does not."""
    from rtmprelay.testing.hls import inspect_segment, read_playlist

    video = [t for t in tags9 if t.tag_type == 9]
    frames = _coded(tags9, 8)
    audio_header = next(t for t in tags9 if t.tag_type == 8 and t.is_header)
    first_key = _coded(tags9, 9)[0]
    first_key_ms = first_key.timestamp + int.from_bytes(first_key.payload[2:5], "big", signed=True)  # its pts
    # every audio frame up to 100 ms after the first keyframe is sent before it
    early = [t for t in frames if t.timestamp <= first_key_ms + 100]
    later = [t for t in frames if t.timestamp > first_key_ms + 100]
    video_headers = [t for t in video if t.is_header]
    order = [*video_headers, audio_header, *early, *[t for t in video if not t.is_header], *later]
    assert sorted(t.timestamp for t in order if t.tag_type == 8) == [t.timestamp for t in order if t.tag_type == 8]
    segmenter = FlvSegmenter(tmp_path, SegmentSettings(container=container))
    _push_all(segmenter, order)
    segmenter.finish()

    playlist_name = "index.m3u8" if container == "mpegts" else "audio.m3u8"
    playlist = read_playlist((tmp_path / playlist_name).read_text())
    init = None if playlist.map_uri is None else tmp_path / playlist.map_uri
    decoded = sum(inspect_segment(tmp_path / entry.uri, init=init).audio_frames for entry in playlist.entries)
    assert decoded == len([t for t in frames if t.timestamp >= first_key_ms])
    assert any(t.timestamp >= first_key_ms for t in early)  # the case is really exercised
