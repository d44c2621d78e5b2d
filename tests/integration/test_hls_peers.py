"""Local HLS from a real publish: ffmpeg -> relay -> playlist and segments over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request

import av
import pytest

from rtmprelay.testing.players import ffprobe_stream

pytestmark = pytest.mark.peers


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


def test_a_publish_becomes_hls_served_over_http(rtmprelay_factory, ffmpeg_publisher_factory, tmp_path):
    relay = rtmprelay_factory()  # the embedded default: HLS written and served
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
    health = json.loads(fetch(relay.http_url("/health"))[2])
    assert health["status"] == "ok"


def test_a_reconnect_continues_the_playlist_after_a_discontinuity(rtmprelay_factory, ffmpeg_publisher_factory):
    relay = rtmprelay_factory()
    url = relay.url("live/user1/again")
    for _ in range(2):
        publisher = ffmpeg_publisher_factory(url, seconds=4, size="160x96", fps=30, gop=60)
        publisher.wait()
        publisher.check()
    playlist = relay.hls_dir / "user1" / "again" / "index.m3u8"
    assert wait_for(lambda: playlist.exists() and playlist.read_text().count("#EXT-X-DISCONTINUITY\n") == 1 and "#EXT-X-ENDLIST" in playlist.read_text()), playlist.read_text()
