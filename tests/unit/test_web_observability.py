"""/metrics, the status page at / and its /static/ files, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import re

import pytest
import pytest_twisted
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from rtmprelay.media.cleaner import CleanerConfig
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.client import UpstreamForwarder
from rtmprelay.relay.lag import ReactorLagMonitor
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.web import make_site
from rtmprelay.web.status import STATIC_ROOT, load_static
from tests.unit.test_web import DummyPublisher, Server, header


@pytest.fixture
def site(tmp_path):
    clock = Clock()
    lag = ReactorLagMonitor(clock)
    lag.startService()
    clock.advance(1.0)
    registry = StreamRegistry(cleaning=CleanerConfig())
    server = Server(make_site(registry, tmp_path / "hls", started_at=0.0, clock=clock, lag=lag))
    server.registry = registry
    server.hls_dir = tmp_path / "hls"
    yield server
    lag.stopService()
    pytest_twisted.blockon(defer.maybeDeferred(server.port.stopListening))


def publish_some_video(stream) -> None:
    for frame in range(40):
        stream.publish_media(MediaMessage.of(9, frame * 33, bytes([0x17 if frame % 10 == 0 else 0x27, 1, 0, 0, 0]) + bytes(20)), frame * 0.033)


@pytest_twisted.inlineCallbacks
def test_metrics_in_the_text_format(site):
    stream = site.registry.start("live/user1/stream1", DummyPublisher())
    publish_some_video(stream)
    stream.attach(UpstreamForwarder(MemoryReactorClock(), stream, "rtmp://ingest.example/live/sk_live_0123456789"))
    response, content = yield site.get("/metrics")
    assert response.code == 200
    assert header(response, "Content-Type").startswith("text/plain; version=")
    assert header(response, "Cache-Control") == "no-store"
    text = content.decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["rtmprelay_stream_frames"].type == "counter"
    lag = {s.labels["quantile"]: s.value for s in families["rtmprelay_reactor_lag_seconds"].samples}
    assert set(lag) == {"0.5", "0.99", "1"}
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    assert families["process_cpu_seconds"].samples[0].value > 0
    assert families["rtmprelay_http_connections"].samples[0].value >= 1  # this scrape's own
    # nothing secret, no file path
    assert "0123456789" not in text and str(site.hls_dir) not in text and "/tmp" not in text


@pytest_twisted.inlineCallbacks
def test_metrics_in_openmetrics_when_asked(site):
    publish_some_video(site.registry.start("live/user1/stream1", DummyPublisher()))
    response, content = yield site.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert header(response, "Content-Type").startswith("application/openmetrics-text")
    families = {family.name: family for family in parse_openmetrics(content.decode())}
    histogram = families["rtmprelay_stream_keyframe_interval_seconds"]
    assert histogram.type == "histogram"
    count = [s for s in histogram.samples if s.name.endswith("_count") and s.labels["side"] == "input"]
    assert count[0].value == 3


@pytest_twisted.inlineCallbacks
def test_the_status_page_is_served_at_the_root(site):
    response, content = yield site.get("/")
    assert response.code == 200
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    assert header(response, "X-Content-Type-Options") == "nosniff"
    policy = header(response, "Content-Security-Policy")
    assert "script-src 'self'" in policy and "media-src 'self' blob:" in policy and "frame-ancestors 'none'" in policy
    page = content.decode()
    # every file the page loads is served from the package, nothing from elsewhere
    for reference in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert not re.match(r"[a-z]+:", reference) or reference.startswith("data:"), reference
        if reference.startswith("static/"):
            asset, body = yield site.get("/" + reference)
            assert asset.code == 200 and body, reference


@pytest_twisted.inlineCallbacks
def test_static_files_have_their_types(site):
    for path, content_type in [
        ("/static/status.js", "text/javascript; charset=utf-8"),
        ("/static/status.css", "text/css; charset=utf-8"),
        ("/static/vendor/hls.light.min.js", "text/javascript; charset=utf-8"),
        ("/static/vendor/hls.js-LICENSE.txt", "text/plain; charset=utf-8"),
    ]:
        response, content = yield site.get(path)
        assert (response.code, header(response, "Content-Type")) == (200, content_type), path
        assert header(response, "Cache-Control") == "no-cache"
        assert content == (STATIC_ROOT / path.removeprefix("/static/")).read_bytes()


@pytest.mark.parametrize(
    "target",
    [b"/static", b"/static/", b"/static/vendor", b"/static/vendor/", b"/static/missing.js", b"/static/../metrics",
     b"/static/%2e%2e/status.js", b"/static/vendor/..%2fstatus.js", b"/static/status.js%00", b"/static/\xff.js",
     b"/index.html", b"/static/STATUS.JS"],
)
@pytest_twisted.inlineCallbacks
def test_nothing_else_is_served_from_static(site, target):
    status = yield site.raw(target)
    assert status.split(b" ")[1] in (b"404", b"400"), status


def test_the_vendored_hls_js_is_the_one_its_readme_names():
    readme = (STATIC_ROOT / "vendor" / "README.txt").read_text()
    checksum = re.search(r"sha256 ([0-9a-f]{64})", readme).group(1)
    assert hashlib.sha256((STATIC_ROOT / "vendor" / "hls.light.min.js").read_bytes()).hexdigest() == checksum
    assert "Apache License" in (STATIC_ROOT / "vendor" / "hls.js-LICENSE.txt").read_text()


def test_only_page_files_are_loaded():
    files = load_static()
    assert {"index.html", "status.js", "status.css", "vendor/hls.light.min.js"} <= set(files)
    assert all(re.search(r"\.(html|js|css|txt)$", name) for name in files)
