"""Forwarding without sockets: URL templates and how URLs split, the upstream
forwarder's ordering and bounded queue, reconnection with backoff, errors named
and counted, backpressure that never reaches the publisher, several
destinations, and what /api/streams shows.

The upstream is a real ``ServerSession`` behind a ``StringTransport``; the
forwarder is given a ``connect`` function that lets each test answer each
connection attempt (accept, refuse, close) and a ``MemoryReactorClock``."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet import defer, error
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from rtmprelay.errors import ConfigError
from rtmprelay.media.message import MediaMessage
from rtmprelay.names import StreamName
from rtmprelay.relay.client import UpstreamConfig, UpstreamForwarder
from rtmprelay.relay.forward import Forwarding, ForwardTemplate, ForwardTemplates, UpstreamGrant, UrlTemplate
from rtmprelay.relay.registry import LiveStream, StreamRegistry
from rtmprelay.relay.upstream import (
    Backoff,
    Destination,
    KeyframeSpacing,
    TlsVerification,
    UpstreamError,
    UpstreamState,
    split_upstream_url,
)
from rtmprelay.rtmp import session as s
from rtmprelay.testing.memory import accept_all
from rtmprelay.web.api import stream_info

AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"
AAC_HEADER = b"\xaf\x00\x12\x10"
KEY = b"\x17\x01\x00\x00\x00" + b"K" * 1000
INTER = b"\x27\x01\x00\x00\x00" + b"P" * 1000
AUDIO = b"\xaf\x01" + b"A" * 200
STREAM_KEY = "sk_live_0123456789abcdef"
URL = f"rtmp://up.example/live/{STREAM_KEY}"


# -- URL templates and splitting ---------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "path", "url"),
    [
        ("rtmp://up/live/{path}", "live/u1/s1", "rtmp://up/live/u1/s1"),
        ("rtmps://live.cloudflare.com:443/live/{streamId}", "live/u1/s1", "rtmps://live.cloudflare.com:443/live/s1"),
        ("rtmp://up/{app}/{userId}-{streamId}", "live/u1/s1", "rtmp://up/live/u1-s1"),
        ("rtmp://up/live/{streamId}", "live/u_1/a.b-c", "rtmp://up/live/a.b-c"),
    ],
)
def test_url_template(template, path, url):
    assert UrlTemplate(template).render(path) == url


def test_url_template_rejects_unknown_placeholders_and_schemes():
    with pytest.raises(ConfigError, match="unknown placeholder"):
        UrlTemplate("rtmp://up/live/{user}")
    with pytest.raises(ConfigError):
        UrlTemplate("http://up/live/{path}")
    with pytest.raises(ConfigError, match="application and a stream name"):
        UrlTemplate("rtmp://up/{streamId}")


def test_stream_name_parts():
    assert StreamName.from_path("live/u1/s1") == StreamName("live", "u1/s1", "u1", "s1")
    assert StreamName.from_path("live/s1") == StreamName("live", "s1", "", "s1")


def test_the_application_is_the_first_path_element_as_nginx_push_reads_it():
    """rtmp://nginx/live/{path} publishes to a stock ``application live``, stream ``user1/stream1``."""
    target = split_upstream_url("rtmp://127.0.0.1:1936/live/user1/stream1")
    assert (target.host, target.port, target.tls) == ("127.0.0.1", 1936, False)
    assert (target.app, target.stream_name, target.tc_url) == ("live", "user1/stream1", "rtmp://127.0.0.1:1936/live")
    cloudflare = split_upstream_url("rtmps://live.cloudflare.com:443/live/KEY?x=1")
    assert (cloudflare.port, cloudflare.tls, cloudflare.app, cloudflare.stream_name) == (443, True, "live", "KEY?x=1")
    assert cloudflare.tc_url == "rtmps://live.cloudflare.com/live"
    longer = split_upstream_url("rtmp://h/live/user1/stream1", app="live/user1")
    assert (longer.app, longer.stream_name) == ("live/user1", "stream1")
    with pytest.raises(ConfigError, match="does not start with the application"):
        split_upstream_url("rtmp://h/live/user1/stream1", app="other")


def test_forward_options_follow_the_url_as_librtmp_takes_them():
    spec = ForwardTemplate.parse("rtmp://h/live/{userId}/{streamId} app=live profile=youtube")
    assert spec.profile == "youtube" and spec.app == "live"
    assert spec.destination("live/u1/s1") == Destination("rtmp://h/live/u1/s1", app="live", profile="youtube")
    with pytest.raises(ConfigError, match="unknown destination profile"):
        ForwardTemplate.parse("rtmp://h/live/{path} profile=nope")
    with pytest.raises(ConfigError, match="is not one of"):
        ForwardTemplate.parse("rtmp://h/live/{path} live=1")
    templates = ForwardTemplates([ForwardTemplate.parse("rtmp://a/live/{path}"), ForwardTemplate.parse("rtmp://b/x/{streamId}")])
    assert [d.url for d in templates.resolve("live/u1/s1").result] == ["rtmp://a/live/u1/s1", "rtmp://b/x/s1"]


def test_a_grant_takes_one_url_or_several_destinations():
    assert UpstreamGrant("rtmp://up/live/k").destinations == (Destination("rtmp://up/live/k"),)
    two = UpstreamGrant([Destination("rtmp://a/live/k"), "rtmp://b/live/k"])
    assert [d.url for d in two.destinations] == ["rtmp://a/live/k", "rtmp://b/live/k"] and two.url == "rtmp://a/live/k"


# -- the harness: an upstream the test answers -------------------------------------------


class FakePublisher:
    def __init__(self):
        self.paused = 0

    def pause_reading(self):
        self.paused += 1

    def resume_reading(self):
        self.paused -= 1


@attrs.define
class Attempt:
    """One connection attempt of a forwarder, answered by the test."""

    target: object
    factory: object
    deferred: defer.Deferred
    protocol: object = None
    transport: StringTransport | None = None
    server: s.ServerSession | None = None
    events: list = attrs.field(factory=list)

    def refuse(self):
        self.deferred.errback(Failure(error.ConnectionRefusedError("Connection refused")))

    def open(self):
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.server = s.ServerSession()
        self.protocol.makeConnection(self.transport)
        self.deferred.callback(self.protocol)
        return self

    def pump(self, decide=accept_all):
        """Shuttle bytes both ways until quiet; return the server's new events."""
        new = []
        for _ in range(20):
            data = self.transport.value()
            self.transport.clear()
            events = self.server.receive_data(data) if data else []
            for event in events:
                if decide:
                    decide(self.server, event)
            new += events
            answer = self.server.data_to_send()
            if answer and not self.protocol.lost:
                self.protocol.dataReceived(answer)
            if not data and not answer:
                break
        self.events += new
        return new

    def publish(self):
        self.open()
        self.pump()
        return self

    def media(self):
        self.pump()
        return [(e.type_id, e.timestamp, e.payload) for e in self.events if type(e) is s.MediaReceived]

    def metadata(self):
        return [e.metadata for e in self.events if type(e) is s.MetadataReceived]

    def close(self, reason=None):
        self.protocol.connectionLost(Failure(reason or error.ConnectionDone("Connection was closed cleanly.")))


class Upstream:
    """The ``connect`` a forwarder is given: records attempts for the test to answer."""

    def __init__(self):
        self.attempts: list[Attempt] = []

    def __call__(self, target, factory, verification):
        attempt = Attempt(target, factory, defer.Deferred())
        self.attempts.append(attempt)
        return attempt.deferred

    @property
    def last(self) -> Attempt:
        return self.attempts[-1]


def forwarder_for(url=URL, queue_bytes=8 * 1024 * 1024, timeout=10.0, stream=None, **options):
    clock = MemoryReactorClock()
    upstream = Upstream()
    stream = stream or LiveStream("live/u1/s1", FakePublisher())
    forwarder = UpstreamForwarder(
        clock, stream, url, UpstreamConfig(queue_bytes=queue_bytes, connect_timeout=timeout), connect=upstream, **options
    )
    stream.attach(forwarder)
    forwarder.start()
    return clock, upstream, stream, forwarder


def publish_gop(stream, start_ms=0, frames=10, key_every=10):
    for i in range(frames):
        stream.publish_media(MediaMessage.of(9, start_ms + i * 40, KEY if i % key_every == 0 else INTER))
        stream.publish_media(MediaMessage.of(8, start_ms + i * 40 + 5, AUDIO))


# -- ordering and bounds ---------------------------------------------------------------------


def test_headers_and_metadata_go_first_then_the_queue_in_order():
    clock, upstream, stream, forwarder = forwarder_for()
    stream.publish_metadata({"width": 1.0})
    stream.publish_media(MediaMessage.of(9, 0, AVC_HEADER))
    stream.publish_media(MediaMessage.of(8, 0, AAC_HEADER))
    stream.publish_media(MediaMessage.of(9, 0, KEY))
    stream.publish_media(MediaMessage.of(9, 33, INTER))
    attempt = upstream.last.publish()
    stream.publish_media(MediaMessage.of(9, 66, INTER))
    assert attempt.metadata() == [{"width": 1.0}]
    assert attempt.media() == [(9, 0, AVC_HEADER), (8, 0, AAC_HEADER), (9, 0, KEY), (9, 33, INTER), (9, 66, INTER)]
    assert forwarder.dropped == 0 and forwarder.state is UpstreamState.LIVE
    assert (forwarder.frames_sent, forwarder.audio_frames_sent) == (3, 0)
    assert forwarder.bytes_sent > 3 * 1000


def test_queue_before_the_upstream_accepts_is_bounded_and_keeps_a_whole_gop():
    clock, upstream, stream, forwarder = forwarder_for(queue_bytes=12_000)
    stream.publish_media(MediaMessage.of(9, 0, AVC_HEADER))
    for i in range(25):
        stream.publish_media(MediaMessage.of(9, i * 33, KEY if i % 10 == 0 else INTER))
    assert forwarder._queued_bytes <= 12_000
    media = upstream.last.publish().media()
    assert media[0] == (9, 20 * 33, AVC_HEADER)  # at the time the publish starts from
    assert media[1] == (9, 20 * 33, KEY)  # the queue restarts at the newest keyframe
    assert len(media) == 1 + 5
    assert forwarder.dropped == 20


def test_a_gop_larger_than_the_queue_waits_for_the_next_keyframe():
    clock, upstream, stream, forwarder = forwarder_for(queue_bytes=3_000)
    for i in range(25):
        stream.publish_media(MediaMessage.of(9, i * 33, KEY if i % 10 == 0 else INTER))
    assert forwarder._queued_bytes <= 3_000
    attempt = upstream.last.publish()
    assert attempt.media() == []
    assert forwarder.dropped == 25
    stream.publish_media(MediaMessage.of(9, 25 * 33, INTER))  # still waiting for a keyframe
    stream.publish_media(MediaMessage.of(9, 26 * 33, KEY))
    assert attempt.media() == [(9, 26 * 33, KEY)]


def test_a_full_upstream_never_pauses_the_publisher_and_writes_stay_bounded():
    """One slow destination must not hold back the ingest (or the other destinations)."""
    clock, upstream, stream, forwarder = forwarder_for(queue_bytes=5_000)
    attempt = upstream.last.publish()
    attempt.protocol.pauseProducing()  # what the upstream transport does when its buffer fills
    assert stream.publisher.paused == 0
    for i in range(20):
        stream.publish_media(MediaMessage.of(9, i * 33, KEY if i == 15 else INTER))
    # 5 frames of 1 KB fit the bound; the rest is skipped, the keyframe too: the
    # socket is still paused and over the bound (what is queued stays bounded).
    assert forwarder.dropped == 20 - 5
    attempt.protocol.resumeProducing()
    stream.publish_media(MediaMessage.of(9, 20 * 33, INTER))
    assert forwarder.dropped == 15 + 1  # no keyframe yet: the skip goes on after resuming
    stream.publish_media(MediaMessage.of(9, 21 * 33, KEY))
    assert [p for _, _, p in attempt.media()] == [INTER] * 5 + [KEY]  # the first keyframe after it ends the skip
    assert stream.publisher.paused == 0


def test_stop_unpublishes_upstream_with_fcunpublish_and_deletestream():
    clock, upstream, stream, forwarder = forwarder_for()
    attempt = upstream.last.publish()
    forwarder.stop()
    events = attempt.pump()
    assert any(type(e) is s.PublishEnded for e in events)
    assert attempt.transport.disconnecting
    assert forwarder.state is UpstreamState.STOPPED
    closed = forwarder.wait_closed()
    assert not closed.called
    attempt.close()
    assert closed.called
    clock.advance(60)
    assert len(upstream.attempts) == 1  # a stopped forwarder never reconnects


# -- reconnection -----------------------------------------------------------------------------


def test_a_lost_upstream_is_reconnected_at_once_and_resumes_at_the_last_keyframe_with_the_timeline_going_on():
    clock, upstream, stream, forwarder = forwarder_for()
    stream.publish_metadata({"framerate": 25.0})
    stream.publish_media(MediaMessage.of(9, 0, AVC_HEADER))
    stream.publish_media(MediaMessage.of(8, 0, AAC_HEADER))
    first = upstream.last.publish()
    publish_gop(stream, 0, frames=10)
    publish_gop(stream, 400, frames=6)  # a second GOP: keyframe at 400 ms
    first.close()
    assert forwarder.state is UpstreamState.BACKING_OFF
    assert forwarder.last_error == UpstreamError("closed", "closed the connection")
    publish_gop(stream, 640, frames=3, key_every=99)  # arrives while reconnecting: queued
    clock.advance(0)  # "at once"
    assert len(upstream.attempts) == 2
    second = upstream.last.publish()
    media = second.media()
    assert second.metadata() == [{"framerate": 25.0}]
    # headers again, at the time the publish resumes from: the last keyframe's, so the timeline goes on
    assert media[:3] == [(9, 400, AVC_HEADER), (8, 400, AAC_HEADER), (9, 400, KEY)]
    timestamps = [ts for type_id, ts, _ in media[2:] if type_id == 9]
    assert timestamps == [400 + 40 * i for i in range(6)] + [640, 680, 720]
    assert forwarder.state is UpstreamState.LIVE and forwarder.attempts == 2
    stream.publish_media(MediaMessage.of(9, 760, INTER))
    assert second.media()[-1] == (9, 760, INTER)


def test_backoff_grows_to_ten_seconds_and_a_refused_connection_is_retried_within_a_second():
    rejected = UpstreamError("rejected", "NetStream.Publish.BadName")
    refused = UpstreamError("refused", "connection refused")
    backoff = Backoff()
    assert [backoff.next_delay(rejected) for _ in range(9)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    backoff.reset()
    assert [backoff.next_delay(refused) for _ in range(6)] == [0.0, 0.5, 1.0, 1.0, 1.0, 1.0]


def test_an_upstream_that_comes_back_is_fed_within_a_second_of_listening():
    clock, upstream, stream, forwarder = forwarder_for()
    upstream.last.refuse()
    for _ in range(30):  # down for a while: the refused attempts go on, at most a second apart
        clock.advance(1.0)
        upstream.last.refuse()
    before = len(upstream.attempts)
    clock.advance(1.0)
    assert len(upstream.attempts) == before + 1  # "listening again" now: asked within the second
    upstream.last.publish()
    assert forwarder.state is UpstreamState.LIVE
    assert forwarder.errors == {"refused": 31}


def test_a_refused_publish_is_named_counted_logged_once_and_retried_with_backoff():
    def refuse_publish(server, event):
        if type(event) is s.PublishRequested:
            server.reject_publish(event.stream_id, s.Status.PUBLISH_BAD_NAME, f"Stream {STREAM_KEY} already publishing")
        else:
            accept_all(server, event)

    with capturedLogs() as events:
        clock, upstream, stream, forwarder = forwarder_for()
        delays = []
        for _ in range(5):
            attempt = upstream.last.open()
            attempt.pump(decide=refuse_publish)
            assert attempt.transport.disconnecting
            attempt.close()  # the close that follows adds no second error
            delays.append(forwarder._retry.getTime() - clock.seconds())
            clock.advance(delays[-1])
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert forwarder.errors == {"rejected": 5}
    assert forwarder.last_error.kind == "rejected"
    assert "NetStream.Publish.BadName" in forwarder.last_error.message
    warnings = [e for e in events if "trying again" in e["log_format"]]
    assert len(warnings) == 1  # once per change: the same refusal again is not news
    text = "\n".join(_lines(events)) + forwarder.last_error.message
    assert STREAM_KEY not in text and "sk_l…" in text


def test_a_close_while_connecting_names_the_application_nginx_rtmp_does_not_have():
    clock, upstream, stream, forwarder = forwarder_for(Destination("rtmp://127.0.0.1:1936/live/user1/stream1", app="live/user1"))
    attempt = upstream.last.open()
    attempt.close()
    assert forwarder.last_error.kind == "closed"
    assert "application 'live/user1' may not exist" in forwarder.last_error.message


def test_a_publish_not_accepted_in_time_and_a_stalled_socket_are_timeouts():
    clock, upstream, stream, forwarder = forwarder_for(timeout=3.0)
    attempt = upstream.last.open()  # connected, but the server never answers
    clock.advance(3.0)
    assert forwarder.last_error == UpstreamError("timeout", "publish not accepted within 3 s")
    assert attempt.transport.disconnecting
    attempt.close()
    clock.advance(0)
    live = upstream.last.publish()
    live.protocol.pauseProducing()
    clock.advance(2.9)
    live.protocol.resumeProducing()  # it moved in time: nothing happens
    live.protocol.pauseProducing()
    clock.advance(3.0)
    assert forwarder.last_error == UpstreamError("timeout", "took nothing for 3 s (socket full)")
    assert live.transport.disconnecting and forwarder.errors == {"timeout": 2}
    # live for 5.9 s counts as a success: the backoff starts over, and the next attempt is at once
    assert forwarder.state is UpstreamState.CONNECTING and len(upstream.attempts) == 3


def test_an_upstream_that_breaks_the_protocol_is_dropped_and_reconnected():
    clock, upstream, stream, forwarder = forwarder_for()
    attempt = upstream.last.open()
    attempt.protocol.dataReceived(b"\x09" + b"\x00" * 1536)  # S0 with a version nobody speaks
    assert forwarder.last_error.kind == "protocol"
    assert attempt.transport.disconnecting
    assert forwarder.state is UpstreamState.BACKING_OFF


def test_connect_failures_are_named():
    from rtmprelay.relay.upstream import describe_connect_failure

    def named(exc):
        return describe_connect_failure(Failure(exc))

    assert named(error.ConnectionRefusedError()).kind == "refused"
    assert named(error.TimeoutError()).kind == "timeout"
    assert named(error.DNSLookupError("nope.invalid")).kind == "dns"
    assert named(error.ConnectError("boom")).kind == "network"


def test_tls_verification_names_the_certificate_and_why(tmp_path):
    from OpenSSL import crypto

    from rtmprelay.testing.tls import make_test_pki

    pki = make_test_pki(tmp_path)
    cert = crypto.load_certificate(crypto.FILETYPE_PEM, pki["cert"].read_bytes())
    verification = TlsVerification()
    assert verification.verify(None, cert, 20, 0, 0) is False
    assert verification.verify(None, cert, 21, 0, 0) is False  # the first problem is the one kept
    assert verification.problem == (
        "the server certificate CN=localhost (issued by CN=rtmprelay test CA): unable to get local issuer certificate"
    )


# -- state for the API, and logs without keys -----------------------------------------------


def test_info_shows_state_attempts_errors_traffic_and_queue_with_the_key_masked():
    clock, upstream, stream, forwarder = forwarder_for(queue_bytes=100_000)
    upstream.last.refuse()
    publish_gop(stream, 0, frames=5)
    info = forwarder.info()
    assert info["url"] == "rtmp://up.example/live/sk_l…"
    assert info["state"] == "backing off" and info["attempts"] == 1
    assert info["errors"] == {"refused": 1}
    assert info["last_error"]["kind"] == "refused"
    assert info["queue"]["messages"] == 10 and info["queue"]["bytes"] == 5 * 1005 + 5 * 202
    assert 0 < info["queue"]["fill"] < 1
    clock.advance(0)
    upstream.last.publish()
    info = forwarder.info()
    assert info["state"] == "live" and info["frames_sent"] == 5 and info["audio_frames_sent"] == 5
    assert info["queue"]["bytes"] == 0 and info["bytes_sent"] > 5 * 1005
    assert STREAM_KEY not in repr(info)


def test_api_lists_each_destination_of_a_stream():
    registry = StreamRegistry()
    clock = MemoryReactorClock()
    upstream = Upstream()
    source = ForwardTemplates([ForwardTemplate.parse("rtmp://a/live/{path}"), ForwardTemplate.parse("rtmp://b/live/{streamId}")])
    forwarding = Forwarding(clock, source, connect=upstream)
    registry.add_listener(forwarding)
    stream = registry.start("live/u1/s1", FakePublisher(), forwarding.admit("live/u1/s1").result)
    upstream.attempts[0].publish()
    upstream.attempts[1].refuse()
    info = stream_info(stream)
    assert [(u["url"], u["state"]) for u in info["upstreams"]] == [
        ("rtmp://a/live/u1/…", "live"),
        ("rtmp://b/live/…", "backing off"),
    ]


def test_a_stream_key_never_appears_whole_in_a_log_line():
    with capturedLogs() as events:
        clock, upstream, stream, forwarder = forwarder_for()
        upstream.last.refuse()
        clock.advance(0)
        attempt = upstream.last.publish()
        attempt.close()
        clock.advance(0.5)
        upstream.last.open().close()
        forwarder.stop()
    lines = _lines(events)
    assert any("forwarding live/u1/s1 to rtmp://up.example/live/sk_l…" in line for line in lines), lines
    assert not [line for line in lines if STREAM_KEY in line]


# -- several destinations ------------------------------------------------------------------


def test_one_failing_destination_never_affects_the_others_or_the_ingest():
    registry = StreamRegistry()
    clock = MemoryReactorClock()
    upstream = Upstream()
    source = ForwardTemplates([ForwardTemplate.parse("rtmp://good/live/{path}"), ForwardTemplate.parse("rtmp://bad/live/{path}")])
    forwarding = Forwarding(clock, source, UpstreamConfig(queue_bytes=20_000), connect=upstream)
    registry.add_listener(forwarding)
    publisher = FakePublisher()
    stream = registry.start("live/u1/s1", publisher, forwarding.admit("live/u1/s1").result)
    good, bad = upstream.attempts
    good.publish()
    bad.open()
    bad.protocol.pauseProducing()  # the bad one: connected, full, never answers
    stream.publish_media(MediaMessage.of(9, 0, AVC_HEADER))
    for second in range(30):
        publish_gop(stream, second * 400, frames=10)
        clock.advance(0.4)
        for attempt in upstream.attempts[2:]:
            if attempt.deferred.called is False:
                attempt.refuse()
    good_forwarder, bad_forwarder = forwarding.forwarders_of("live/u1/s1")
    assert [m[0] for m in good.media()].count(9) == 1 + 300  # every frame, in order
    assert good_forwarder.dropped == 0 and good_forwarder.state is UpstreamState.LIVE
    assert bad_forwarder.state is UpstreamState.BACKING_OFF and bad_forwarder.attempts > 3
    assert bad_forwarder._queued_bytes <= 20_000
    assert publisher.paused == 0
    registry.stop(stream)
    assert any(type(e) is s.PublishEnded for e in good.pump())
    assert forwarding.forwarders == {}


# -- keyframe spacing per destination ------------------------------------------------------


def test_keyframe_spacing_relabels_keyframes_closer_than_the_destination_wants():
    spacing = KeyframeSpacing(2.0)
    labelled = [spacing.label(MediaMessage.of(9, ts, KEY)) for ts in (0, 1000, 1999, 2500, 4000)]
    assert [m.payload[0] >> 4 for m in labelled] == [1, 2, 1, 2, 1]  # 1999 ms is 2 s on a 30 fps grid
    assert [m.keyframe for m in labelled] == [True, False, True, False, True]  # classified again when changed
    inter = MediaMessage.of(9, 4100, INTER)
    assert spacing.label(inter) is inter and spacing.relabelled == 2
    spacing.reset()
    key = MediaMessage.of(9, 4100, KEY)
    assert spacing.label(key) is key  # a new publish starts with a keyframe


def test_a_stricter_destination_profile_spaces_its_keyframes_and_no_other():
    from rtmprelay.media.cleaner import CleanerConfig

    registry = StreamRegistry(cleaning=CleanerConfig.from_profile("youtube"))  # 1 s
    upstream = Upstream()
    source = ForwardTemplates(
        [ForwardTemplate.parse("rtmp://yt/live/{path}"), ForwardTemplate.parse("rtmp://cf/live/{path} profile=cloudflare")]
    )
    forwarding = Forwarding(MemoryReactorClock(), source, connect=upstream, min_keyframe_interval_s=1.0)
    registry.add_listener(forwarding)
    registry.start("live/u1/s1", FakePublisher(), forwarding.admit("live/u1/s1").result)
    youtube, cloudflare = forwarding.forwarders_of("live/u1/s1")
    assert youtube._spacing is None
    assert cloudflare._spacing is not None and cloudflare._spacing.min_interval_ms == 2000.0


def _lines(events):
    from twisted.logger import formatEvent

    return [formatEvent(event) for event in events]


# -- the options --------------------------------------------------------------------------


def test_forward_repeats_and_a_config_file_list_is_replaced_by_the_command_line(tmp_path):
    from twisted.python import usage

    from rtmprelay.tap import Options

    def parse(*args):
        options = Options()
        options.parseOptions(list(args))
        return options

    two = parse("--forward", "rtmp://a/live/{path}", "-f", "rtmp://b/live2/{streamId} profile=youtube")
    assert [(t.template.template, t.profile) for t in two["forward"]] == [
        ("rtmp://a/live/{path}", None),
        ("rtmp://b/live2/{streamId}", "youtube"),
    ]
    assert two.forwarding and two["hls"] is None
    # one cleaner for the laxest destination (youtube: 1 s); the relay's own profile (cloudflare: 2 s) is kept for the rest
    assert two["cleaning"].min_keyframe_interval_s == 1.0 and two["min-keyframe-spacing"] == 2.0
    config = tmp_path / "relay.toml"
    config.write_text('forward = ["rtmp://a/live/{path}", "rtmp://b/live/{path}"]\n')
    assert len(parse("--config", str(config))["forward"]) == 2
    assert [t.template.template for t in parse("--config", str(config), "--forward", "rtmp://c/x/{path}")["forward"]] == [
        "rtmp://c/x/{path}"
    ]
    with pytest.raises(usage.UsageError, match="unknown destination profile"):
        parse("--forward", "rtmp://a/live/{path} profile=twitch")
    with pytest.raises(usage.UsageError, match="cannot read --upstream-ca"):
        parse("--forward", "rtmps://a/live/{path}", "--upstream-ca", str(tmp_path / "missing.pem"))
