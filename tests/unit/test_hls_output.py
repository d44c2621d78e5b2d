"""HlsOutput, the Twisted adapter: one worker per path, hls-ready once per publish,
a reconnect within the cleanup time continues, files removed after it."""

from __future__ import annotations

import shutil
import time

import pytest
from twisted.internet.task import Clock

from rtmprelay.hls.output import HlsOutput, HlsSettings
from rtmprelay.hls.transcode import TranscodeSettings
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.testing.flv import read_flv_tags
from rtmprelay.testing.publishers import make_test_flv

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


class ThreadedClock(Clock):
    """A Clock that also takes calls from other threads; the test runs them when it likes."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: list = []

    def callFromThread(self, f, *args, **kwargs) -> None:  # noqa: N802 (Twisted's name)
        self.from_threads.append((f, args, kwargs))

    def run_thread_calls(self) -> None:
        while self.from_threads:
            f, args, kwargs = self.from_threads.pop(0)
            f(*args, **kwargs)


class Publisher:
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Listener:
    def __init__(self) -> None:
        self.ready: list[tuple] = []

    def hls_ready(self, path, playlist, manifest) -> None:
        self.ready.append((path, playlist, manifest))


@pytest.fixture(scope="module")
def tags(tmp_path_factory):
    path = make_test_flv(tmp_path_factory.mktemp("flv") / "in.flv", seconds=5, size="160x96", fps=30, gop=30)
    return [tag for tag in read_flv_tags(path) if tag.tag_type in (8, 9)]


def publish(registry, clock, tags, path="live/u1/s1"):
    stream = registry.start(path, Publisher())
    for tag in tags:
        stream.publish_media(MediaMessage.of(tag.tag_type, tag.timestamp, tag.payload))
    registry.stop(stream)


def settle(output, clock, predicate, timeout=30.0):
    """Let the workers run, and bring their results back to the 'reactor'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clock.run_thread_calls()
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("mode, container", [("copy", "mpegts"), ("transcode", "fmp4")])
def test_ready_once_per_publish_and_files_removed_after_the_cleanup_time(tmp_path, tags, mode, container):
    clock = ThreadedClock()
    # the test pushes 5 s of media at once: a queue that takes it all, so nothing is dropped
    settings = HlsSettings(
        mode=mode,
        container=container,
        segment_s=1.0,
        transcode=TranscodeSettings(gop=30),  # 1 s segments need a keyframe every second
        cleanup_after_s=30,
        queue_frames=1000,
    )
    output = HlsOutput(tmp_path, settings, clock)
    listener = Listener()
    output.add_listener(listener)
    registry = StreamRegistry()
    registry.add_listener(output)
    folder = tmp_path / "u1" / "s1"

    publish(registry, clock, tags)
    manifest = "u1/s1/manifest.mpd" if container == "fmp4" else None
    assert settle(output, clock, lambda: listener.ready), "no hls_ready"
    assert listener.ready == [("live/u1/s1", "u1/s1/index.m3u8", manifest)]
    assert settle(output, clock, lambda: "#EXT-X-ENDLIST" in (folder / "index.m3u8").read_text()
                  or (folder / "video.m3u8").exists() and "#EXT-X-ENDLIST" in (folder / "video.m3u8").read_text())
    assert settle(output, clock, lambda: output.info("live/u1/s1")["segments"] >= 4), output.info("live/u1/s1")
    info = output.info("live/u1/s1")
    assert info["ready"] and info["queue"]["video_dropped"] == 0 and info["mode"] == mode

    # back within the cleanup time: the same playlist goes on, ready is announced again
    clock.advance(10)
    publish(registry, clock, tags)
    assert settle(output, clock, lambda: len(listener.ready) == 2), listener.ready
    playlist = "video.m3u8" if container == "fmp4" else "index.m3u8"
    assert settle(output, clock, lambda: "#EXT-X-DISCONTINUITY\n" in (folder / playlist).read_text())
    clock.advance(25)  # the first cleanup timer (set at unpublish, cancelled) would have fired
    assert folder.exists()

    clock.advance(6)  # 30 s after the second unpublish
    assert settle(output, clock, lambda: not folder.exists()), sorted(p.name for p in folder.iterdir())
    assert output.info("live/u1/s1") is None
    assert len(listener.ready) == 2


def test_stop_service_ends_live_playlists(tmp_path, tags):
    clock = ThreadedClock()
    output = HlsOutput(tmp_path, HlsSettings(mode="copy", segment_s=1.0, queue_frames=1000), clock)
    registry = StreamRegistry()
    registry.add_listener(output)
    stream = registry.start("live/u1/live", Publisher())
    for tag in tags:
        stream.publish_media(MediaMessage.of(tag.tag_type, tag.timestamp, tag.payload))
    output.startService()
    output.stopService()  # the daemon stops while the stream is live
    playlist = tmp_path / "u1" / "live" / "index.m3u8"
    assert settle(output, clock, lambda: playlist.exists() and "#EXT-X-ENDLIST" in playlist.read_text())


def test_files_kept_for_good_still_free_the_worker_after_the_grace(tmp_path, tags):
    from rtmprelay.hls.output import RECONNECT_GRACE_S

    clock = ThreadedClock()
    output = HlsOutput(tmp_path, HlsSettings(mode="copy", segment_s=1.0, queue_frames=1000, cleanup_after_s=None), clock)
    registry = StreamRegistry()
    registry.add_listener(output)
    publish(registry, clock, tags, path="live/u1/kept")
    worker = output._by_path["live/u1/kept"].worker
    playlist = tmp_path / "u1" / "kept" / "index.m3u8"
    assert settle(output, clock, lambda: playlist.exists() and "#EXT-X-ENDLIST" in playlist.read_text())
    clock.advance(RECONNECT_GRACE_S)
    assert output.info("live/u1/kept") is None
    assert worker.join(10)  # the thread ended
    assert playlist.exists()  # the files stay


def test_a_video_only_stream_still_gives_hls(tmp_path, tmp_path_factory):
    from rtmprelay.testing.hls import inspect_segment, read_playlist

    path = make_test_flv(tmp_path_factory.mktemp("flv") / "mute.flv", seconds=5, size="160x96", fps=30, gop=30, audio=False)
    mute = [tag for tag in read_flv_tags(path) if tag.tag_type == 9]
    clock = ThreadedClock()
    settings = HlsSettings(segment_s=1.0, transcode=TranscodeSettings(gop=30), queue_frames=1000)
    output = HlsOutput(tmp_path, settings, clock)
    registry = StreamRegistry()
    registry.add_listener(output)
    publish(registry, clock, mute, path="live/u1/mute")
    playlist_path = tmp_path / "u1" / "mute" / "index.m3u8"
    assert settle(output, clock, lambda: playlist_path.exists() and "#EXT-X-ENDLIST" in playlist_path.read_text())
    playlist = read_playlist(playlist_path.read_text())
    assert len(playlist.entries) >= 4
    report = inspect_segment(playlist_path.parent / playlist.entries[0].uri)
    assert report.starts_with_idr and report.constant_frame_rate == 30 and report.audio_frames == 0


def test_an_unwritable_hls_folder_costs_the_stream_its_hls_only(tmp_path, tags):
    from twisted.logger import globalLogPublisher

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the HLS folder should be")
    clock = ThreadedClock()
    output = HlsOutput(blocker, HlsSettings(mode="copy"), clock)
    registry = StreamRegistry()
    registry.add_listener(output)
    received = []

    class Player:
        def on_metadata(self, metadata):
            pass

        def on_media(self, message):
            received.append(message.type_id)

        def on_stream_end(self):
            pass

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        registry.subscribe("live/u1/s1", Player())
        publish(registry, clock, tags)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert len(received) == len(tags)  # the player got the whole stream
    assert output.info("live/u1/s1") is None
    assert any("no HLS for live/u1/s1" in (e.get("log_format") or "").replace("{path}", "live/u1/s1") for e in events)


def test_two_apps_with_the_same_user_and_stream_do_not_share_files(tmp_path, tags):
    clock = ThreadedClock()
    output = HlsOutput(tmp_path, HlsSettings(mode="copy", queue_frames=1000), clock)
    registry = StreamRegistry()
    registry.add_listener(output)
    first = registry.start("live/u1/s1", Publisher())
    second = registry.start("backup/u1/s1", Publisher())
    assert output.info("live/u1/s1") is not None
    assert output.info("backup/u1/s1") is None  # refused, logged; the stream itself goes on
    for stream in (first, second):
        registry.stop(stream)


def test_files_an_earlier_run_left_are_removed_when_the_path_is_published_again(tmp_path, tags):
    folder = tmp_path / "u1" / "s1"
    folder.mkdir(parents=True)
    for name in ("seg41.ts", "seg42.ts", "index.m3u8", "video_9.m4s", "seg43.ts.tmp"):
        (folder / name).write_bytes(b"old")
    (folder / "notes.txt").write_text("not ours")
    clock = ThreadedClock()
    output = HlsOutput(tmp_path, HlsSettings(mode="copy", segment_s=1.0, queue_frames=1000), clock)
    registry = StreamRegistry()
    registry.add_listener(output)
    publish(registry, clock, tags)
    playlist = folder / "index.m3u8"
    assert settle(output, clock, lambda: playlist.exists() and "#EXT-X-ENDLIST" in playlist.read_text())
    names = {p.name for p in folder.iterdir()}
    assert not names & {"seg41.ts", "seg42.ts", "video_9.m4s", "seg43.ts.tmp"}
    assert "notes.txt" in names
