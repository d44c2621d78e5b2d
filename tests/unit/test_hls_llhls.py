"""LL-HLS parts from the fMP4 segmenter, checked against the playlist rules.

Every media playlist the segmenter writes is read back as it is written (the
moment a blocking reload would answer with it) and checked by
``rtmprelay.testing.hls.read_low_latency``: part durations within PART-TARGET,
a preload hint naming the next part, parts adding up to their segment; then
part and segment numbering across a publisher reconnect, and the bytes: a
segment file is its parts behind ``styp``, and the parts decode.
"""

from __future__ import annotations

import shutil
import subprocess

import av
import pytest

from rtmprelay.hls import cmaf
from rtmprelay.hls.playlist import MediaPlaylist, Position
from rtmprelay.hls.segmenter import FlvSegmenter, Segmenter, SegmentSettings
from rtmprelay.testing.hls import read_low_latency
from tests.unit.test_hls_cmaf import _encode, _tags, mp4_packets

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

LL = SegmentSettings(container="fmp4", part_target_s=0.2)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    directory = tmp_path_factory.mktemp("media")
    return {
        "flv9": _tags(_encode(directory / "a.flv", 9)),
        "mp4": mp4_packets(_encode(directory / "d.mp4", 7, fmt="mp4")),
    }


class Recorder:
    """Every playlist the segmenter writes, as written, with the position it announced."""

    def __init__(self, out_dir) -> None:
        self.out_dir = out_dir
        self.written: list[tuple[str, str, Position]] = []

    def __call__(self, name: str, position: Position) -> None:
        self.written.append((name, (self.out_dir / name).read_text(), position))

    def of(self, name: str) -> list[tuple[str, Position]]:
        return [(text, position) for n, text, position in self.written if n == name]


def copy_mode(tmp_path, tags, settings=LL):
    recorder = Recorder(tmp_path)
    segmenter = FlvSegmenter(tmp_path, settings, on_playlist=recorder)
    for tag in tags:
        segmenter.push(tag.tag_type, tag.timestamp, tag.payload)
    return segmenter, recorder


def packet_mode(tmp_path, media, settings=LL):
    """What the transcode pipeline does: formats, then encoded packets."""
    video, audio, packets = media
    recorder = Recorder(tmp_path)
    segmenter = Segmenter(tmp_path, settings, on_playlist=recorder)
    segmenter.set_formats(video, audio)
    for packet in packets:
        segmenter.push(packet)
    return segmenter, recorder


def expected_hint(playlist) -> str:
    """The part after the last one listed: the next index, or part 0 of the next segment."""
    last = playlist.parts[-1]
    kind = last.uri.split("_", 1)[0]
    whole = {msn for msn, _, _ in playlist.segments}
    return f"{kind}_{last.msn + 1}.0.m4s" if last.msn in whole else f"{kind}_{last.msn}.{last.index + 1}.m4s"


def check_every_playlist(recorder: Recorder, name: str) -> list:
    """Every version of ``name`` keeps the rules; returns them read."""
    versions = recorder.of(name)
    assert versions
    read = []
    for text, position in versions:
        playlist = read_low_latency(text)
        assert playlist.problems == (), text
        # the configured 0.2 s and the millisecond of RTMP timestamps' rounding
        assert playlist.part_target_s == 0.201
        assert playlist.can_block_reload
        if playlist.parts and not playlist.ended:
            assert playlist.preload_hints == (expected_hint(playlist),), text
        # the position announced is what the file says
        last_part = playlist.parts[-1] if playlist.parts else None
        assert position.part == (None if last_part is None else (last_part.msn, last_part.index))
        assert position.segment == (playlist.segments[-1][0] if playlist.segments else -1)
        read.append(playlist)
    return read


@pytest.mark.parametrize("phase_ms", [0.0, 5.5, 11.0, 16.5, 22.0, 27.5, 33.0])
def test_millisecond_timestamps_at_any_phase_give_whole_parts(media, tmp_path, phase_ms):
    """RTMP carries whole milliseconds: 30 fps frames step 33 or 34 ms in a pattern
    that depends on where the grid falls against the millisecond. Six frames
    last 200 or 201 ms by rounding alone; at every phase each part but a
    segment's last holds six (a part cut a frame short breaks the 85% rule)."""
    tags, index = [], 0
    for tag in media["flv9"]:
        if tag.tag_type == 9:
            tag = tag._replace(timestamp=round(index * 1000 / 30 + phase_ms))
            index += 1
        tags.append(tag)
    segmenter, recorder = copy_mode(tmp_path, tags)
    segmenter.finish()
    video = check_every_playlist(recorder, "video.m3u8")[-1]
    full = [p for segment in _parts_by_segment(video) for p in segment[:-1]]
    assert full and {round(p.duration_s, 3) for p in full} <= {0.2, 0.201}, video.parts


def _parts_by_segment(playlist) -> list[list]:
    segments: dict[int, list] = {}
    for part in playlist.parts:
        segments.setdefault(part.msn, []).append(part)
    return list(segments.values())


@pytest.mark.parametrize("mode", ["copy", "transcode"])
def test_every_playlist_written_keeps_the_part_rules(media, tmp_path, mode):
    if mode == "copy":
        segmenter, recorder = copy_mode(tmp_path, media["flv9"])
    else:
        segmenter, recorder = packet_mode(tmp_path, media["mp4"])
    segmenter.finish()
    for name in ("video.m3u8", "audio.m3u8"):
        versions = check_every_playlist(recorder, name)
        # a playlist is written for every part: parts come about five a second of media
        assert len(versions) >= 20
        assert versions[-1].ended
    video = check_every_playlist(recorder, "video.m3u8")[-1]
    # video parts at 30 fps: six frames each, the first of a segment independent
    assert {round(p.duration_s, 3) for p in video.parts} == {0.2}
    assert [p.index == 0 for p in video.parts] == [p.independent for p in video.parts]


def test_parts_are_listed_before_the_first_segment_and_the_master_comes_with_them(media, tmp_path):
    _, recorder = copy_mode(tmp_path, media["flv9"][:80])  # about a second: no segment yet
    video = read_low_latency((tmp_path / "video.m3u8").read_text())
    assert video.segments == () and len(video.parts) >= 3
    assert (tmp_path / "index.m3u8").exists() and (tmp_path / "audio.m3u8").exists()
    assert not (tmp_path / "manifest.mpd").exists()  # DASH has whole segments only


def test_a_segment_file_is_its_parts_and_they_decode(media, tmp_path):
    segmenter, _ = copy_mode(tmp_path, media["flv9"])
    segmenter.finish()
    video = read_low_latency((tmp_path / "video.m3u8").read_text())
    with_parts = [(msn, uri) for msn, uri, _ in video.segments if any(p.msn == msn for p in video.parts)]
    assert len(with_parts) >= 2  # those ending in the last three target durations
    for msn, uri in with_parts:
        parts = [(tmp_path / p.uri).read_bytes() for p in video.parts if p.msn == msn]
        assert (tmp_path / uri).read_bytes() == cmaf.SEGMENT_TYPE + b"".join(parts)
    # a player that fetched only the parts of segment 1 decodes them behind the init segment
    joined = tmp_path / "parts1.mp4"
    joined.write_bytes(
        (tmp_path / "video_init.mp4").read_bytes() + b"".join((tmp_path / p.uri).read_bytes() for p in video.parts if p.msn == with_parts[0][0])
    )
    with av.open(str(joined)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 60 and frames[0].key_frame
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(tmp_path / "index.m3u8"), "-f", "null", "-"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_numbering_goes_on_across_a_publisher_reconnect(media, tmp_path):
    tags = media["flv9"]
    recorder = Recorder(tmp_path)
    segmenter = FlvSegmenter(tmp_path, LL, on_playlist=recorder)
    cut = len(tags) // 2
    for tag in tags[:cut]:
        segmenter.push(tag.tag_type, tag.timestamp, tag.payload)
    before = read_low_latency((tmp_path / "video.m3u8").read_text())
    segmenter.restart()  # the publisher reconnects; its clock starts again at 0
    for tag in tags:
        segmenter.push(tag.tag_type, tag.timestamp, tag.payload)
    segmenter.finish()
    for name in ("video.m3u8", "audio.m3u8"):
        listed: list[tuple[int, int]] = []
        for playlist in check_every_playlist(recorder, name):
            for part in playlist.parts:
                if (part.msn, part.index) not in listed:
                    listed.append((part.msn, part.index))
        # each new part is the next index of its segment or part 0 of the next segment
        for (msn, index), (next_msn, next_index) in zip(listed, listed[1:]):
            assert (next_msn, next_index) in ((msn, index + 1), (msn + 1, 0)), listed
    # the segment cut short by the reconnect keeps its number; the next one follows it, marked
    cut_short = before.parts[-1].msn
    for name in ("video.m3u8", "audio.m3u8"):
        marked = {(p.msn, p.index, p.independent) for pl in check_every_playlist(recorder, name) for p in pl.parts if p.discontinuity}
        assert marked == {(cut_short + 1, 0, True)}


def test_part_target_needs_fmp4_and_fits_a_segment():
    from rtmprelay.errors import ConfigError

    with pytest.raises(ConfigError):
        SegmentSettings(container="mpegts", part_target_s=0.2)
    with pytest.raises(ConfigError):
        SegmentSettings(container="fmp4", target_duration_s=1.0, part_target_s=1.5)


def test_playlist_renders_parts_hint_and_reports():
    playlist = MediaPlaylist(3, version=7, part_target_s=0.2)
    playlist.add_part("v_0.0.m4s", 0.2, True, map_uri="init.mp4")
    playlist.add_part("v_0.1.m4s", 0.2, False)
    playlist.add_segment("v_0.m4s", 0.4, map_uri="init.mp4")
    playlist.add_part("v_1.0.m4s", 0.2, True, discontinuity=True, map_uri="init.mp4")
    playlist.preload_hint = "v_1.1.m4s"
    playlist.rendition_reports = (playlist_report := __import__("rtmprelay.hls.playlist", fromlist=["RenditionReport"]).RenditionReport("a.m3u8", 1, 0),)
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-TARGETDURATION:1\n"
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600\n"
        "#EXT-X-PART-INF:PART-TARGET=0.200\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        '#EXT-X-PART:DURATION=0.200,URI="v_0.0.m4s",INDEPENDENT=YES\n'
        '#EXT-X-PART:DURATION=0.200,URI="v_0.1.m4s"\n'
        "#EXTINF:0.400,\n"
        "v_0.m4s\n"
        "#EXT-X-DISCONTINUITY\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        '#EXT-X-PART:DURATION=0.200,URI="v_1.0.m4s",INDEPENDENT=YES\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="v_1.1.m4s"\n'
        '#EXT-X-RENDITION-REPORT:URI="a.m3u8",LAST-MSN=1,LAST-PART=0\n'
    )
    assert playlist_report.last_part == 0
    assert playlist.position() == Position(0, (1, 0), False, 1, 0.2, "v_1.1.m4s")
    # the parts of a segment out of the window are deleted with it
    removed = []
    for n in range(1, 8):
        removed += playlist.add_segment(f"v_{n}.m4s", 0.4)
    assert removed[:3] == ["v_0.m4s", "v_0.0.m4s", "v_0.1.m4s"]


def test_parts_are_listed_for_the_last_three_target_durations_only():
    playlist = MediaPlaylist(10, part_target_s=0.5)
    for n in range(6):
        playlist.add_part(f"{n}.0", 0.5, True)
        playlist.add_part(f"{n}.1", 0.5, False)
        playlist.add_segment(f"{n}", 1.0)
    text = playlist.render()
    # target duration 1 s: segments 3, 4 and 5 end within 3 s of the end
    assert [line for line in text.splitlines() if line.startswith("#EXT-X-PART:")] == [
        f'#EXT-X-PART:DURATION=0.500,URI="{n}.{k}"' + (",INDEPENDENT=YES" if k == 0 else "") for n in (3, 4, 5) for k in (0, 1)
    ]


@pytest.mark.parametrize(
    ("position", "msn", "part", "has", "too_far"),
    [
        (Position(3, (4, 2), False, 2, 0.2), 3, None, True, False),
        (Position(3, (4, 2), False, 2, 0.2), 4, None, False, False),
        (Position(3, (4, 2), False, 2, 0.2), 4, 2, True, False),
        (Position(3, (4, 2), False, 2, 0.2), 4, 3, False, False),
        (Position(3, (4, 2), False, 2, 0.2), 4, 17, False, False),
        (Position(3, (4, 2), False, 2, 0.2), 4, 18, False, True),
        (Position(3, (4, 2), False, 2, 0.2), 5, 14, False, False),
        (Position(3, (4, 2), False, 2, 0.2), 5, 15, False, True),
        (Position(3, (4, 2), False, 2, 0.2), 6, None, False, True),
        (Position(3, (4, 2), True, 2, 0.2), 5, 0, True, False),
        (Position(-1, None, False, 1, 0.2), 0, 0, False, False),
        (Position(3, (4, 2), False, 2, 2.0), 4, 6, False, True),  # part target >= 1 s: a limit of three
    ],
)
def test_position_answers_and_limits(position, msn, part, has, too_far):
    assert position.has(msn, part) is has
    assert position.too_far(msn, part) is too_far
