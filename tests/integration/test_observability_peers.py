"""/metrics of a real relay while ffmpeg publishes (parsed with prometheus_client's own parser),
the forwarded case against nginx-rtmp, and nothing secret in /metrics, /api/streams or /."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.peers

SECRET = "SECRETKEY42"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    return None


class Scrape:
    def __init__(self, relay) -> None:
        self.text = fetch(relay.http_url("/metrics"))
        self.samples = [s for family in text_string_to_metric_families(self.text) for s in family.samples]

    def value(self, name: str, **labels) -> float | None:
        found = [s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None


def test_metrics_during_a_live_publish_and_after_it(rtmprelay_factory, ffmpeg_publisher_factory):
    """The glasses' shape of stream (15 fps, a keyframe every second) into the Cloudflare profile:
    /metrics shows the input as it was and what the relay made of it, from the relay's own counters."""
    relay = rtmprelay_factory(["--profile", "cloudflare"], hls=True)
    path = "live/user1/glasses"
    publisher = ffmpeg_publisher_factory(relay.url(f"{path}?key={SECRET}"), seconds=7, size="320x240", fps=15, gop=15)
    scrape = wait_for(lambda: (s := Scrape(relay)).value("rtmprelay_stream_hls_ready", path=path) and s, timeout=30)
    assert scrape, relay.log_text
    value = scrape.value

    assert value("rtmprelay_stream_live", path=path) == 1
    assert value("rtmprelay_stream_input_frames_per_second", path=path) == pytest.approx(15, rel=0.1)
    assert value("rtmprelay_stream_output_frames_per_second", path=path) == pytest.approx(30, rel=0.1)
    assert value("rtmprelay_stream_input_bytes_per_second", path=path) > 0
    input_keyframes = value("rtmprelay_stream_keyframe_interval_seconds_count", path=path, side="input")
    assert input_keyframes >= 2
    assert value("rtmprelay_stream_keyframe_interval_seconds_bucket", path=path, side="input", le="1.0") == input_keyframes
    assert value("rtmprelay_stream_keyframe_interval_seconds_bucket", path=path, side="output", le="1.0") == 0
    assert value("rtmprelay_stream_video_frames_repeated_total", path=path) > 0  # 15 fps in, 30 out
    assert value("rtmprelay_stream_keyframes_relabelled_total", path=path) > 0  # 1 s apart, 2 s allowed
    assert value("rtmprelay_stream_hls_segments_total", path=path) >= 1
    assert value("rtmprelay_stream_hls_queue_bytes", path=path) is not None
    assert value("rtmprelay_stream_hls_queue_dropped_messages_total", path=path, track="video") == 0
    assert value("rtmprelay_live_streams") == 1
    assert value("rtmprelay_connections", state="publishing") == 1
    assert value("rtmprelay_http_connections") >= 1
    assert value("rtmprelay_reactor_lag_seconds", quantile="0.99") is not None
    assert value("process_resident_memory_bytes") > 10e6
    assert value("process_cpu_seconds_total") > 0

    for text in (scrape.text, fetch(relay.http_url("/api/streams")), fetch(relay.http_url("/"))):
        assert SECRET not in text and str(relay.hls_dir) not in text

    publisher.wait()
    publisher.check()
    ended = wait_for(lambda: (s := Scrape(relay)).value("rtmprelay_stream_live", path=path) == 0 and s, timeout=10)
    assert ended, "the stream that ended is not in /metrics any more"
    assert ended.value("rtmprelay_stream_frames_total", path=path, track="video", side="input") >= 90
    assert ended.value("rtmprelay_live_streams") == 0


def test_a_forwarded_stream_shows_its_upstream_with_the_key_masked(rtmprelay_factory, nginx_rtmp, ffmpeg_publisher_factory):
    relay = rtmprelay_factory(["--forward", f"rtmp://127.0.0.1:{nginx_rtmp.port}/live/{{streamId}}{SECRET}"])
    path = "live/user1/fwd"
    ffmpeg_publisher_factory(relay.url(path), seconds=8, size="160x96", fps=30, gop=60)
    labels = {"path": path, "destination": f"rtmp://127.0.0.1:{nginx_rtmp.port}/live/fwdS…"}

    def forwarding():
        scrape = Scrape(relay)
        return scrape if (scrape.value("rtmprelay_upstream_sent_frames_total", kind="video", **labels) or 0) > 30 else None

    scrape = wait_for(forwarding, timeout=30)
    assert scrape, Scrape(relay).text
    assert scrape.value("rtmprelay_upstream_state", state="live", **labels) == 1
    assert scrape.value("rtmprelay_upstream_state", state="connecting", **labels) == 0
    assert scrape.value("rtmprelay_upstream_dropped_messages_total", **labels) == 0
    assert SECRET not in scrape.text
