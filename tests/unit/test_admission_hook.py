"""The HTTP admission hook (--on-publish, --on-play) against a real twisted.web server on 127.0.0.1."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import attrs
import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import defer, reactor, task
from twisted.web import resource, server
from twisted.web.client import Agent, HTTPConnectionPool

from rtmprelay.cloud.hook import HttpAdmissionHook, hook_form
from rtmprelay.errors import ConfigError
from rtmprelay.relay.admission import AdmissionChain, AdmissionRefused, AdmissionRequest, Refusal
from rtmprelay.testing.ports import free_port

SLOW = "slow"  # an answer that never comes

REQUEST = AdmissionRequest(
    action="publish",
    path="live/user1/stream1",
    query={"token": "t0k", "exp": "1800000000", "call": "play", "app": "forged"},
    peer_host="192.0.2.7",
    app="live/user1",
    name="stream1",
    tc_url="rtmp://relay.example/live/user1",
    client_id="42",
    flash_version="FMLE/3.0 (compatible; FMSc/1.0)",
)


@attrs.define
class Seen:
    path: bytes
    headers: dict[bytes, bytes]
    form: list[tuple[str, str]]


class HookResource(resource.Resource):
    """Answers every POST with ``status`` (a redirect with a Location), or never (SLOW)."""

    isLeaf = True

    def __init__(self, status) -> None:
        super().__init__()
        self.status = status
        self.seen: list[Seen] = []
        self.hanging: list[server.Request] = []

    def render_POST(self, request):
        body = request.content.read().decode()
        self.seen.append(
            Seen(request.path, {k.lower(): v[0] for k, v in request.requestHeaders.getAllRawHeaders()}, parse_qsl(body, keep_blank_values=True))
        )
        if self.status == SLOW:
            self.hanging.append(request)
            return server.NOT_DONE_YET
        request.setResponseCode(self.status)
        if 300 <= self.status < 400:
            request.setHeader(b"Location", b"rtmp://elsewhere.example/live/other")
        return b"a body the relay does not read" * 100


@pytest.fixture
def hook_server():
    servers = []

    def start(status, path="/on_publish?key=operator-token", **options):
        res = HookResource(status)
        port = reactor.listenTCP(0, server.Site(res), interface="127.0.0.1")
        pool = HTTPConnectionPool(reactor, persistent=False)
        hook = HttpAdmissionHook(
            f"http://127.0.0.1:{port.getHost().port}{path}",
            http_client=HTTPClient(Agent(reactor, pool=pool)),
            clock=reactor,
            **options,
        )
        servers.append((res, port, pool))
        return res, hook

    yield start
    for res, port, pool in servers:
        for request in res.hanging:
            if not request.finished and not request._disconnected:
                request.finish()
        pytest_twisted.blockon(pool.closeCachedConnections())
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@defer.inlineCallbacks
def outcome(d):
    try:
        result = yield d
    except Exception as error:  # noqa: BLE001 - the test looks at what it was
        return error
    return result


def test_the_form_has_nginx_rtmps_fields_then_the_clients_query():
    form = hook_form(REQUEST)
    assert form[:11] == [
        ("call", "publish"), ("addr", "192.0.2.7"), ("clientid", "42"), ("app", "live/user1"),
        ("flashver", "FMLE/3.0 (compatible; FMSc/1.0)"), ("swfurl", ""), ("tcurl", "rtmp://relay.example/live/user1"),
        ("pageurl", ""), ("name", "stream1"), ("type", "live"), ("path", "live/user1/stream1"),
    ]  # fmt: skip
    # The client's parameters follow; it cannot override the relay's own fields.
    assert form[11:] == [("token", "t0k"), ("exp", "1800000000")]
    play = hook_form(attrs.evolve(REQUEST, action="play"))
    assert ("call", "play") in play and "type" not in dict(play)


@pytest_twisted.inlineCallbacks
def test_2xx_admits_with_one_form_post(hook_server):
    res, hook = hook_server(204)
    result = yield outcome(AdmissionChain([hook]).admit(REQUEST))
    assert result is None
    (seen,) = res.seen
    assert seen.path == b"/on_publish"
    assert seen.headers[b"content-type"] == b"application/x-www-form-urlencoded"
    assert seen.form == hook_form(REQUEST)


@pytest_twisted.inlineCallbacks
def test_4xx_and_5xx_refuse_as_unauthorized(hook_server):
    for status in (403, 500):
        _res, hook = hook_server(status)
        refused = yield outcome(AdmissionChain([hook]).admit(REQUEST))
        assert isinstance(refused, AdmissionRefused)
        assert (refused.kind, refused.category) == ("hook_refused", Refusal.UNAUTHORIZED)
        assert refused.reason == f"refused by the publish hook (HTTP {status})"


@pytest_twisted.inlineCallbacks
def test_a_redirect_is_not_followed_and_refuses(hook_server):
    res, hook = hook_server(302)
    refused = yield outcome(AdmissionChain([hook]).admit(REQUEST))
    assert refused.kind == "hook_redirect" and "redirects are not supported" in refused.reason
    assert len(res.seen) == 1


@pytest_twisted.inlineCallbacks
def test_no_answer_within_the_timeout_refuses_naming_it(hook_server):
    res, hook = hook_server(SLOW, timeout_s=0.3)
    refused = yield outcome(AdmissionChain([hook]).admit(REQUEST))
    assert (refused.kind, refused.category) == ("hook_unreachable", Refusal.REJECTED)
    assert refused.reason == "publish hook unreachable: no answer within 0.3 s"
    assert len(res.seen) == 1  # not retried


@pytest_twisted.inlineCallbacks
def test_a_hook_that_refuses_connections_refuses_the_publish():
    hook = HttpAdmissionHook(f"http://127.0.0.1:{free_port()}/on_publish", timeout_s=5)
    refused = yield outcome(AdmissionChain([hook]).admit(REQUEST))
    assert refused.kind == "hook_unreachable" and refused.reason == "publish hook unreachable: connection refused"


@pytest_twisted.inlineCallbacks
def test_a_cancelled_admission_cancels_the_request(hook_server):
    res, hook = hook_server(SLOW, timeout_s=30)
    d = AdmissionChain([hook]).admit(REQUEST)
    yield until(lambda: res.hanging, "the hook to be asked")
    d.cancel()
    result = yield outcome(d)
    assert isinstance(result, defer.CancelledError)
    yield until(lambda: res.hanging[0]._disconnected, "the relay to hang up on the hook")


@defer.inlineCallbacks
def until(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield task.deferLater(reactor, 0.01, lambda: None)


def test_the_hook_url_is_checked_and_never_shown_with_its_query():
    hook = HttpAdmissionHook("https://user:pw@hooks.example:8443/on_publish?key=operator-token")
    assert repr(hook) == "HttpAdmissionHook(publish -> https://hooks.example:8443/on_publish)"
    with pytest.raises(ConfigError, match="http"):
        HttpAdmissionHook("ftp://hooks.example/x")
