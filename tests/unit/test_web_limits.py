"""HTTP limits (issue 8) over real sockets on 127.0.0.1: slow requests, huge bodies,
idle connections and too many connections are closed with a status and counted."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task

from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.web import HttpLimits, make_site

LIMITS = HttpLimits(request_timeout=0.5, idle_timeout=0.6, max_body_bytes=1000, max_connections=3)


class Client(protocol.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.closed = defer.Deferred()
        self.closed_at = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason=None) -> None:
        self.closed_at = time.monotonic()
        self.closed.callback(self.received)


@pytest.fixture
def site():
    site = make_site(StreamRegistry(), "/nonexistent", started_at=0.0, clock=reactor, limits=LIMITS)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    site.test_port = port.getHost().port
    yield site
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def connect(site):
    return protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", site.test_port)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.inlineCallbacks
def test_request_trickled_a_byte_at_a_time_is_closed_with_408(site):
    client = yield connect(site)
    started = time.monotonic()
    for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n":
        if client.closed.called:
            break
        client.transport.write(bytes([byte]))
        yield sleep(0.05)
    received = yield client.closed
    assert received.startswith(b"HTTP/1.1 408")
    assert client.closed_at - started < LIMITS.request_timeout + 1.0
    assert site.http_counters["request_timeout"] == 1


@pytest_twisted.inlineCallbacks
def test_declared_body_over_the_limit_is_refused_at_once_with_413(site):
    client = yield connect(site)
    client.transport.write(b"POST /api/streams HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\nabc")
    received = yield client.closed
    assert received.startswith(b"HTTP/1.1 413")
    assert site.http_counters["body_too_large"] == 1


@pytest_twisted.inlineCallbacks
def test_chunked_body_over_the_limit_is_refused(site):
    client = yield connect(site)
    client.transport.write(b"POST /api/streams HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(10):
        if client.closed.called:
            break
        client.transport.write(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
        yield sleep(0.01)
    received = yield client.closed
    assert received.startswith(b"HTTP/1.1 413")


@pytest_twisted.inlineCallbacks
def test_idle_keep_alive_connection_is_closed_and_a_normal_request_works(site):
    client = yield connect(site)
    client.transport.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    yield sleep(0.2)
    assert client.received.startswith(b"HTTP/1.1 200")
    assert not client.closed.called
    yield client.closed  # the idle timeout closes it
    assert client.closed_at is not None


@pytest_twisted.inlineCallbacks
def test_connections_over_the_limit_are_refused(site):
    clients = []
    for _ in range(LIMITS.max_connections):
        clients.append((yield connect(site)))
    yield sleep(0.1)
    extra = yield connect(site)
    yield extra.closed
    assert extra.received == b""
    assert site.http_counters["max_connections"] == 1
    for client in clients:
        client.transport.loseConnection()
    yield sleep(0.1)
    ok = yield connect(site)
    ok.transport.write(b"GET /health HTTP/1.0\r\n\r\n")
    received = yield ok.closed
    assert received.startswith(b"HTTP/1.0 200")
