"""CloudClient against real twisted.web servers on 127.0.0.1, over a real treq client."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import attrs
import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.web import client as wclient
from twisted.web import resource, server
from twisted.web.client import Agent, HTTPConnectionPool

from rtmprelay.cloud import (
    UPSTREAM_URL_FIELDS,
    CloudClient,
    CloudConfig,
    CloudError,
    parse_upstream_url,
    sign_body,
)
from rtmprelay.errors import RelayError

SECRET = "s3cret"
SLOW = "slow"  # a scripted answer that never comes


@attrs.define
class Seen:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes


class ScriptedResource(resource.Resource):
    """Records every request; answers from a script, the last entry repeating."""

    isLeaf = True

    def __init__(self, script: list) -> None:
        super().__init__()
        self.script = list(script)
        self.seen: list[Seen] = []
        self.hanging: list[server.Request] = []

    def render(self, request: server.Request):
        self.seen.append(
            Seen(
                method=request.method,
                path=request.path,
                headers={k.lower(): v[0] for k, v in request.requestHeaders.getAllRawHeaders()},
                body=request.content.read(),
            )
        )
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if answer == SLOW:
            self.hanging.append(request)
            return server.NOT_DONE_YET
        status, body = answer
        request.setResponseCode(status)
        if isinstance(body, (dict, list, str)) and not (isinstance(body, str) and body.startswith("raw:")):
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps(body).encode()
        return body[4:].encode() if isinstance(body, str) else body


def running(script: list, **config):
    """Start a server answering ``script``; return (resource, client, stop)."""
    res = ScriptedResource(script)
    port = reactor.listenTCP(0, server.Site(res), interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    options = {"timeout_s": 2.0, "retries": 5, "backoff_base_s": 0.01, "backoff_max_s": 0.04}
    options.update(config)
    cfg = CloudConfig(base_url=f"http://127.0.0.1:{port.getHost().port}/", **options)
    client = CloudClient(cfg, http, reactor)

    @defer.inlineCallbacks
    def stop():
        for request in res.hanging:
            if not request.finished and not request._disconnected:
                request.finish()
        yield pool.closeCachedConnections()
        yield port.stopListening()

    return res, client, stop


def verify(seen: Seen, secret: str = SECRET) -> None:
    timestamp = seen.headers[b"x-timestamp"]
    expected = hmac.new(secret.encode(), timestamp + b"." + seen.body, hashlib.sha256).hexdigest()
    assert seen.headers[b"x-signature"] == b"sha256=" + expected.encode()
    assert abs(int(timestamp) - time.time()) < 60


# -- pure parts -------------------------------------------------------------


def test_config_is_frozen_and_strips_slash():
    cfg = CloudConfig(base_url="https://cloud.example/")
    assert cfg.base_url == "https://cloud.example"
    assert (cfg.timeout_s, cfg.retries, cfg.backoff_base_s, cfg.backoff_max_s) == (5, 5, 0.5, 8)
    assert [cfg.backoff(n) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.retries = 1  # type: ignore[misc]
    with pytest.raises(ValueError):
        CloudConfig(base_url="ftp://x")


def test_cloud_error_is_a_relay_error():
    assert issubclass(CloudError, RelayError)


def test_sign_body_matches_hmac():
    body = b'{"a":1}'
    expected = hmac.new(b"k", b"123." + body, hashlib.sha256).hexdigest()
    assert sign_body("k", "123", body) == f"sha256={expected}"


@pytest.mark.parametrize(
    "body",
    [
        b'"rtmps://h/app/key"',
        b"rtmps://h/app/key\n",
        *(json.dumps({field: "rtmps://h/app/key"}).encode() for field in UPSTREAM_URL_FIELDS),
        b'{"other": 1, "cfUrl": "rtmps://h/app/key"}',
    ],
)
def test_parse_upstream_url_shapes(body):
    assert parse_upstream_url(body) == "rtmps://h/app/key"


def test_parse_upstream_url_none():
    assert parse_upstream_url(b"{}") is None
    assert parse_upstream_url(b"[1]") is None
    assert parse_upstream_url(b"") is None


# -- lookup_upstream against a real server ------------------------------------


@pytest_twisted.inlineCallbacks
def test_lookup_quotes_path_and_accepts_cfurl():
    res, client, stop = running([(200, {"cfUrl": "rtmps://live.cf.example:443/live/abc"})])
    try:
        url = yield client.lookup_upstream("user 1", "a/b?c")
    finally:
        yield stop()
    assert url == "rtmps://live.cf.example:443/live/abc"
    assert [s.method for s in res.seen] == [b"GET"]
    assert res.seen[0].path == b"/api/rtmp-relay/cf-url/user%201/a%2Fb%3Fc"


@pytest_twisted.inlineCallbacks
def test_lookup_retries_503_then_succeeds():
    res, client, stop = running(
        [(503, "raw:busy"), (503, "raw:busy"), (200, "rtmp://origin.example/app/key")]
    )
    try:
        url = yield client.lookup_upstream("u", "s")
    finally:
        yield stop()
    assert url == "rtmp://origin.example/app/key"
    assert len(res.seen) == 3


@pytest_twisted.inlineCallbacks
def test_lookup_404_not_retried():
    res, client, stop = running([(404, {"error": "no such stream"})])
    try:
        with pytest.raises(CloudError) as info:
            yield client.lookup_upstream("u", "s")
    finally:
        yield stop()
    assert len(res.seen) == 1
    assert info.value.status == 404
    assert "/api/rtmp-relay/cf-url/u/s" in str(info.value)
    assert "404" in str(info.value)


@pytest_twisted.inlineCallbacks
def test_lookup_rejects_non_rtmp_url_without_retry():
    res, client, stop = running([(200, {"url": "http://not-rtmp.example/x"})])
    try:
        with pytest.raises(CloudError, match="rtmp"):
            yield client.lookup_upstream("u", "s")
    finally:
        yield stop()
    assert len(res.seen) == 1


@pytest_twisted.inlineCallbacks
def test_lookup_slow_answer_times_out_and_retries():
    res, client, stop = running([SLOW], timeout_s=0.2, retries=1)
    try:
        with pytest.raises(CloudError, match="timed out") as info:
            yield client.lookup_upstream("u", "s")
    finally:
        yield stop()
    assert len(res.seen) == 2
    assert info.value.attempts == 2


@pytest_twisted.inlineCallbacks
def test_lookup_slow_then_ok():
    res, client, stop = running([SLOW, (200, {"rtmpsUrl": "rtmps://h/a/k"})], timeout_s=0.2)
    try:
        url = yield client.lookup_upstream("u", "s")
    finally:
        yield stop()
    assert url == "rtmps://h/a/k"
    assert len(res.seen) == 2


@pytest_twisted.inlineCallbacks
def test_connection_refused_is_retried_then_fails():
    res, client, stop = running([(200, "rtmp://h/a/k")], retries=2)
    yield stop()  # nothing listens on that port any more
    with pytest.raises(CloudError) as info:
        yield client.lookup_upstream("u", "s")
    assert info.value.attempts == 3
    assert info.value.status is None
    assert "127.0.0.1" in str(info.value)
    assert res.seen == []


# -- webhooks against a real server -------------------------------------------


@pytest_twisted.inlineCallbacks
def test_hls_ready_body_headers_signature_and_retries():
    res, client, stop = running(
        [(503, "raw:x"), (503, "raw:x"), (200, {"ok": True})], secret=SECRET
    )
    try:
        yield client.hls_ready("u1", "s1", "https://cdn/x.m3u8", "https://cdn/x.mpd")
    finally:
        yield stop()
    assert len(res.seen) == 3
    for seen in res.seen:
        assert seen.method == b"POST"
        assert seen.path == b"/api/rtmp-relay/hls-ready"
        assert seen.headers[b"content-type"] == b"application/json"
        assert json.loads(seen.body) == {
            "userId": "u1",
            "streamId": "s1",
            "hlsUrl": "https://cdn/x.m3u8",
            "dashUrl": "https://cdn/x.mpd",
        }
        verify(seen)


@pytest_twisted.inlineCallbacks
def test_stream_ended_signed():
    res, client, stop = running([(204, b"")], secret=SECRET)
    try:
        yield client.stream_ended("u1", "s1")
    finally:
        yield stop()
    (seen,) = res.seen
    assert seen.path == b"/api/rtmp-relay/stream-ended"
    assert json.loads(seen.body) == {"userId": "u1", "streamId": "s1"}
    verify(seen)
    with pytest.raises(AssertionError):
        verify(seen, secret="wrong")


@pytest_twisted.inlineCallbacks
def test_webhook_without_secret_is_unsigned():
    res, client, stop = running([(200, b"")])
    try:
        yield client.stream_ended("u1", "s1")
    finally:
        yield stop()
    (seen,) = res.seen
    assert b"x-signature" not in seen.headers
    assert b"x-timestamp" not in seen.headers


@pytest_twisted.inlineCallbacks
def test_webhook_gives_up_after_retries_naming_url_and_status():
    res, client, stop = running([(502, "raw:bad gateway")], retries=3)
    try:
        with pytest.raises(CloudError) as info:
            yield client.stream_ended("u1", "s1")
    finally:
        yield stop()
    assert len(res.seen) == 4
    err = info.value
    assert err.status == 502 and err.attempts == 4
    assert "/api/rtmp-relay/stream-ended" in str(err)
    assert "last status 502" in str(err)


@pytest_twisted.inlineCallbacks
def test_webhook_4xx_not_retried():
    res, client, stop = running([(401, {"error": "bad signature"})], secret=SECRET)
    try:
        with pytest.raises(CloudError, match="last status 401"):
            yield client.hls_ready("u", "s", "h", "d")
    finally:
        yield stop()
    assert len(res.seen) == 1


# -- backoff schedule, with treq's StubTreq and a task.Clock ------------------


def test_backoff_schedule_with_stub_treq_and_clock():
    from treq.testing import StubTreq
    from twisted.internet.task import Clock

    res = ScriptedResource([(503, "raw:busy")])
    stub = StubTreq(res)
    clock = Clock()
    cfg = CloudConfig(base_url="http://cloud.example", backoff_base_s=0.5, backoff_max_s=2.0, retries=4)
    client = CloudClient(cfg, stub, clock)
    failures: list = []
    client.stream_ended("u", "s").addErrback(failures.append)
    waits = []
    for _ in range(cfg.retries):
        stub.flush()
        backoff = [c for c in clock.getDelayedCalls() if c.getTime() - clock.seconds() != cfg.timeout_s]
        (call,) = backoff
        waits.append(call.getTime() - clock.seconds())
        clock.advance(waits[-1])
    stub.flush()
    assert waits == [0.5, 1.0, 2.0, 2.0]
    assert len(res.seen) == 5
    (failure,) = failures
    assert failure.check(CloudError)
    assert failure.value.status == 503 and failure.value.attempts == 5
    assert clock.getDelayedCalls() == []


class _SilentHttp:
    """An HTTP client whose requests never answer; a cancel fails them the way
    twisted.web's Agent does once the request is on the wire."""

    def __init__(self) -> None:
        self.requests = 0

    def request(self, method, url, **kwargs):
        from twisted.python.failure import Failure

        self.requests += 1

        def cancel(d):
            d.errback(wclient.ResponseNeverReceived([Failure(defer.CancelledError())]))

        return defer.Deferred(canceller=cancel)


def test_a_cancelled_lookup_is_not_retried():
    """The publisher left while its lookup was in flight: no more attempts."""
    from twisted.internet.task import Clock

    clock, http = Clock(), _SilentHttp()
    client = CloudClient(CloudConfig(base_url="http://cloud.example", retries=3, timeout_s=5), http, clock)
    lookup = client.lookup_upstream("u", "s")
    failures = []
    lookup.addErrback(failures.append)
    clock.advance(1)
    lookup.cancel()
    assert failures and failures[0].check(defer.CancelledError)
    clock.advance(120)
    assert http.requests == 1


def test_attempts_that_time_out_are_retried_then_reported():
    from twisted.internet.task import Clock

    clock, http = Clock(), _SilentHttp()
    client = CloudClient(CloudConfig(base_url="http://cloud.example", retries=2, timeout_s=5), http, clock)
    lookup = client.lookup_upstream("u", "s")
    failures = []
    lookup.addErrback(failures.append)
    for _ in range(100):
        clock.advance(1)
    assert http.requests == 3
    assert failures and failures[0].check(CloudError)
    assert "timed out after 5" in str(failures[0].value)
