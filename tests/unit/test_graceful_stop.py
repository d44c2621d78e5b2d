"""What SIGTERM does, without sockets: streams end, upstreams unpublish, webhooks
go out, all within a bound; and the relay takes no publish while it stops."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from rtmprelay.relay.forward import Forwarding, ForwardTemplate, ForwardTemplates
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.relay.shutdown import GracefulStop
from rtmprelay.rtmp import session as s

from tests.unit.test_forwarding import FakePublisher, Upstream


class SlowAnnouncer:
    """A CloudAnnouncer stand-in: stream-ended is posted; the post answers when the test says."""

    def __init__(self):
        self.ended = []
        self._idle = []

    def stream_started(self, stream):
        pass

    def stream_ended(self, stream):
        self.ended.append(stream.path)

    def when_idle(self):
        d = defer.Deferred()
        self._idle.append(d)
        return d

    def delivered(self):
        for d in self._idle:
            d.callback(None)


def relay(bound_s=5.0):
    clock = MemoryReactorClock()
    registry = StreamRegistry()
    upstream = Upstream()
    forwarding = Forwarding(clock, ForwardTemplates([ForwardTemplate.parse("rtmp://up/live/{path}")]), connect=upstream)
    announcer = SlowAnnouncer()
    registry.add_listener(forwarding)
    registry.add_listener(announcer)
    stop = GracefulStop(clock, registry, forwarding=forwarding, announcer=announcer, bound_s=bound_s)
    stop.startService()
    return clock, registry, upstream, announcer, stop


def test_stop_unpublishes_every_upstream_and_waits_for_connections_and_webhooks():
    clock, registry, upstream, announcer, stop = relay()
    for name in ("a", "b"):
        registry.start(f"live/u1/{name}", FakePublisher(), None)
    attempts = [a.publish() for a in upstream.attempts]
    stopped = stop.stopService()
    assert registry.streams() == [] and announcer.ended == ["live/u1/a", "live/u1/b"]
    for attempt in attempts:
        assert any(type(e) is s.PublishEnded for e in attempt.pump())  # FCUnpublish + deleteStream
    assert registry.start("live/u1/late", FakePublisher(), None) is None  # stopping: no new publish
    attempts[0].close()
    attempts[1].close()
    assert not stopped.called  # the webhooks are still on their way
    announcer.delivered()
    assert stopped.called


def test_stop_gives_up_waiting_after_its_bound():
    clock, registry, upstream, announcer, stop = relay(bound_s=5.0)
    registry.start("live/u1/a", FakePublisher(), None)
    upstream.last.publish()
    stopped = stop.stopService()
    clock.advance(4.9)
    assert not stopped.called
    clock.advance(0.2)
    assert stopped.called  # the upstream never closed, the webhook never answered: stop anyway


def test_the_announcer_says_when_its_webhooks_have_gone_out():
    from rtmprelay.cloud.announce import CloudAnnouncer

    class Client:
        def __init__(self):
            self.calls = []

        def stream_ended(self, user_id, stream_id):
            self.calls.append(defer.Deferred())
            return self.calls[-1]

    client = Client()
    announcer = CloudAnnouncer(client, "http://relay.example")
    assert announcer.when_idle().called
    announcer.stream_ended(type("Stream", (), {"path": "live/u1/a"})())
    announcer.stream_ended(type("Stream", (), {"path": "live/u1/b"})())
    idle = announcer.when_idle()
    client.calls[0].callback(None)
    assert not idle.called
    client.calls[1].errback(RuntimeError("cloud down"))  # failed for good: logged, and done
    assert idle.called and not announcer.busy
