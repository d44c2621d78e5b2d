"""Admission in the server adapter, driven synchronously: a publish waits for
the admission chain (signed URLs, hooks, the cloud's upstream lookup), starts
on its answer, is refused with an onStatus naming the reason, and a publisher
that leaves while waiting frees its path. Plays likewise when a check covers
them."""

from __future__ import annotations

import re

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent

from rtmprelay.auth.signing import sign_url
from rtmprelay.relay.admission import AdmissionChain, AdmissionRefused, AdmissionRequest, PathHookCheck, Refusal, SignedUrlCheck
from rtmprelay.relay.limits import ServerLimits
from rtmprelay.relay.forward import Forwarding, UpstreamGrant, UpstreamUnavailable, UrlTemplate
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.relay.server import RTMPServerFactory, ServerConfig
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp import session as s
from rtmprelay.rtmp.connection import Connection, ConnectionConfig, MessageReceived, Role
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

    def __init__(self, reactor, stream, destination, config, **options):
        self.stream, self.url, self.stopped = stream, destination.url, False

    def start(self):
        FakeForwarder.started.append(self)

    def stop(self):
        self.stopped = True

    def on_metadata(self, metadata):
        pass

    def on_media(self, message):
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


# -- the admission chain -------------------------------------------------------------

SECRET = b"unit-test-secret-0123456789"
NOW = 1_800_000_000
EXP = NOW + 3600


class Recorded:
    """A check that records what it was asked and answers as told (a value, a Deferred, or raises)."""

    def __init__(self, name, log, answer=None, actions=("publish",)):
        self.name, self.log, self.answer = name, log, answer
        self.actions = frozenset(actions)

    def check(self, request):
        self.log.append((self.name, request.action, request.path))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def request(action="publish", path=PATH, query=None):
    return AdmissionRequest(action=action, path=path, query=query or {}, peer_host="127.0.0.1")


def outcome(d):
    results = []
    d.addBoth(results.append)
    assert results, "the chain has not answered"
    return results[0]


def test_checks_run_in_order_and_the_first_refusal_wins():
    calls = []
    refusal = AdmissionRefused("no", kind="hook_refused", category=Refusal.UNAUTHORIZED)
    chain = AdmissionChain([Recorded("a", calls), Recorded("b", calls, refusal), Recorded("c", calls, "grant")])
    failure = outcome(chain.admit(request()))
    assert failure.value is refusal
    assert [name for name, _, _ in calls] == ["a", "b"]  # c is never asked


def test_the_chain_answers_with_the_last_grant_and_skips_checks_of_other_actions():
    calls = []
    chain = AdmissionChain(
        [Recorded("grant", calls, "the grant"), Recorded("later", calls, None), Recorded("play-only", calls, "x", actions=("play",))]
    )
    assert outcome(chain.admit(request())) == "the grant"
    assert [name for name, _, _ in calls] == ["grant", "later"]
    assert outcome(chain.admit(request("play"))) == "x"


def test_an_unexpected_error_in_a_check_is_an_error_refusal_keeping_its_failure():
    chain = AdmissionChain([Recorded("bug", [], KeyError("internal detail"))])
    refused = outcome(chain.admit(request())).value
    assert isinstance(refused, AdmissionRefused) and refused.kind == "error"
    assert "internal detail" not in refused.reason and refused.failure.check(KeyError)


def test_cancelling_the_chain_cancels_the_check_it_waits_on_and_runs_no_other():
    calls, cancelled = [], []
    waiting = defer.Deferred(lambda d: cancelled.append(True))
    chain = AdmissionChain([Recorded("slow", calls, waiting), Recorded("next", calls, None)])
    d = chain.admit(request())
    assert not d.called
    d.cancel()
    assert cancelled == [True]
    assert outcome(d).check(defer.CancelledError)
    assert [name for name, _, _ in calls] == ["slow"]


def test_a_path_hook_refusal_is_a_rejection_with_its_message():
    check = PathHookCheck(lambda path: defer.fail(UpstreamUnavailable("upstream lookup for user1/stream1 failed: 404")))
    refused = outcome(AdmissionChain([check]).admit(request())).value
    assert (refused.kind, refused.category, refused.reason) == (
        "upstream_unavailable", Refusal.REJECTED, "upstream lookup for user1/stream1 failed: 404",
    )  # fmt: skip


def test_the_request_repr_holds_no_query_or_tc_url():
    secret_query = {"sig": "f" * 64, "exp": str(EXP)}
    text = repr(AdmissionRequest("publish", PATH, query=secret_query, tc_url="rtmp://h/live?sig=" + "f" * 64))
    assert "f" * 64 not in text and PATH in text
    assert "unit-test-secret" not in repr(SignedUrlCheck(SECRET, MemoryReactorClock()))


# -- signed URLs through the server ---------------------------------------------------


def clock_at(seconds):
    clock = MemoryReactorClock()
    clock.advance(seconds)
    return clock


def signed_factory(registry, *extra_checks, actions=("publish",), clock=None):
    clock = clock or clock_at(NOW)
    chain = AdmissionChain([SignedUrlCheck(SECRET, clock, actions=actions), *extra_checks])
    return RTMPServerFactory(registry, ServerConfig(), clock, admission=chain)


def no_secrets_in(logs, *secrets):
    text = "\n".join(lines(logs))
    for secret in secrets:
        assert secret not in text, f"{secret!r} reached the log"
    assert not re.search(r"sig=[0-9a-fA-F]", text)


def test_a_signed_publish_starts_and_an_unsigned_one_is_unauthorized(registry):
    factory = signed_factory(registry)
    signed = sign_url(URL, SECRET, EXP)
    sig = signed.rsplit("sig=", 1)[1]
    with capturedLogs() as logs:
        unsigned = requesting(factory, URL)
        forged = requesting(factory, URL + f"?exp={EXP}&sig={'0' * 64}")
        good = requesting(factory, signed)
    (failed,) = of_type(unsigned.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.Unauthorized" and "no exp and sig" in failed.description
    (failed,) = of_type(forged.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.Unauthorized" and "does not match" in failed.description
    assert not unsigned.closed and not forged.closed  # told, as for a taken name; the client may close
    assert of_type(good.events, s.PublishStarted)
    assert registry.get(PATH).publisher is good.protocol
    assert factory.counters.requests_refused == {"publish_signature_unsigned": 1, "publish_signature_bad_signature": 1}
    refusals = [line for line in lines(logs) if "rejecting publish" in line]
    assert len(refusals) == 2 and all(f"of {PATH} from " in line for line in refusals)  # once each, path and peer
    no_secrets_in(logs, sig, "0" * 64, SECRET.decode())


def test_an_expired_url_is_unauthorized_naming_how_long_ago(registry):
    factory = signed_factory(registry, clock=clock_at(EXP + 600))
    peer = requesting(factory, sign_url(URL, SECRET, EXP))
    (failed,) = of_type(peer.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.Unauthorized" and "expired 600 s ago" in failed.description
    assert factory.counters.requests_refused == {"publish_signature_expired": 1}


def test_the_signature_is_checked_before_the_upstream_lookup_and_the_grant_still_reaches_the_stream(registry, hook):
    factory = signed_factory(registry, PathHookCheck(hook))
    refused = requesting(factory, URL)
    assert of_type(refused.events, s.PublishFailed)
    assert hook.paths == []  # no lookup for an unsigned publish: cheap local checks first
    peer = requesting(factory, sign_url(URL, SECRET, EXP))
    assert hook.paths == [PATH]
    grant = UpstreamGrant("rtmp://up/live/key")
    hook.answer(0, grant)
    peer.pump()
    assert of_type(peer.events, s.PublishStarted)
    assert registry.get(PATH).admission == grant


def test_the_signature_may_come_on_the_app_as_obs_sends_it(registry):
    query = sign_url(URL, SECRET, EXP).split("?", 1)[1]
    session = s.ClientSession(f"live?{query}", "user1/stream1", f"rtmp://127.0.0.1/live?{query}")
    factory = signed_factory(registry)
    with capturedLogs() as logs:
        peer = Peer(factory, session=session)
        peer.pump()
    assert of_type(peer.events, s.PublishStarted)
    no_secrets_in(logs, query.rsplit("sig=", 1)[1])


def test_taken_and_bad_names_are_counted_too(registry):
    factory = RTMPServerFactory(registry, ServerConfig(), MemoryReactorClock())
    publish_peer = requesting(factory)
    assert of_type(publish_peer.events, s.PublishStarted)
    requesting(factory)
    requesting(factory, "rtmp://127.0.0.1/live/user1/bad%2e%2e")
    assert factory.counters.requests_refused == {"publish_taken": 1, "publish_bad_name": 1}


# -- play authorization ------------------------------------------------------------------


class Player:
    """A bare client Connection speaking the play sequence to one server protocol."""

    def __init__(self, factory, app="live", name="user1/stream1"):
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.client = Connection(Role.CLIENT)
        self.client.initiate()
        self.received = []
        self.exchange()
        self.client.send(m.Command("connect", 1, {"app": app, "tcUrl": f"rtmp://h/{app}"}))
        self.client.send(m.Command("createStream", 2))
        self.exchange()
        self.client.send(m.Command("play", 0, None, (name,)), stream_id=1, chunk_stream_id=8)
        self.exchange()

    def exchange(self):
        for _ in range(5):
            out = self.client.data_to_send()
            if out:
                self.protocol.dataReceived(out)
            back = self.transport.value()
            self.transport.clear()
            if back:
                self.received.extend(self.client.receive_data(back))

    def statuses(self):
        return [
            e.body.args[0]
            for e in self.received
            if type(e) is MessageReceived and type(e.body) is m.Command and e.body.name == "onStatus"
        ]


def test_plays_need_no_signature_unless_play_auth_is_on(registry):
    factory = signed_factory(registry)
    player = Player(factory)
    assert [st["code"] for st in player.statuses()] == ["NetStream.Play.Reset", "NetStream.Play.Start"]


def test_with_play_auth_an_unsigned_play_fails_and_a_signed_one_plays(registry):
    factory = signed_factory(registry, actions=("publish", "play"))
    with capturedLogs() as logs:
        unsigned = Player(factory)
        with_publish_sig = Player(factory, name="user1/stream1?" + sign_url(URL, SECRET, EXP).split("?", 1)[1])
    for player in (unsigned, with_publish_sig):
        (status,) = player.statuses()
        assert (status["level"], status["code"]) == ("error", "NetStream.Play.Failed")
    assert "does not match" in with_publish_sig.statuses()[0]["description"]  # a publish URL does not play
    assert factory.counters.requests_refused == {"play_signature_unsigned": 1, "play_signature_bad_signature": 1}
    assert sum("rejecting play of live/user1/stream1" in line for line in lines(logs)) == 2
    play_query = sign_url(URL, SECRET, EXP, action="play").split("?", 1)[1]
    signed = Player(factory, name=f"user1/stream1?{play_query}")
    assert [st["code"] for st in signed.statuses()] == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    assert list(signed.protocol._players) == [1] and unsigned.protocol._players == {}


def test_a_player_waiting_on_a_hook_is_admitted_later_or_dropped_when_it_leaves(registry):
    answers: list[defer.Deferred] = []
    slow = Recorded("slow", [], None, actions=("play",))
    slow.check = lambda request: answers.append(defer.Deferred()) or answers[-1]
    factory = RTMPServerFactory(registry, ServerConfig(), MemoryReactorClock(), admission=AdmissionChain([slow]))
    player = Player(factory)
    assert player.statuses() == []  # waiting
    answers[0].callback(None)
    player.exchange()
    assert [st["code"] for st in player.statuses()] == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    leaving = Player(factory)
    leaving.protocol.connectionLost(None)
    assert answers[1].called  # cancelled
    assert leaving.protocol._admitting == {}


def test_a_play_waiting_for_admission_is_not_counted_as_a_publish(registry):
    slow = Recorded("slow", [], defer.Deferred(), actions=("play",))
    config = ServerConfig(limits=ServerLimits(max_publishes_per_address=1))
    factory = RTMPServerFactory(registry, config, MemoryReactorClock(), admission=AdmissionChain([slow]))
    player = Player(factory)  # the same address as the publisher below, waiting on its check
    assert player.protocol.state == "admitting"
    publisher = requesting(factory)
    assert of_type(publisher.events, s.PublishStarted)
