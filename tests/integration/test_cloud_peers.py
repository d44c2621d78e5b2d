"""The relay with ``--cloud`` between real peers: a real relay process, ffmpeg
publishing, nginx-rtmp as the upstream the lookup names, and the cloud as a
twisted.web server in this test process on 127.0.0.1.

The tests run on the reactor (pytest-twisted) so the cloud answers while they
wait; they wait by polling, never by blocking, until the peers are done.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.web import resource, server

from rtmprelay.testing import flv

pytestmark = pytest.mark.peers

SECRET = "cloud-test-secret"


@attrs.define
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


class FakeCloud(resource.Resource):
    """The cloud's relay routes: lookups answered from ``upstreams``, webhooks recorded."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.upstreams: dict[tuple[str, str], str] = {}  # (userId, streamId) -> URL; others get 500
        self.calls: list[Call] = []

    def render(self, request):
        path = request.path.decode()
        self.calls.append(
            Call(
                method=request.method.decode(),
                path=path,
                headers={k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()},
                body=request.content.read(),
            )
        )
        parts = path.strip("/").split("/")
        if request.method == b"GET" and parts[:3] == ["api", "rtmp-relay", "cf-url"] and len(parts) == 5:
            url = self.upstreams.get((parts[3], parts[4]))
            if url is None:
                request.setResponseCode(500)
                return b"lookup backend down"
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"cfUrl": url}).encode()
        request.setHeader(b"Content-Type", b"application/json")
        return b"{}"

    def posts(self, hook):
        return [c for c in self.calls if c.method == "POST" and c.path == f"/api/rtmp-relay/{hook}"]

    def lookups(self, user, stream):
        return [c for c in self.calls if c.method == "GET" and c.path == f"/api/rtmp-relay/cf-url/{user}/{stream}"]


@pytest.fixture
def cloud():
    fake = FakeCloud()
    port = reactor.listenTCP(0, server.Site(fake), interface="127.0.0.1")
    fake.url = f"http://127.0.0.1:{port.getHost().port}"
    yield fake
    port.stopListening()


@pytest.fixture
def upstream(nginx_rtmp_factory):
    return nginx_rtmp_factory(applications=("live",))


@pytest.fixture
def cloud_relay(rtmprelay_factory, cloud, monkeypatch):
    # The secret comes from the environment, as it should in production.
    monkeypatch.setenv("RTMPRELAY_CLOUD_SECRET", SECRET)
    return rtmprelay_factory(["--bridge-grace", "0", "--no-clean", "--no-hls", "--cloud", cloud.url, "--cloud-retries", "1", "--cloud-timeout", "3"])


@defer.inlineCallbacks
def until(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield task.deferLater(reactor, 0.05, lambda: None)


def signed(call: Call) -> bool:
    timestamp = call.headers["x-timestamp"]
    digest = hmac.new(SECRET.encode(), timestamp.encode() + b"." + call.body, hashlib.sha256).hexdigest()
    return call.headers["x-signature"] == f"sha256={digest}"


@pytest_twisted.inlineCallbacks
def test_publish_is_forwarded_to_the_url_the_cloud_names(cloud, cloud_relay, upstream, reference_flv, ffmpeg_publisher_factory):
    cloud.upstreams[("user1", "stream1")] = f"rtmp://127.0.0.1:{upstream.port}/live/cfkey1"
    publisher = ffmpeg_publisher_factory(cloud_relay.url("live/user1/stream1"), seconds=None, source_file=reference_flv)
    yield until(lambda: not publisher.running, "ffmpeg to finish")
    publisher.check()
    recording = upstream.wait_recording("cfkey1", app="live")
    flv.assert_payload_subsequence(reference_flv, recording)
    report = flv.decode_check(recording)
    assert report.clean, report
    assert len(cloud.lookups("user1", "stream1")) == 1
    yield until(lambda: cloud.posts("stream-ended"), "stream-ended")
    (ended,) = cloud.posts("stream-ended")
    assert ended.json == {"userId": "user1", "streamId": "stream1"}
    assert ended.headers["content-type"] == "application/json"
    assert signed(ended)
    log = cloud_relay.log_text
    assert "waits for admission" in log and "publish live/user1/stream1" in log
    assert f"127.0.0.1:{upstream.port}/live/cfke…" in log and "cfkey1" not in log  # the stream key masked


@pytest_twisted.inlineCallbacks
def test_failing_lookup_rejects_the_publish_with_the_reason(cloud, cloud_relay, reference_flv, ffmpeg_publisher_factory):
    publisher = ffmpeg_publisher_factory(cloud_relay.url("live/user1/refused"), seconds=None, source_file=reference_flv)
    yield until(lambda: not publisher.running, "ffmpeg to give up")
    assert publisher.returncode != 0
    reason = "upstream lookup for user1/refused failed after 2 attempt(s): last status 500"
    assert reason in publisher.stderr_text, publisher.stderr_text
    assert len(cloud.lookups("user1", "refused")) == 2
    log = cloud_relay.log_text
    assert "rejecting publish of live/user1/refused" in log and reason in log, log
    # Never live, so never ended.
    assert cloud.posts("stream-ended") == []


@pytest_twisted.inlineCallbacks
def test_hls_ready_announces_fetchable_hls_and_dash_urls(cloud, rtmprelay_factory, upstream, monkeypatch, ffmpeg_publisher_factory):
    """--cloud with local HLS in fMP4: hls-ready once the first segment is listed, with URLs
    (made from the HTTP endpoint, no --public-url) that serve the playlist and the DASH manifest."""
    monkeypatch.setenv("RTMPRELAY_CLOUD_SECRET", SECRET)
    relay = rtmprelay_factory(["--bridge-grace", "0", "--cloud", cloud.url, "--hls-segment-type", "fmp4", "--hls-mode", "copy"], hls=True)
    cloud.upstreams[("user1", "hlsready")] = f"rtmp://127.0.0.1:{upstream.port}/live/cfkey2"
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/hlsready"), seconds=6, size="160x96", fps=30, gop=60)
    yield until(lambda: cloud.posts("hls-ready"), "hls-ready", timeout=30)
    (ready,) = cloud.posts("hls-ready")
    assert signed(ready)
    base = f"http://127.0.0.1:{relay.http_port}/hls/user1/hlsready"
    assert ready.json == {
        "userId": "user1",
        "streamId": "hlsready",
        "hlsUrl": f"{base}/index.m3u8",
        "dashUrl": f"{base}/manifest.mpd",
    }
    # Announced only once something is playable: the playlists already list a segment.
    from twisted.internet import threads

    from rtmprelay.testing.players import ffprobe_stream

    for url in (ready.json["hlsUrl"], ready.json["dashUrl"]):
        streams = yield threads.deferToThread(ffprobe_stream, url, timeout=30)
        assert sorted(s.codec_name for s in streams) == ["aac", "h264"], url
    yield until(lambda: not publisher.running, "ffmpeg to finish")
    publisher.check()
    yield until(lambda: cloud.posts("stream-ended"), "stream-ended")
    assert len(cloud.posts("hls-ready")) == 1
    hooks = [c.path.rsplit("/", 1)[1] for c in cloud.calls if c.method == "POST"]
    assert hooks == ["hls-ready", "stream-ended"]
