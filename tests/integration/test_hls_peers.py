"""Local HLS from real publishes: ffmpeg and dirty streams -> relay -> playlist and segments
over HTTP, every segment decoded with PyAV (rtmprelay.testing.hls).

These tests read one media playlist of MPEG-TS segments, so they ask for
``--hls-segment-type mpegts``; the default (fMP4 with LL-HLS parts, a master
playlist over video.m3u8 and audio.m3u8) is tested in test_llhls_peers.py and by
the status page's preview in test_status_page_browser.py."""

from __future__ import annotations

import json
import time
import urllib.request

import av
import pytest

from rtmprelay.testing import dirty as d
from rtmprelay.testing.hls import inspect_segment, read_playlist
from rtmprelay.testing.players import ffprobe_stream

pytestmark = pytest.mark.peers

TS = ["--hls-segment-type", "mpegts"]


def fetch(url: str) -> tuple[int, dict, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


FRAME_S = 1 / 30


def check_transcoded(playlist_text: str, file_for, *, size=None, segment_s=2.0) -> list:
    """Every listed segment: an IDR first, 30 fps constant, ``segment_s`` long to a frame
    (the last one may be shorter), AAC 48 kHz stereo, nothing that fails to decode."""
    playlist = read_playlist(playlist_text)
    assert playlist.entries, playlist_text
    reports = []
    for index, entry in enumerate(playlist.entries):
        report = inspect_segment(file_for(entry.uri))
        last = index == len(playlist.entries) - 1
        problems = []
        if not report.starts_with_idr:
            problems.append("does not start with an IDR")
        if report.constant_frame_rate != 30:
            problems.append(f"frame steps {sorted(report.frame_steps_s)}")
        if not last and abs(report.duration_s - segment_s) > FRAME_S + 1e-6:
            problems.append(f"lasts {report.duration_s:.3f} s")
        if abs(entry.duration_s - report.duration_s) > FRAME_S + 1e-3:
            problems.append(f"EXTINF {entry.duration_s} but {report.duration_s:.3f} s of pictures")
        if (report.audio_rate, report.audio_channels) != (48_000, 2) or report.audio_frames == 0:
            problems.append(f"audio {report.audio_frames} frames at {report.audio_rate} Hz x {report.audio_channels}")
        if report.decode_errors:
            problems.append(f"{report.decode_errors} decode errors")
        if size is not None and report.video_size != size:
            problems.append(f"size {report.video_size}")
        assert not problems, f"{entry.uri}: {'; '.join(problems)}"
        reports.append(report)
    return reports


def test_a_publish_becomes_hls_served_over_http(rtmprelay_factory, ffmpeg_publisher_factory, tmp_path):
    relay = rtmprelay_factory(TS, hls=True)  # HLS written and served, as MPEG-TS
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/hlsdemo"), seconds=7, size="320x240", fps=30, gop=60)
    playlist = relay.hls_dir / "user1" / "hlsdemo" / "index.m3u8"
    assert wait_for(playlist.exists), relay.log_text
    status, headers, body = fetch(relay.http_url("/hls/user1/hlsdemo/index.m3u8"))
    assert status == 200 and headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert headers["Access-Control-Allow-Origin"] == "*"
    live = [s.codec_name for s in ffprobe_stream(relay.http_url("/hls/user1/hlsdemo/index.m3u8"), timeout=30)]
    assert sorted(live) == ["aac", "h264"]
    publisher.wait()
    publisher.check()
    assert wait_for(lambda: "#EXT-X-ENDLIST" in playlist.read_text())
    text = fetch(relay.http_url("/hls/user1/hlsdemo/index.m3u8"))[2].decode()
    segments = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(segments) >= 3
    durations = [float(line.split(":")[1].rstrip(",")) for line in text.splitlines() if line.startswith("#EXTINF")]
    assert all(abs(d - 2.0) <= 1 / 30 + 1e-6 for d in durations[:-1]), durations
    for name in segments:
        status, headers, data = fetch(relay.http_url(f"/hls/user1/hlsdemo/{name}"))
        assert headers["Content-Type"] == "video/mp2t"
        path = tmp_path / name
        path.write_bytes(data)
        with av.open(str(path)) as container:
            kinds = {s.type for s in container.streams}
            assert kinds == {"video", "audio"}
            first = next(container.decode(video=0))
            assert first.key_frame, f"{name} does not start with a keyframe"
    check_transcoded(text, lambda name: tmp_path / name, size=(320, 240))
    health = json.loads(fetch(relay.http_url("/health"))[2])
    assert health["status"] == "ok"
    assert health["reactor_lag"]["samples"] > 0


def test_a_reconnect_continues_the_playlist_after_a_discontinuity(rtmprelay_factory, ffmpeg_publisher_factory):
    relay = rtmprelay_factory(TS, hls=True)
    url = relay.url("live/user1/again")
    for _ in range(2):
        publisher = ffmpeg_publisher_factory(url, seconds=4, size="160x96", fps=30, gop=60)
        publisher.wait()
        publisher.check()
    playlist = relay.hls_dir / "user1" / "again" / "index.m3u8"
    assert wait_for(lambda: playlist.exists() and playlist.read_text().count("#EXT-X-DISCONTINUITY\n") == 1 and "#EXT-X-ENDLIST" in playlist.read_text()), playlist.read_text()


def test_api_streams_reports_the_hls_pipeline(rtmprelay_factory, ffmpeg_publisher_factory):
    relay = rtmprelay_factory(hls=True)
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/apiview"), seconds=6, size="160x96", fps=30, gop=60)
    playlist = relay.hls_dir / "user1" / "apiview" / "index.m3u8"
    assert wait_for(playlist.exists), relay.log_text

    def hls_info():
        streams = json.loads(fetch(relay.http_url("/api/streams"))[2])
        return next((s["hls"] for s in streams if s["path"] == "live/user1/apiview"), None)

    assert wait_for(lambda: (hls_info() or {}).get("ready")), hls_info()
    info = hls_info()
    assert info["mode"] == "transcode" and info["playlist"] == "user1/apiview/index.m3u8"
    assert info["segments"] >= 1
    assert info["queue"]["video_dropped"] == 0
    publisher.wait()
    publisher.check()


def test_copy_mode_cuts_the_cleaned_stream_at_its_keyframes(rtmprelay_factory, ffmpeg_publisher_factory):
    relay = rtmprelay_factory(["--hls-mode", "copy", *TS], hls=True)
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/copied"), seconds=7, size="320x240", fps=30, gop=60)
    publisher.wait()
    publisher.check()
    playlist_path = relay.hls_dir / "user1" / "copied" / "index.m3u8"
    assert wait_for(lambda: playlist_path.exists() and "#EXT-X-ENDLIST" in playlist_path.read_text()), relay.log_text
    playlist = read_playlist(playlist_path.read_text())
    assert len(playlist.entries) >= 3
    for index, entry in enumerate(playlist.entries):
        report = inspect_segment(playlist_path.parent / entry.uri)
        assert report.starts_with_idr and report.decode_errors == 0, entry.uri
        if index < len(playlist.entries) - 1:
            assert abs(report.duration_s - 2.0) <= FRAME_S + 2e-3, (entry.uri, report.duration_s)
        # copy mode keeps the publisher's audio (ffmpeg's default AAC)
        assert report.audio_frames > 0


DIRTY = d.DirtyStreamSpec(seconds=9, size=(320, 240), fps=30).with_faults(
    d.VariableFrameRate(9, 15, seed=3),
    d.IrregularGop(lo_s=0.07, hi_s=3.0, seed=5),
    d.TimestampJump(at_s=4.0, delta_ms=20_000),
)


def test_a_dirty_stream_comes_out_as_clean_hls(rtmprelay_factory, dirty_stream_factory, dirty_publisher_factory):
    """The glasses' stream (9-15 fps, keyframes 0.07-3 s apart, a 20 s jump) becomes strict HLS."""
    relay = rtmprelay_factory(TS, hls=True)
    stream = dirty_stream_factory(DIRTY)
    publisher = dirty_publisher_factory(relay.url("live/glasses/dirty"), stream)
    publisher.wait()
    publisher.check()
    playlist_path = relay.hls_dir / "glasses" / "dirty" / "index.m3u8"
    assert wait_for(lambda: playlist_path.exists() and "#EXT-X-ENDLIST" in playlist_path.read_text()), relay.log_text
    text = playlist_path.read_text()
    reports = check_transcoded(text, lambda name: playlist_path.parent / name, size=(320, 240))
    assert len(reports) >= 3
    assert sum(r.video_frames for r in reports) >= 8 * 30  # 9 s at 30 fps, give or take the ends


def test_the_window_slides_old_segments_go_and_files_are_removed_after_unpublish(
    rtmprelay_factory, ffmpeg_publisher_factory
):
    relay = rtmprelay_factory(["--hls-segment", "1", "--hls-window", "3", "--hls-cleanup", "2", "--gop", "30", *TS], hls=True)
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/window"), seconds=9, size="160x96", fps=30, gop=30)
    folder = relay.hls_dir / "user1" / "window"
    playlist_path = folder / "index.m3u8"
    most_on_disk = 0
    sequences = set()
    while publisher.running:
        if playlist_path.exists():
            playlist = read_playlist(playlist_path.read_text())
            assert len(playlist.entries) <= 3
            sequences.add(playlist.media_sequence)
            most_on_disk = max(most_on_disk, len(list(folder.glob("*.ts"))))
        time.sleep(0.05)
    publisher.check()
    assert max(sequences) >= 5, sequences  # segments left the window
    # and were deleted window + 1 segments after leaving it (RFC 8216 6.2.2); the open one is a .tmp
    assert most_on_disk <= 3 + 4, most_on_disk
    assert wait_for(lambda: playlist_path.exists() and "#EXT-X-ENDLIST" in playlist_path.read_text())
    final = read_playlist(playlist_path.read_text())
    assert all((folder / entry.uri).exists() for entry in final.entries)
    assert final.media_sequence >= 5 and not (folder / "seg0.ts").exists()
    assert wait_for(lambda: not folder.exists(), timeout=15), list(folder.iterdir())
    assert "HLS files of live/user1/window removed" in relay.log_text


def test_fmp4_segments_with_a_dash_manifest_from_the_same_encode(rtmprelay_factory, ffmpeg_publisher_factory):
    relay = rtmprelay_factory(["--hls-segment-type", "fmp4"], hls=True)
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/cmaf"), seconds=7, size="320x240", fps=30, gop=60)
    folder = relay.hls_dir / "user1" / "cmaf"
    assert wait_for(lambda: (folder / "manifest.mpd").exists(), timeout=30), relay.log_text
    for name in ("index.m3u8", "manifest.mpd"):
        live = [s.codec_name for s in ffprobe_stream(relay.http_url(f"/hls/user1/cmaf/{name}"), timeout=30)]
        assert sorted(live) == ["aac", "h264"], name
    status, headers, _ = fetch(relay.http_url("/hls/user1/cmaf/manifest.mpd"))
    assert headers["Content-Type"] == "application/dash+xml"
    publisher.wait()
    publisher.check()
    master = read_playlist((folder / "index.m3u8").read_text())
    assert set(master.variants) >= {"video.m3u8", "audio.m3u8"}
    assert wait_for(lambda: "#EXT-X-ENDLIST" in (folder / "video.m3u8").read_text())
    video = read_playlist((folder / "video.m3u8").read_text())
    assert video.map_uri and len(video.entries) >= 3
    for index, entry in enumerate(video.entries):
        report = inspect_segment(folder / entry.uri, init=folder / video.map_uri)
        assert report.starts_with_idr and report.decode_errors == 0, entry.uri
        assert report.constant_frame_rate == 30, (entry.uri, sorted(report.frame_steps_s))
        if index < len(video.entries) - 1:
            assert abs(report.duration_s - 2.0) <= FRAME_S + 1e-6, (entry.uri, report.duration_s)
    audio = read_playlist((folder / "audio.m3u8").read_text())
    report = inspect_segment(folder / audio.entries[0].uri, init=folder / audio.map_uri)
    assert (report.audio_rate, report.audio_channels) == (48_000, 2) and report.audio_frames > 0
