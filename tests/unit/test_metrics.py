"""RelayCollector: /metrics read from the live objects (registry, cleaner, meters, HLS, forwarders)
at scrape time, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import re
import shutil

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from rtmprelay.hls.output import HlsOutput, HlsSettings
from rtmprelay.media.cleaner import CleanerConfig
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.client import UpstreamForwarder
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.relay.server import RTMPServerFactory, ServerConfig
from rtmprelay.testing.flv import read_flv_tags
from rtmprelay.testing.publishers import make_test_flv
from rtmprelay.web.metrics import FAMILIES, RETENTION_S, RelayCollector, make_metrics_registry
from tests.unit.test_hls_output import Publisher, ThreadedClock, settle

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make test media")


class Scrape:
    """One scrape, parsed: ``value(name, **labels)`` and ``series(name)``."""

    def __init__(self, collector: RelayCollector) -> None:
        self.text = generate_latest(make_metrics_registry(collector)).decode()
        self.families = {family.name: family for family in text_string_to_metric_families(self.text)}
        self.samples = [sample for family in self.families.values() for sample in family.samples]

    def series(self, name: str) -> list:
        return [sample for sample in self.samples if sample.name == name]

    def value(self, name: str, **labels) -> float:
        found = [s.value for s in self.series(name) if all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(found) == 1, f"{name} {labels}: {found}\n{self.text}"
        return found[0]


def _glasses(tmp_path_factory, seconds):
    path = make_test_flv(tmp_path_factory.mktemp("flv") / "glasses.flv", seconds=seconds, size="160x96", fps=15, gop=15)
    return [tag for tag in read_flv_tags(path) if tag.tag_type in (8, 9)]


@pytest.fixture(scope="module")
def glasses_tags(tmp_path_factory):
    """5 s of real H.264 + AAC as the glasses send it: 15 fps, a keyframe every second."""
    return _glasses(tmp_path_factory, 5)


@pytest.fixture(scope="module")
def long_glasses_tags(tmp_path_factory):
    """The same for 13 s: long enough for the bitrate rule (judged over 10 s after the first 2)."""
    return _glasses(tmp_path_factory, 13)


def publish(stream, tags) -> None:
    for tag in tags:
        stream.publish_media(MediaMessage.of(tag.tag_type, tag.timestamp, tag.payload), tag.timestamp / 1000)
    stream.poll(tags[-1].timestamp / 1000 + 1)


@needs_ffmpeg
def test_a_dirty_input_and_its_repairs_are_read_from_the_cleaner(long_glasses_tags):
    registry = StreamRegistry(cleaning=CleanerConfig.from_profile("cloudflare"))
    collector = RelayCollector(registry, clock=Clock())
    stream = registry.start("live/u1/glasses", Publisher())
    publish(stream, long_glasses_tags)
    scrape = Scrape(collector)
    counters = stream.cleaner.counters
    path = "live/u1/glasses"

    assert scrape.value("rtmprelay_stream_live", path=path) == 1
    assert scrape.value("rtmprelay_live_streams") == 1
    # what the input was: 15 fps, keyframes 1 s apart
    assert scrape.value("rtmprelay_stream_input_frames_per_second", path=path) == pytest.approx(15, rel=0.05)
    assert scrape.value("rtmprelay_stream_keyframe_interval_seconds_count", path=path, side="input") == 12
    assert scrape.value("rtmprelay_stream_keyframe_interval_seconds_bucket", path=path, side="input", le="1.0") == 12
    assert scrape.value("rtmprelay_stream_input_bytes_per_second", path=path) == counters.input_bitrate / 8
    # what went out: 30 fps from repeated frames, keyframes at least 2 s apart (the others relabelled)
    assert scrape.value("rtmprelay_stream_output_frames_per_second", path=path) == pytest.approx(30, rel=0.05)
    assert scrape.value("rtmprelay_stream_video_frames_repeated_total", path=path) == counters.duplicated > 0
    assert scrape.value("rtmprelay_stream_keyframes_relabelled_total", path=path) == counters.keyframes_relabelled > 0
    assert scrape.value("rtmprelay_stream_keyframe_interval_seconds_bucket", path=path, side="output", le="1.0") == 0
    assert scrape.value("rtmprelay_stream_keyframe_interval_seconds_count", path=path, side="output") >= 1
    assert scrape.value("rtmprelay_stream_frames_total", path=path, track="video", side="output") == counters.video_out
    # every rule checked has exactly one verdict, and the relabelled keyframes are a repaired rule
    verdicts = scrape.series("rtmprelay_stream_rule_verdict")
    rules = {s.labels["rule"] for s in verdicts}
    assert rules == {verdict.rule for verdict in stream.cleaner.verdicts()}
    for rule in rules:
        assert sum(s.value for s in verdicts if s.labels["rule"] == rule) == 1, rule
    assert any(s.labels["verdict"] == "repaired" and s.value == 1 for s in verdicts)
    # an input that is too thin for Cloudflare breaks the bitrate rule, which no packet-level repair fixes
    assert scrape.value("rtmprelay_stream_rule_verdict", path=path, rule="bitrate", verdict="broken") == 1


def test_names_follow_prometheus_conventions_and_every_family_is_declared():
    registry = StreamRegistry(cleaning=CleanerConfig())
    collector = RelayCollector(registry, clock=Clock())
    stream = registry.start("live/u1/s1", Publisher())
    for frame in range(40):
        stream.publish_media(MediaMessage.of(9, frame * 33, bytes([0x17 if frame % 10 == 0 else 0x27, 1, 0, 0, 0]) + bytes(20)), frame * 0.033)
    scrape = Scrape(collector)
    for family in scrape.families.values():
        assert re.fullmatch(r"(rtmprelay|process)_[a-z_]+", family.name), family.name
        if family.name.startswith("rtmprelay_"):
            declared = FAMILIES[family.name + "_total" if family.type == "counter" else family.name]
            assert declared.kind == family.type
            assert {k for s in family.samples for k in s.labels} - {"le"} == set(declared.labels)
    for name, family in FAMILIES.items():
        assert name.endswith("_total") == (family.kind == "counter"), name
        assert not re.search(r"_(ms|milliseconds|bits|kbps)(_|$)", name), name


def test_a_stream_that_ended_is_scraped_again_then_forgotten():
    clock = Clock()
    registry = StreamRegistry(cleaning=CleanerConfig())
    collector = RelayCollector(registry, clock=clock)
    stream = registry.start("live/u1/s1", Publisher())
    for frame in range(30):
        stream.publish_media(MediaMessage.of(9, frame * 33, bytes([0x17 if frame % 10 == 0 else 0x27, 1, 0, 0, 0]) + bytes(20)), frame * 0.033)
    registry.stop(stream)

    clock.advance(RETENTION_S - 1)
    scrape = Scrape(collector)
    assert scrape.value("rtmprelay_stream_live", path="live/u1/s1") == 0
    assert scrape.value("rtmprelay_stream_frames_total", path="live/u1/s1", track="video", side="input") == 30
    assert scrape.value("rtmprelay_live_streams") == 0

    clock.advance(2)
    scrape = Scrape(collector)
    assert not [s for s in scrape.samples if "path" in s.labels], scrape.text


def test_a_reconnect_within_the_retention_counts_as_a_second_publish():
    clock = Clock()
    registry = StreamRegistry()
    collector = RelayCollector(registry, clock=clock)
    registry.stop(registry.start("live/u1/s1", Publisher()))
    clock.advance(30)
    registry.start("live/u1/s1", Publisher())
    scrape = Scrape(collector)
    assert scrape.value("rtmprelay_stream_publishes_total", path="live/u1/s1") == 2
    assert scrape.value("rtmprelay_stream_live", path="live/u1/s1") == 1  # one series per path, the live one


def test_streams_that_ended_are_bounded_in_number():
    registry = StreamRegistry()
    collector = RelayCollector(registry, clock=Clock(), max_ended=3)
    for number in range(5):
        registry.stop(registry.start(f"live/u1/s{number}", Publisher()))
    scrape = Scrape(collector)
    assert {s.labels["path"] for s in scrape.series("rtmprelay_stream_live")} == {"live/u1/s2", "live/u1/s3", "live/u1/s4"}


def test_upstreams_are_named_with_their_stream_key_masked():
    registry = StreamRegistry()
    collector = RelayCollector(registry, clock=Clock())
    stream = registry.start("live/u1/s1", Publisher())
    # a real forwarder, not started: it is connecting
    stream.attach(UpstreamForwarder(MemoryReactorClock(), stream, "rtmps://user:pw@live.example:443/live/abcdSECRETKEY?sig=SECRETSIG"))
    scrape = Scrape(collector)
    assert "SECRET" not in scrape.text and "pw@" not in scrape.text
    labels = {"path": "live/u1/s1", "destination": "rtmps://live.example:443/live/abcd…?…"}
    assert scrape.value("rtmprelay_upstream_state", state="connecting", **labels) == 1
    assert scrape.value("rtmprelay_upstream_state", state="live", **labels) == 0
    assert scrape.value("rtmprelay_upstream_sent_frames_total", kind="video", **labels) == 0
    assert scrape.value("rtmprelay_upstream_reconnects_total", **labels) == 0
    assert scrape.value("rtmprelay_upstream_queue_bytes", **labels) == 0
    assert scrape.value("rtmprelay_upstream_queue_limit_bytes", **labels) > 0
    assert {s.labels["state"] for s in scrape.series("rtmprelay_upstream_state")} >= {"backing_off", "bridging"}


def test_connections_by_state_and_what_the_limits_refused_come_from_the_server():
    from tests.unit.test_server_limits import LIMITS, advance, connect, handshaken, publishing

    clock = MemoryReactorClock()
    registry = StreamRegistry()
    server = RTMPServerFactory(registry, ServerConfig(limits=LIMITS), clock)
    collector = RelayCollector(registry, clock=clock, server=server)
    handshaken(server)
    publishing(server, "s1")
    for _ in range(4):  # two are still in the handshake; two are over the limit per address (4)
        connect(server)
    scrape = Scrape(collector)
    states = {s.labels["state"]: s.value for s in scrape.series("rtmprelay_connections")}
    assert states == {"handshake": 2, "connected": 1, "admitting": 0, "publishing": 1, "playing": 0, "closing": 0}
    assert scrape.value("rtmprelay_connections_refused_total", reason="max_connections_per_address") == 2
    assert scrape.value("rtmprelay_stream_live", path="live/user1/s1") == 1

    advance(clock, LIMITS.command_timeout + 1)  # the one that never said what it wants is closed
    scrape = Scrape(collector)
    assert scrape.value("rtmprelay_connections_closed_total", reason="command_timeout") == 1
    assert scrape.value("rtmprelay_connections", state="connected") == 0


def test_av_drift_is_exported_once_the_cleaner_has_measured_it():
    """Before a measurement there is no drift series (nothing made up); after one, the
    gauge and the repairs read the cleaner's counters."""
    registry = StreamRegistry(cleaning=CleanerConfig())
    collector = RelayCollector(registry, clock=Clock())
    stream = registry.start("live/u1/s1", Publisher())
    names = {s.name for s in Scrape(collector).samples}
    assert "rtmprelay_stream_av_drift_seconds" not in names
    counters = stream.cleaner.counters
    counters.audio_drift_ms, counters.audio_drift_inserted, counters.audio_dropped = -120.5, 0, 5
    scrape = Scrape(collector)
    assert scrape.value("rtmprelay_stream_av_drift_seconds", path="live/u1/s1") == -0.1205
    assert scrape.value("rtmprelay_stream_av_drift_repairs_total", path="live/u1/s1", action="dropped") == 5


@needs_ffmpeg
def test_hls_readings_follow_the_output_after_the_stream_ended(tmp_path, glasses_tags):
    clock = ThreadedClock()
    hls = HlsOutput(tmp_path, HlsSettings(mode="copy", segment_s=1.0, queue_frames=1000, cleanup_after_s=60), clock)
    registry = StreamRegistry(cleaning=CleanerConfig())
    registry.add_listener(hls)
    collector = RelayCollector(registry, clock=clock, hls=hls)
    stream = registry.start("live/u1/s1", Publisher())
    publish(stream, glasses_tags)
    registry.stop(stream)
    playlist = tmp_path / "u1" / "s1" / "index.m3u8"
    assert settle(hls, clock, lambda: playlist.exists() and "#EXT-X-ENDLIST" in playlist.read_text())
    listed = playlist.read_text().count("#EXTINF")
    assert listed >= 2 and settle(hls, clock, lambda: hls.info("live/u1/s1")["segments"] == listed)

    scrape = Scrape(collector)
    info = hls.info("live/u1/s1")
    assert scrape.value("rtmprelay_stream_live", path="live/u1/s1") == 0
    assert scrape.value("rtmprelay_stream_hls_segments_total", path="live/u1/s1") == info["segments"]
    assert scrape.value("rtmprelay_stream_hls_ready", path="live/u1/s1") == 1
    assert scrape.value("rtmprelay_stream_hls_queue_bytes", path="live/u1/s1") == 0
    assert scrape.value("rtmprelay_stream_hls_queue_dropped_messages_total", path="live/u1/s1", track="video") == 0
    assert str(tmp_path) not in scrape.text  # no file path goes out

    clock.advance(61)  # the files are removed: the last readings stay until the stream is forgotten
    assert settle(hls, clock, lambda: hls.info("live/u1/s1") is None)
    assert Scrape(collector).value("rtmprelay_stream_hls_segments_total", path="live/u1/s1") == info["segments"]
