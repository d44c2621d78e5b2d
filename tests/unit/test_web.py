"""The web site over real HTTP on 127.0.0.1: HLS files, health, the streams API."""

from __future__ import annotations

import json
import os

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import Clock

from rtmprelay.media.cleaner import CleanerConfig
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.web import make_site

PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.ts\n"
SEGMENT = b"\x47" + bytes(187)


class DummyPublisher:
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Server:
    def __init__(self, site) -> None:
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    @defer.inlineCallbacks
    def get(self, path: str, method: str = "GET", **kwargs):
        response = yield treq.request(method, self.base + path, persistent=False, **kwargs)
        body = yield treq.content(response)
        return response, body

    @defer.inlineCallbacks
    def raw(self, target: bytes):
        """The status line for ``GET target``, sent as is (clients normalise ``..`` away)."""
        received = yield protocol.ClientCreator(reactor, _Raw, target).connectTCP("127.0.0.1", self.port.getHost().port)
        data = yield received.done
        return data.split(b"\r\n", 1)[0]


class _Raw(protocol.Protocol):
    def __init__(self, target: bytes) -> None:
        self.target = target
        self.buffer = b""
        self.done = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"GET " + self.target + b" HTTP/1.0\r\nHost: localhost\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data

    def connectionLost(self, reason) -> None:
        self.done.callback(self.buffer)


def header(response, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


@pytest.fixture
def hls_dir(tmp_path):
    root = tmp_path / "hls"
    stream = root / "user1" / "stream1"
    stream.mkdir(parents=True)
    (stream / "index.m3u8").write_bytes(PLAYLIST)
    (stream / "seg0.ts").write_bytes(SEGMENT)
    (stream / "init.mp4").write_bytes(b"ftyp")
    (stream / "chunk0.m4s").write_bytes(b"moof")
    (stream / "manifest.mpd").write_bytes(b"<MPD/>")
    (stream / "notes.txt").write_bytes(b"not media")
    (stream / ".partial.ts").write_bytes(SEGMENT)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "secret.ts").write_bytes(b"secret")
    os.symlink(outside / "secret.ts", stream / "escape.ts")
    os.symlink(outside, stream / "outdir")
    os.symlink(stream / "seg0.ts", stream / "alias.ts")
    return root


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(1000.0)
    return clock


@pytest.fixture
def server(hls_dir, clock):
    registry = StreamRegistry()
    server = Server(make_site(registry, hls_dir, started_at=990.0, clock=clock))
    server.registry = registry
    yield server
    pytest_twisted.blockon(defer.maybeDeferred(server.port.stopListening))


@pytest.mark.parametrize(
    ("name", "content_type", "cache", "body"),
    [
        ("index.m3u8", "application/vnd.apple.mpegurl", "no-cache", PLAYLIST),
        ("manifest.mpd", "application/dash+xml", "no-cache", b"<MPD/>"),
        ("seg0.ts", "video/mp2t", "public, max-age=3600", SEGMENT),
        ("chunk0.m4s", "video/iso.segment", "public, max-age=3600", b"moof"),
        ("init.mp4", "video/mp4", "public, max-age=3600", b"ftyp"),
        ("alias.ts", "video/mp2t", "public, max-age=3600", SEGMENT),
    ],
)
@pytest_twisted.inlineCallbacks
def test_hls_files_have_type_cors_and_cache(server, name, content_type, cache, body):
    response, content = yield server.get(f"/hls/user1/stream1/{name}")
    assert response.code == 200
    assert content == body
    assert header(response, "Content-Type") == content_type
    assert header(response, "Access-Control-Allow-Origin") == "*"
    assert header(response, "Cache-Control") == cache


@pytest_twisted.inlineCallbacks
def test_hls_head_and_range(server):
    response, content = yield server.get("/hls/user1/stream1/seg0.ts", method="HEAD")
    assert (response.code, content) == (200, b"")
    assert header(response, "Content-Length") == str(len(SEGMENT))
    response, content = yield server.get("/hls/user1/stream1/seg0.ts", headers={"Range": "bytes=0-3"})
    assert response.code == 206
    assert content == SEGMENT[:4]


@pytest_twisted.inlineCallbacks
def test_hls_preflight(server):
    response, content = yield server.get(
        "/hls/user1/stream1/seg0.ts",
        method="OPTIONS",
        headers={"Origin": "https://player.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.code == 204
    assert header(response, "Access-Control-Allow-Origin") == "*"
    assert "GET" in header(response, "Access-Control-Allow-Methods")
    assert "Range" in header(response, "Access-Control-Allow-Headers")


@pytest.mark.parametrize(
    "path",
    [
        "/hls/user1/stream1/missing.ts",
        "/hls/user1/stream1/notes.txt",
        "/hls/user1/stream1/.partial.ts",
        "/hls/user1/stream1/escape.ts",
        "/hls/user1/stream1/outdir/secret.ts",
        "/hls/user1/stream1",
        "/hls/user1/stream1/",
        "/hls/",
        "/hls",
        "/api",
    ],
)
@pytest_twisted.inlineCallbacks
def test_not_served(server, path):
    response, content = yield server.get(path)
    assert response.code == 404
    assert b"secret" not in content
    if path.startswith("/hls"):
        assert header(response, "Access-Control-Allow-Origin") == "*"
        assert header(response, "Cache-Control") == "no-store"


@pytest.mark.parametrize(
    "target",
    [
        b"/hls/../../etc/passwd",
        b"/hls/%2e%2e/%2e%2e/etc/passwd",
        b"/hls/%2e%2e/secret/secret.ts",
        b"/hls/..%2fsecret%2fsecret.ts",
        b"/hls/user1%2fstream1%2fseg0.ts",
        b"/hls/user1/stream1/..%5c..%5csecret.ts",
        b"/hls//etc/passwd",
        b"/hls/user1/stream1/seg0.ts%00.m3u8",
    ],
)
@pytest_twisted.inlineCallbacks
def test_traversal_refused(server, target):
    status = yield server.raw(target)
    assert status.split(b" ")[1] in (b"403", b"404"), status


@pytest_twisted.inlineCallbacks
def test_raw_request_reaches_files(server):
    """The raw client used for traversal attempts does reach a real file."""
    status = yield server.raw(b"/hls/user1/stream1/seg0.ts")
    assert status.split(b" ")[1] == b"200"


@pytest_twisted.inlineCallbacks
def test_health(server, clock):
    server.registry.start("live/user1/stream1", DummyPublisher())
    clock.advance(2.5)
    response, content = yield server.get("/health")
    assert response.code == 200
    assert header(response, "Content-Type") == "application/json"
    assert json.loads(content) == {"status": "ok", "uptime_s": 12.5, "streams": 1}


def publish(stream) -> None:
    stream.publish_metadata({"width": 320.0, "framerate": 30.0, "encoder": b"\xffraw", "odd": float("nan"), "list": (1, None)})
    stream.publish_media(MediaMessage.of(9, 0, bytes([0x17, 0, 0, 0, 0]) + b"not an AVC config"), 0.0)
    for i in range(10):
        stream.publish_media(MediaMessage.of(9, i * 33, bytes([0x17 if i % 5 == 0 else 0x27, 1, 0, 0, 0]) + bytes(20)), i * 0.033)
        stream.publish_media(MediaMessage.of(8, i * 23, bytes([0xAF, 1]) + bytes(10)), i * 0.023)
    stream.poll(5.0)


@pytest_twisted.inlineCallbacks
def test_api_streams_without_cleaner(server):
    publish(server.registry.start("live/user1/stream1", DummyPublisher()))
    server.registry.start("live/lonely", DummyPublisher())
    response, content = yield server.get("/api/streams")
    assert response.code == 200
    assert header(response, "Content-Type") == "application/json"
    first, second = json.loads(content)
    assert (first["path"], first["userId"], first["streamId"]) == ("live/lonely", "", "lonely")
    assert (second["path"], second["userId"], second["streamId"]) == ("live/user1/stream1", "user1", "stream1")
    assert second["counters"] == {"video_messages": 11, "audio_messages": 10, "bytes_in": 22 + 250 + 120, "keyframes": 2}
    assert second["cleaner"] is None
    assert second["verdicts"] == []
    assert second["metadata"] == {"width": 320.0, "framerate": 30.0, "encoder": str(b"\xffraw"), "odd": "nan", "list": [1, None]}
    assert first["metadata"] is None


@pytest_twisted.inlineCallbacks
def test_api_streams_with_cleaner(hls_dir, clock):
    registry = StreamRegistry(cleaning=CleanerConfig())
    server = Server(make_site(registry, hls_dir, started_at=0.0, clock=clock))
    try:
        publish(registry.start("live/user1/stream1", DummyPublisher()))
        response, content = yield server.get("/api/streams")
    finally:
        yield server.port.stopListening()
    (stream,) = json.loads(content)
    assert stream["cleaner"]["keyframes_in"] == 2
    assert stream["cleaner"]["audio_in"] == 10
    assert {"rule", "broken", "repaired", "detail"} <= set(stream["verdicts"][0])
    codec = [v for v in stream["verdicts"] if v["rule"] == "video_codec"]
    assert codec and codec[0]["broken"] is True and codec[0]["repaired"] is False
