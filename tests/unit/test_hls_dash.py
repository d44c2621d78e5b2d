"""manifest.mpd: the pure renderer, and the live manifest checked against the files on disk."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest

from rtmprelay.hls.dash import (
    DashPeriod,
    DashRepresentation,
    Manifest,
    TimelineSegment,
    date_time,
    duration,
    render_mpd,
)
from rtmprelay.hls.segmenter import FlvSegmenter, SegmentSettings
from tests.unit.test_hls_cmaf import _encode, _tags, ffprobe_codecs, find_box, read_fragment

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
FMP4 = SegmentSettings(container="fmp4")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def _seconds(text: str) -> Fraction:
    assert text.startswith("PT") and text.endswith("S"), text
    return Fraction(text[2:-1])


def read_mpd(path: Path):
    """(MPD element, [(period element, [(kind, template attributes, representation, [(number, t, d)])])])."""
    root = ET.fromstring(path.read_text())
    periods = []
    for period in root.findall("d:Period", NS):
        sets = []
        for adaptation in period.findall("d:AdaptationSet", NS):
            template = adaptation.find("d:SegmentTemplate", NS)
            number = int(template.get("startNumber"))
            segments, t = [], None
            for s in template.find("d:SegmentTimeline", NS).findall("d:S", NS):
                t = int(s.get("t")) if s.get("t") is not None else t
                d = int(s.get("d"))
                for _ in range(int(s.get("r", "0")) + 1):
                    segments.append((number, t, d))
                    number += 1
                    t += d
            representation = adaptation.find("d:Representation", NS)
            sets.append((adaptation.get("contentType"), dict(template.attrib), representation, segments))
        periods.append((period, sets))
    return root, periods


def check_timeline_against_files(directory: Path, periods) -> set[str]:
    """Every S is a file whose own times say the same; returns the files named."""
    named = set()
    for _, sets in periods:
        for kind, template, _, segments in sets:
            named.add(template["initialization"])
            pto = int(template["presentationTimeOffset"])
            assert segments[0][1] >= pto or kind == "audio"
            for index, (number, t, d) in enumerate(segments):
                name = template["media"].replace("$Number$", str(number))
                named.add(name)
                base, durations, offsets, _, _ = read_fragment((directory / name).read_bytes())
                # the S start is the segment's earliest presentation time
                assert t == base + offsets[0]
                if kind == "audio":
                    assert d == sum(durations)
                else:
                    # S ends when the picture shown last has had its time (to the
                    # millisecond of the FLV clock: frames last 33 or 34 ms)
                    decode_times = [base + sum(durations[:i]) for i in range(len(durations))]
                    shown_last = max(dts + offset for dts, offset in zip(decode_times, offsets))
                    assert abs(t + d - (shown_last + durations[-1])) <= 90
                    if index + 1 < len(segments):
                        assert segments[index + 1][1] == t + d  # no gap, no overlap
    return named


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    directory = tmp_path_factory.mktemp("media")
    return {"flv9": _tags(_encode(directory / "a.flv", 9)), "flv14": _tags(_encode(directory / "b.flv", 14))}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _push(segmenter, tags, clock=None, step=None):
    for tag in tags:
        if clock is not None and step is not None:
            clock.now = step + tag.timestamp / 1000  # a publisher in real time
        segmenter.push(tag.tag_type, tag.timestamp, tag.payload)


# --- the live manifest


@needs_ffmpeg
def test_live_manifest_matches_the_files_on_disk(media, tmp_path):
    clock = Clock(0)
    segmenter = FlvSegmenter(tmp_path, FMP4, clock=clock)
    _push(segmenter, media["flv14"], clock, step=1_700_000_000)

    root, periods = read_mpd(tmp_path / "manifest.mpd")
    assert root.get("type") == "dynamic"
    assert root.get("profiles") == "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019"
    first_key_ms = next(t for t in media["flv14"] if t.tag_type == 9 and not t.is_header).timestamp
    assert root.get("availabilityStartTime") == date_time(Fraction(1_700_000_000_000 + first_key_ms, 1000))
    assert root.get("minimumUpdatePeriod") == "PT2.000S"
    assert root.get("timeShiftBufferDepth") == "PT10.000S"  # window x target
    assert root.get("suggestedPresentationDelay") == "PT6.000S"
    assert root.get("minBufferTime") == "PT2.000S"
    [(period, sets)] = periods
    assert (period.get("id"), period.get("start")) == ("p0", "PT0.000S")
    assert [kind for kind, *_ in sets] == ["video", "audio"]
    (_, video, video_rep, video_segments), (_, audio, audio_rep, audio_segments) = sets

    # the window: segments 1-5 of 0-6 are listed (6 is open); 0 left the window but stays
    # on disk for window + 1 more segments (RFC 8216 6.2.2)
    assert [n for n, _, _ in video_segments] == [1, 2, 3, 4, 5]
    assert [n for n, _, _ in audio_segments] == [1, 2, 3, 4, 5]
    named = check_timeline_against_files(tmp_path, periods)
    on_disk = {p.name for p in tmp_path.iterdir()} - {"index.m3u8", "video.m3u8", "audio.m3u8", "manifest.mpd"}
    assert named | {"video_0.m4s", "audio_0.m4s"} == on_disk
    # the Period starts at the first keyframe (segment 0, gone): segment 1 begins 2 s in
    assert int(video_segments[0][1]) - int(video["presentationTimeOffset"]) == 2 * 90000
    assert video["timescale"] == "90000" and audio["timescale"] == "44100"
    assert video_rep.get("codecs").startswith("avc1.") and audio_rep.get("codecs") == "mp4a.40.2"
    assert (video_rep.get("width"), video_rep.get("height"), video_rep.get("frameRate")) == ("160", "96", "30")
    assert audio_rep.get("audioSamplingRate") == "44100"
    assert audio_rep.find("d:AudioChannelConfiguration", NS).get("value") == "1"
    assert int(video_rep.get("bandwidth")) > 0 and int(audio_rep.get("bandwidth")) > 0
    # the manifest was published once the last listed segment was written, which
    # is no earlier than its availability time (AST + Period start + its end)
    end = Fraction(video_segments[-1][1] + video_segments[-1][2] - int(video["presentationTimeOffset"]), 90000)
    ast = Fraction(1_700_000_000_000 + first_key_ms, 1000)
    assert date_time(ast + end) <= root.get("publishTime") <= date_time(Fraction(round(clock.now * 1000), 1000))
    assert ffprobe_codecs(tmp_path / "manifest.mpd") == ["aac", "h264"]


@needs_ffmpeg
@pytest.mark.parametrize("back_after_s", [3, 104.5])
def test_reconnect_begins_a_period(media, tmp_path, back_after_s):
    """A Period starts where the media ran to or at the wall-clock time, whichever
    is later: 3 s is a publisher that sent its buffer in a burst, 104.5 s one
    that was away for 100 s after 4.5 s of media."""
    tags = media["flv9"]
    clock = Clock(0)
    segmenter = FlvSegmenter(tmp_path, SegmentSettings(container="fmp4", window=10), clock=clock)
    _push(segmenter, [t for t in tags if t.timestamp < 4500], clock, step=1000)
    segmenter.restart()
    _push(segmenter, tags, clock, step=1000 + back_after_s)

    root, periods = read_mpd(tmp_path / "manifest.mpd")
    assert root.get("type") == "dynamic"
    assert [p.get("id") for p, _ in periods] == ["p0", "p1"]
    check_timeline_against_files(tmp_path, periods)
    (p0, sets0), (p1, sets1) = periods
    video0, video1 = sets0[0], sets1[0]
    # p0 ends where its last video segment ends, in Period time
    n, t, d = video0[3][-1]
    p0_end = _seconds(p0.get("start")) + Fraction(t + d - int(video0[1]["presentationTimeOffset"]), 90000)
    p1_start = _seconds(p1.get("start"))
    if back_after_s < 4.5:
        assert p1_start == p0_end  # media time runs on
    else:
        # availabilityStartTime is the first keyframe's wall-clock time, so p1
        # starts at the wall-clock time its own first keyframe came (both at ts 0)
        assert p1_start == Fraction(str(back_after_s)) > p0_end + 99
    # the new Period's first segment starts at its PTO, and its numbers follow on
    assert video1[3][0][1] == int(video1[1]["presentationTimeOffset"])
    assert video1[3][0][0] == n + 1
    assert video1[1]["initialization"] == video0[1]["initialization"] == "video_init.mp4"
    assert ffprobe_codecs(tmp_path / "manifest.mpd") == ["aac", "h264"]


@needs_ffmpeg
def test_finish_makes_the_manifest_static(media, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings(container="fmp4", window=3), clock=Clock(1000))
    _push(segmenter, media["flv9"])
    segmenter.finish()
    root, periods = read_mpd(tmp_path / "manifest.mpd")
    assert root.get("type") == "static"
    for name in ("availabilityStartTime", "publishTime", "minimumUpdatePeriod", "timeShiftBufferDepth"):
        assert root.get(name) is None
    [(period, sets)] = periods
    assert period.get("start") == "PT0.000S"
    # the first listed segment (of 2-4) is time 0; the presentation runs to the end of the last
    video = sets[0]
    assert [n for n, _, _ in video[3]] == [2, 3, 4]
    assert video[3][0][1] == int(video[1]["presentationTimeOffset"])
    ends = [Fraction(s[3][-1][1] + s[3][-1][2] - int(s[1]["presentationTimeOffset"]), int(s[1]["timescale"])) for s in sets]
    assert _seconds(root.get("mediaPresentationDuration")) == round(max(ends) * 1000) / Fraction(1000)
    assert abs(max(ends) - 5) < Fraction(1, 20)  # 2 + 2 + 1 s
    check_timeline_against_files(tmp_path, periods)
    assert ffprobe_codecs(tmp_path / "manifest.mpd") == ["aac", "h264"]

    segmenter.reopen()
    _push(segmenter, media["flv9"][:400])
    root, periods = read_mpd(tmp_path / "manifest.mpd")
    assert root.get("type") == "dynamic" and len(periods) == 2

    segmenter.remove_files()
    assert not tmp_path.exists()


@needs_ffmpeg
def test_init_segments_are_what_the_manifest_says(media, tmp_path):
    segmenter = FlvSegmenter(tmp_path, FMP4)
    _push(segmenter, media["flv9"])
    segmenter.finish()
    init = (tmp_path / "video_init.mp4").read_bytes()
    assert find_box(init, "ftyp")[:4] == b"iso6"
    avcc = find_box(init, "moov", "trak", "mdia", "minf", "stbl", "stsd")[8 + 86 :]
    assert avcc[4:8] == b"avcC"
    _, [(_, [(_, _, video_rep, _), _])] = read_mpd(tmp_path / "manifest.mpd")
    assert video_rep.get("codecs") == "avc1." + avcc[9:12].hex()  # profile, compatibility, level of avcC


# --- the renderer alone


def _rep(kind, segments, **extra):
    return DashRepresentation(
        kind=kind,
        id=kind,
        codecs="avc1.64001f" if kind == "video" else "mp4a.40.2",
        bandwidth=1000,
        timescale=90000 if kind == "video" else 48000,
        initialization=f"{kind}_init.mp4",
        media=f"{kind}_$Number$.m4s",
        presentation_time_offset=segments[0].t,
        segments=tuple(segments),
        **extra,
    )


def test_render_timeline_runs_and_attributes():
    video = _rep(
        "video",
        [TimelineSegment(7, 900, 180000), TimelineSegment(8, 180900, 180000), TimelineSegment(9, 360900, 180000),
         TimelineSegment(10, 600000, 90000)],
        width=1280, height=720, frame_rate=Fraction(30000, 1001),
    )  # fmt: skip
    audio = _rep("audio", [TimelineSegment(7, 0, 96256)], sample_rate=48000, channels=2)
    text = render_mpd(
        Manifest(
            (DashPeriod("p0", Fraction(0), (video, audio)),),
            dynamic=True,
            min_buffer_s=Fraction(2),
            availability_start=Fraction(1_700_000_000_123, 1000),
            publish_time=Fraction(1_700_000_010),
            minimum_update_period_s=Fraction(2),
            time_shift_buffer_s=Fraction(10),
            suggested_delay_s=Fraction(6),
        )
    )
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"')
    root = ET.fromstring(text)
    assert root.get("availabilityStartTime") == "2023-11-14T22:13:20.123Z"
    assert root.get("publishTime") == "2023-11-14T22:13:30.000Z"
    template = root.find("d:Period/d:AdaptationSet/d:SegmentTemplate", NS)
    assert template.attrib == {
        "timescale": "90000", "presentationTimeOffset": "900", "initialization": "video_init.mp4",
        "media": "video_$Number$.m4s", "startNumber": "7",
    }  # fmt: skip
    # three of the same length back to back are one run; a gap starts another
    assert [s.attrib for s in template.find("d:SegmentTimeline", NS)] == [
        {"t": "900", "d": "180000", "r": "2"},
        {"t": "600000", "d": "90000"},
    ]
    rep = root.find("d:Period/d:AdaptationSet/d:Representation", NS)
    assert rep.get("frameRate") == "30000/1001" and rep.get("sar") == "1:1"
    channel = root.find("d:Period/d:AdaptationSet[@contentType='audio']/d:Representation/d:AudioChannelConfiguration", NS)
    assert channel.attrib == {
        "schemeIdUri": "urn:mpeg:dash:23003:3:audio_channel_configuration:2011",
        "value": "2",
    }


def test_render_refuses_what_a_player_could_not_use():
    gap = _rep("audio", [TimelineSegment(1, 0, 10), TimelineSegment(3, 10, 10)])
    period = DashPeriod("p0", Fraction(0), (gap,))
    with pytest.raises(ValueError, match="does not follow"):
        render_mpd(Manifest((period,), dynamic=False, min_buffer_s=Fraction(2), duration_s=Fraction(1)))
    ok = DashPeriod("p0", Fraction(0), (_rep("audio", [TimelineSegment(1, 0, 10)]),))
    with pytest.raises(ValueError, match="availability_start"):
        render_mpd(Manifest((ok,), dynamic=True, min_buffer_s=Fraction(2)))
    with pytest.raises(ValueError, match="duration"):
        render_mpd(Manifest((ok,), dynamic=False, min_buffer_s=Fraction(2)))
    static = ET.fromstring(
        render_mpd(Manifest((ok,), dynamic=False, min_buffer_s=Fraction(2), duration_s=Fraction(3723, 2)))
    )
    assert static.get("type") == "static" and static.get("mediaPresentationDuration") == "PT1861.500S"


def test_durations_and_dates():
    assert duration(Fraction(2)) == "PT2.000S"
    assert duration(0.0333) == "PT0.033S"
    assert date_time(0) == "1970-01-01T00:00:00.000Z"
    with pytest.raises(ValueError):
        duration(-1)
