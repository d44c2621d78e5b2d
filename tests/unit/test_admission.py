"""Publish admission in the server adapter, driven synchronously: a publish
waits for the admission hook (the cloud's upstream lookup), starts on its
answer, is refused with an onStatus naming the reason, and a publisher that
leaves while waiting frees its path."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent

from rtmprelay.relay.forward import Forwarding, UpstreamGrant, UpstreamUnavailable, UrlTemplate
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.relay.server import RTMPServerFactory, ServerConfig
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp import session as s
from rtmprelay.rtmp.connection import ConnectionConfig
from tests.unit.test_server_protocol import AVC_HEADER, KEYFRAME, Peer, of_type

URL = "rtmp://127.0.0.1/live/user1/stream1"
PATH = "live/user1/stream1"


class Hook:
    """An admission hook the test answers by hand; records paths and cancels."""

    def __init__(self):
        self.calls: list[tuple[str, defer.Deferred]] = []
        self.cancelled: list[str] = []

    def __call__(self, path):
        d = defer.Deferred(lambda _d: self.cancelled.append(path))
        self.calls.append((path, d))
        return d

    @property
    def paths(self):
        return [path for path, _ in self.calls]

    def answer(self, index, value):
        self.calls[index][1].callback(value)

    def refuse(self, index, error):
        self.calls[index][1].errback(error)


@pytest.fixture
def registry():
    return StreamRegistry()


@pytest.fixture
def hook():
    return Hook()


@pytest.fixture
def factory(registry, hook):
    config = ServerConfig(connection=ConnectionConfig(max_message_size=1_000_000))
    return RTMPServerFactory(registry, config, MemoryReactorClock(), admit=hook)


def requesting(factory, url=URL):
    """A peer whose publish request has reached the server (and waits)."""
    peer = Peer(factory, url)
    peer.pump()
    return peer


def lines(logs):
    return [formatEvent(e) for e in logs]


def test_publish_waits_for_the_hook_then_starts_with_its_answer(factory, registry, hook):
    peer = requesting(factory)
    assert hook.paths == [PATH]
    assert not of_type(peer.events, s.PublishStarted)
    assert registry.get(PATH) is None
    grant = UpstreamGrant("rtmp://up/live/key")
    hook.answer(0, grant)
    peer.pump()
    assert of_type(peer.events, s.PublishStarted)
    stream = registry.get(PATH)
    assert stream is not None and stream.admission == grant
    peer.session.send_media(m.MessageType.VIDEO, 0, KEYFRAME)
    peer.pump()
    assert stream.counters.video_messages == 1


def test_media_sent_while_waiting_is_dropped_not_kept(factory, registry, hook):
    peer = requesting(factory)
    # A client that does not wait for NetStream.Publish.Start: raw media on its stream.
    for i in range(200):
        peer.session.connection.send(m.Video(KEYFRAME), stream_id=1, timestamp=i * 40, chunk_stream_id=6)
    peer.pump()
    assert not peer.closed
    hook.answer(0, UpstreamGrant("rtmp://up/live/key"))
    peer.pump()
    stream = registry.get(PATH)
    assert stream.counters.video_messages == 0
    assert stream.video_header is None


def test_refusal_is_an_onstatus_error_naming_the_reason_and_a_log_line(factory, registry, hook):
    peer = requesting(factory)
    reason = "upstream lookup for user1/stream1 failed after 4 attempt(s): last status 500"
    with capturedLogs() as logs:
        hook.refuse(0, UpstreamUnavailable(reason))
        peer.pump()
    (failed,) = of_type(peer.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.Rejected"
    assert failed.description == reason
    assert any(f"rejecting publish of {PATH}" in line and reason in line for line in lines(logs))
    assert registry.get(PATH) is None
    # The path is free again: the publisher may try once more, and waits anew.
    assert not peer.closed


def test_unexpected_hook_error_is_refused_without_its_details(factory, registry, hook):
    peer = requesting(factory)
    with capturedLogs() as logs:
        hook.refuse(0, KeyError("internal detail"))
        peer.pump()
    (failed,) = of_type(peer.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.Rejected"
    assert "internal detail" not in failed.description
    assert any("admission hook failed" in line for line in lines(logs))


def test_a_refusal_leaves_other_streams_alone(factory, registry, hook):
    first = requesting(factory, "rtmp://127.0.0.1/live/user1/a")
    second = requesting(factory, "rtmp://127.0.0.1/live/user1/b")
    hook.answer(0, UpstreamGrant("rtmp://up/live/a"))
    first.pump()
    hook.refuse(1, UpstreamUnavailable("upstream lookup for user1/b failed: no"))
    second.pump()
    assert of_type(first.events, s.PublishStarted)
    assert of_type(second.events, s.PublishFailed)
    first.session.send_media(m.MessageType.VIDEO, 0, AVC_HEADER)
    first.pump()
    assert registry.get("live/user1/a").counters.video_messages == 1
    assert registry.get("live/user1/b") is None


def test_second_publisher_of_a_waiting_path_is_refused_at_once(factory, registry, hook):
    first = requesting(factory)
    second = requesting(factory)
    (failed,) = of_type(second.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.BadName"
    assert hook.paths == [PATH]  # no second lookup
    hook.answer(0, UpstreamGrant("rtmp://up/live/key"))
    first.pump()
    assert registry.get(PATH).publisher is first.protocol


def test_publisher_leaving_while_waiting_cancels_and_frees_the_path(factory, registry, hook):
    first = requesting(factory)
    first.protocol.connectionLost(None)
    assert hook.cancelled == [PATH]
    # The path is free at once: a reconnecting publisher waits on its own lookup.
    second = requesting(factory)
    assert hook.paths == [PATH, PATH]
    assert not of_type(second.events, s.PublishFailed)
    hook.answer(1, UpstreamGrant("rtmp://up/live/fresh"))
    second.pump()
    assert registry.get(PATH).admission == UpstreamGrant("rtmp://up/live/fresh")


def test_a_hook_that_outlives_its_cancel_is_ignored_when_it_answers(registry):
    """As the cloud client does: a cancel during a request counts as a failed attempt."""
    retry: defer.Deferred = defer.Deferred()

    async def stubborn(path):
        try:
            await defer.Deferred()
        except defer.CancelledError:
            await retry
        return UpstreamGrant("rtmp://up/live/late")

    factory = RTMPServerFactory(registry, ServerConfig(), MemoryReactorClock(), admit=lambda path: defer.ensureDeferred(stubborn(path)))
    peer = requesting(factory)
    peer.protocol.connectionLost(None)
    assert not factory.admissions.waiting(PATH)
    retry.callback(None)
    assert registry.get(PATH) is None
    assert peer.protocol._admitting == {}
    assert not factory.admissions.waiting(PATH)


def test_publish_withdrawn_while_waiting_is_not_started(factory, registry, hook):
    peer = requesting(factory)
    peer.session.connection.send(m.Command("closeStream", 0, None, ()), stream_id=1, chunk_stream_id=8)
    peer.pump()
    with capturedLogs() as logs:
        hook.answer(0, UpstreamGrant("rtmp://up/live/key"))
    assert registry.get(PATH) is None
    assert not factory.admissions.waiting(PATH)
    assert any("withdrawn" in line for line in lines(logs))


def test_synchronous_source_starts_in_the_same_round(registry):
    forwarding = Forwarding(None, UrlTemplate("rtmp://up/live/{path}"))
    factory = RTMPServerFactory(registry, ServerConfig(), MemoryReactorClock(), admit=forwarding.admit)
    peer = Peer(factory, URL)
    peer.pump()
    assert of_type(peer.events, s.PublishStarted)
    assert registry.get(PATH).admission == UpstreamGrant("rtmp://up/live/user1/stream1")


def test_without_a_hook_publish_starts_at_once(registry):
    factory = RTMPServerFactory(registry, ServerConfig(), MemoryReactorClock())
    peer = Peer(factory, URL)
    peer.pump()
    assert of_type(peer.events, s.PublishStarted)
    assert registry.get(PATH).admission is None


# -- Forwarding and its URL sources ------------------------------------------------


class ManualSource:
    def __init__(self):
        self.pending: dict[str, defer.Deferred] = {}

    def resolve(self, path):
        self.pending[path] = defer.Deferred()
        return self.pending[path]


class FakeForwarder:
    started: list = []

    def __init__(self, reactor, stream, url, config):
        self.stream, self.url, self.stopped = stream, url, False

    def start(self):
        FakeForwarder.started.append(self)

    def stop(self):
        self.stopped = True

    def on_metadata(self, metadata):
        pass

    def on_media(self, type_id, timestamp, payload):
        pass

    def on_stream_end(self):
        pass


@pytest.fixture
def fake_forwarders(monkeypatch):
    from rtmprelay.relay import forward

    FakeForwarder.started = []
    monkeypatch.setattr(forward, "UpstreamForwarder", FakeForwarder)
    return FakeForwarder.started


def test_url_template_is_a_source_that_answers_at_once():
    d = UrlTemplate("rtmps://live.example:443/live/{streamId}").resolve("live/u1/s1")
    assert d.called and d.result == "rtmps://live.example:443/live/s1"


def test_forwarding_admits_with_the_source_url_and_forwards_there(registry, fake_forwarders):
    source = ManualSource()
    forwarding = Forwarding(None, source)
    registry.add_listener(forwarding)
    admitted = forwarding.admit(PATH)
    source.pending[PATH].callback("rtmps://cf.example/live/key")
    grant = admitted.result
    assert grant == UpstreamGrant("rtmps://cf.example/live/key")
    stream = registry.start(PATH, object(), grant)
    (forwarder,) = fake_forwarders
    assert forwarder.url == "rtmps://cf.example/live/key" and forwarder in stream.sinks
    registry.stop(stream)
    assert forwarder.stopped and forwarding.forwarders == {}


def test_forwarding_refusal_passes_the_source_error_through():
    source = ManualSource()
    admitted = Forwarding(None, source).admit(PATH)
    source.pending[PATH].errback(UpstreamUnavailable("upstream lookup for user1/stream1 failed: 404"))
    failures = []
    admitted.addErrback(failures.append)
    assert failures[0].check(UpstreamUnavailable)


def test_stream_started_without_a_grant_is_resolved_then_forwarded(registry, fake_forwarders):
    source = ManualSource()
    registry.add_listener(Forwarding(None, source))
    stream = registry.start(PATH, object())
    assert fake_forwarders == []
    source.pending[PATH].callback("rtmp://up/live/x")
    assert [f.url for f in fake_forwarders] == ["rtmp://up/live/x"]
    assert fake_forwarders[0] in stream.sinks


def test_stream_that_ends_before_its_url_is_resolved_is_not_forwarded(registry, fake_forwarders):
    source = ManualSource()
    registry.add_listener(Forwarding(None, source))
    stream = registry.start(PATH, object())
    registry.stop(stream)
    source.pending[PATH].callback("rtmp://up/live/x")
    assert fake_forwarders == []


def test_stream_whose_url_cannot_be_resolved_stays_up_unforwarded(registry, fake_forwarders):
    source = ManualSource()
    registry.add_listener(Forwarding(None, source))
    stream = registry.start(PATH, object())
    with capturedLogs() as logs:
        source.pending[PATH].errback(UpstreamUnavailable("no route"))
    assert fake_forwarders == [] and registry.get(PATH) is stream
    assert any("not forwarding" in line and "no route" in line for line in lines(logs))
