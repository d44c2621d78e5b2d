"""The server's limits and containment (issue 8), driven synchronously:
StringTransport for sockets, MemoryReactorClock for time, ClientSession as the peer."""

from __future__ import annotations

import struct

import attrs

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs

from rtmprelay.media.cleaner import CleanerConfig
from rtmprelay.testing.sinks import RecordingSink
from rtmprelay.relay.limits import ServerLimits, Throttle
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.relay.server import SWEEP_INTERVAL, RTMPServerFactory, ServerConfig
from rtmprelay.rtmp import amf0
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp import session as s
from rtmprelay.rtmp.chunks import ChunkReader, ChunkWriter, Message
from rtmprelay.rtmp.connection import Connection, ConnectionConfig, Role

from tests.unit.test_server_protocol import AAC_HEADER, AUDIO, AVC_HEADER, INTERFRAME, KEYFRAME, Peer, log_lines, of_type

LIMITS = ServerLimits(
    handshake_timeout=10,
    command_timeout=5,
    idle_publisher_timeout=8,
    ping_interval=20,
    ping_timeout=6,
    max_connections=6,
    max_connections_per_address=4,
    max_publishes_per_address=2,
)


@pytest.fixture
def clock():
    return MemoryReactorClock()


@pytest.fixture
def registry():
    return StreamRegistry()


@pytest.fixture
def factory(registry, clock):
    return RTMPServerFactory(registry, ServerConfig(limits=LIMITS), clock)


def addr(host="10.0.0.1", port=5000):
    return IPv4Address("TCP", host, port)


def connect(factory, host="10.0.0.1"):
    """A raw connection as Twisted makes one: buildProtocol, then makeConnection (None if refused)."""
    protocol = factory.buildProtocol(addr(host))
    if protocol is None:
        return None, None
    transport = StringTransport(peerAddress=addr(host))
    protocol.makeConnection(transport)
    return protocol, transport


def handshaken(factory, host="10.0.0.1"):
    """A connection that finished the handshake and then went quiet."""
    protocol, transport = connect(factory, host)
    client = Connection(Role.CLIENT)
    client.initiate()
    protocol.dataReceived(client.data_to_send())
    client.receive_data(transport.value())
    transport.clear()
    protocol.dataReceived(client.data_to_send())
    assert protocol.session.connection.handshake_done
    return protocol, transport


class AddressedPeer(Peer):
    def __init__(self, factory, url="rtmp://127.0.0.1/live/user1/stream1", host="10.0.0.1", session=None):
        self.protocol = factory.buildProtocol(addr(host))
        self.transport = StringTransport(peerAddress=addr(host))
        self.protocol.makeConnection(self.transport)
        self.session = session or s.ClientSession.for_url(url)
        self.events = []
        self.session.initiate()


def publishing(factory, name="stream1", host="10.0.0.1"):
    peer = AddressedPeer(factory, f"rtmp://127.0.0.1/live/user1/{name}", host)
    peer.pump()
    assert of_type(peer.events, s.PublishStarted), peer.events
    return peer


def advance(clock, seconds):
    """Advance in sweep-sized steps so that every sweep runs."""
    steps = int(seconds / SWEEP_INTERVAL) + 1
    for _ in range(steps):
        clock.advance(SWEEP_INTERVAL)


# -- time limits ---------------------------------------------------------------------------


def test_connection_that_never_sends_connect_is_closed_after_the_command_timeout(factory, clock):
    protocol, transport = handshaken(factory)
    advance(clock, LIMITS.command_timeout - 1.5)
    assert not transport.disconnecting
    with capturedLogs() as logs:
        advance(clock, 2)
    assert transport.disconnecting
    (line,) = [line for line in log_lines(logs) if "closing RTMP connection" in line]
    assert "no publish or play within 5 s" in line
    assert factory.counters.connections_closed["command_timeout"] == 1


def test_connect_command_sent_a_byte_at_a_time_is_closed_after_the_command_timeout(factory, clock):
    protocol, transport = handshaken(factory)
    command = ChunkWriter().write(
        Message(20, amf0.encode_values(["connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"}]), 0, 0, 3)
    )
    for byte in command[:20]:
        protocol.dataReceived(bytes([byte]))
        clock.advance(1.0)
    assert transport.disconnecting
    assert factory.counters.connections_closed["command_timeout"] == 1


def test_connected_client_that_never_publishes_is_closed(factory, clock):
    peer = AddressedPeer(factory, session=s.ClientSession("live", "", "rtmp://h/live"))  # no name: refused
    peer.pump()
    assert of_type(peer.events, s.PublishFailed)
    advance(clock, LIMITS.command_timeout + 1)
    assert peer.closed


def test_publisher_is_not_timed_out_while_media_flows(factory, registry, clock):
    publisher = publishing(factory)
    for second in range(60):
        publisher.session.send_media(m.MessageType.VIDEO, second * 1000, KEYFRAME)
        publisher.pump()
        clock.advance(1.0)
    assert not publisher.closed
    assert factory.counters.connections_closed == {}


def test_idle_publisher_is_closed_and_frees_its_path(factory, registry, clock):
    peer = publishing(factory)
    peer.session.send_media(m.MessageType.VIDEO, 0, AVC_HEADER)
    peer.session.send_media(m.MessageType.VIDEO, 0, KEYFRAME)
    peer.pump()
    with capturedLogs() as logs:
        advance(clock, LIMITS.idle_publisher_timeout + 1)
    assert peer.closed
    assert any("published no audio or video for 8 s" in line for line in log_lines(logs))
    peer.protocol.connectionLost(None)
    assert registry.get("live/user1/stream1") is None
    assert factory.counters.connections_closed["idle_publisher"] == 1


def test_silent_peer_is_pinged_then_closed(factory, clock):
    protocol, transport = handshaken(factory)
    protocol._players[1] = object()  # a playing connection: it has a purpose, but sends nothing of its own
    transport.clear()
    advance(clock, LIMITS.ping_interval + 0.5)
    (ping,) = ChunkReader().feed(transport.value())
    assert type(m.decode_body(ping.type_id, ping.payload)) is m.PingRequest
    assert not transport.disconnecting
    with capturedLogs() as logs:
        advance(clock, LIMITS.ping_timeout + 1)
    assert transport.disconnecting
    assert any("no answer to a ping within 6 s" in line for line in log_lines(logs))
    assert factory.counters.connections_closed["ping_timeout"] == 1


def test_a_peer_that_answers_pings_stays(factory, clock):
    protocol, transport = handshaken(factory)
    protocol._players[1] = object()
    for _ in range(4):
        advance(clock, LIMITS.ping_interval + 0.5)
        assert not transport.disconnecting
        protocol.dataReceived(ChunkWriter().write(Message(4, struct.pack(">HI", 7, 0), 0, 0, 2)))  # PingResponse
    assert not transport.disconnecting


# -- count limits ----------------------------------------------------------------------------


def test_connections_per_address_and_in_all_are_bounded(factory, clock):
    opened = [connect(factory, "10.0.0.1") for _ in range(LIMITS.max_connections_per_address)]
    assert all(p is not None for p, _t in opened)
    with capturedLogs() as logs:
        refused = [connect(factory, "10.0.0.1")[0] for _ in range(5)]
    assert refused == [None] * 5
    assert factory.counters.connections_refused["max_connections_per_address"] == 5
    # One log line for the burst, not one per connection.
    assert len([line for line in log_lines(logs) if "refusing an RTMP connection" in line]) == 1
    # Another address still gets in, up to the total.
    others = [connect(factory, "10.0.0.2")[0] for _ in range(3)]
    assert others[:2] != [None, None] and others[2] is None
    assert factory.counters.connections_refused["max_connections"] == 1
    # Closing frees the slots.
    protocol, _transport = opened[0]
    protocol.connectionLost(None)
    assert connect(factory, "10.0.0.1")[0] is not None


def test_publishes_per_address_are_bounded(factory, registry):
    publishing(factory, "s1")
    publishing(factory, "s2")
    third = AddressedPeer(factory, "rtmp://127.0.0.1/live/user1/s3")
    third.pump()
    (failed,) = of_type(third.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.Rejected" and "Too many streams" in failed.description
    assert registry.get("live/user1/s3") is None
    publishing(factory, "s3", host="10.0.0.9")  # another address is not affected


def test_connections_by_state(factory, clock):
    handshaken(factory)
    publishing(factory, "s1")
    connect(factory)
    assert factory.connections_by_state() == {"handshake": 1, "connected": 1, "publishing": 1}


def test_throttle_lets_one_line_through_per_interval():
    throttle = Throttle(interval=10)
    assert throttle.allow("k", 0.0) == 0
    assert throttle.allow("k", 1.0) is None
    assert throttle.allow("k", 2.0) is None
    assert throttle.allow("k", 10.5) == 2
    assert throttle.allow("other", 10.5) == 0


# -- containment -----------------------------------------------------------------------------


class ExplodingSink:
    def on_metadata(self, metadata):
        raise RuntimeError("boom")

    def on_media(self, message):
        raise RuntimeError("boom")

    def on_stream_end(self):
        raise RuntimeError("boom")


def test_a_sink_that_raises_harms_neither_the_connection_nor_the_other_sinks(factory, registry):
    peer = publishing(factory)
    stream = registry.get("live/user1/stream1")
    stream.attach(ExplodingSink())
    good = RecordingSink()
    stream.attach(good)
    with capturedLogs() as logs:
        for i in range(5):
            peer.session.send_media(m.MessageType.VIDEO, i * 33, KEYFRAME if i == 0 else INTERFRAME)
        peer.session.send_metadata({"width": 640.0})
        peer.pump()
    assert not peer.closed
    assert len(good.media) == 5 and good.metadata
    assert stream.faults == {"ExplodingSink.on_media": 5, "ExplodingSink.on_metadata": 1}
    assert len([line for line in log_lines(logs) if "ExplodingSink.on_media failed" in line]) == 1
    peer.session.close()
    peer.pump()
    assert good.ended


def test_a_cleaner_that_raises_passes_the_message_through(clock):
    registry = StreamRegistry(cleaning=CleanerConfig())
    factory = RTMPServerFactory(registry, ServerConfig(limits=LIMITS), clock)
    peer = publishing(factory)
    stream = registry.get("live/user1/stream1")
    sink = RecordingSink()
    stream.attach(sink)

    def broken(*args):
        raise ZeroDivisionError("a cleaner bug")

    stream.cleaner.push = broken
    peer.session.send_media(m.MessageType.AUDIO, 0, AUDIO)
    peer.pump()
    assert not peer.closed
    assert sink.tuples() == [(8, 0, AUDIO)]
    assert stream.faults == {"cleaner.push": 1}


def _polls_pending(clock) -> list:
    return [call for call in clock.getDelayedCalls() if getattr(call.func, "__name__", "") == "_poll"]


def test_a_cleaning_publisher_is_polled_only_while_its_cleaner_holds_something(clock):
    """A message that arrives releases what it can and runs the fillers itself: the 50 ms
    timer runs while a message waits for time to pass, and stops when none does (it used
    to fire for every publisher all the time: a reactor wake-up each, nearly always idle)."""
    registry = StreamRegistry(cleaning=CleanerConfig.from_profile("cloudflare"))
    factory = RTMPServerFactory(registry, ServerConfig(limits=LIMITS), clock)
    peer = publishing(factory)
    stream = registry.get("live/user1/stream1")
    sink = RecordingSink()
    stream.attach(sink)
    clock.advance(0.06)  # the poll armed at publish: nothing held, so no next one
    assert not _polls_pending(clock)
    # audio before any video is held for the video's first frame (the start hold): polled
    peer.session.send_media(m.MessageType.AUDIO, 0, AAC_HEADER)
    peer.session.send_media(m.MessageType.AUDIO, 0, AUDIO)
    peer.pump()
    assert stream.holding and len(_polls_pending(clock)) == 1
    for _ in range(40):  # no input at all: only the poll can release it
        clock.advance(0.05)
    assert (8, 0, AUDIO) in sink.tuples()
    assert not stream.holding and not _polls_pending(clock)
    assert not peer.closed


def test_a_handler_that_raises_is_contained_and_the_next_events_still_run(factory, registry):
    peer = publishing(factory)
    protocol = peer.protocol
    original = protocol.registry.get("live/user1/stream1").publish_metadata

    def broken(metadata):
        raise KeyError("bug")

    protocol.registry.get("live/user1/stream1").publish_metadata = broken
    peer.session.send_metadata({"a": 1.0})
    peer.session.send_media(m.MessageType.VIDEO, 0, KEYFRAME)
    peer.pump()
    assert not peer.closed
    assert registry.get("live/user1/stream1").counters.video_messages == 1
    assert factory.counters.faults["MetadataReceived"] == 1
    del original


# -- data messages: bounded, dropped, never fatal ---------------------------------------------


def send_data(peer, payload, type_id=18):
    stream_id = peer.session.stream_id
    peer.protocol.dataReceived(peer.session.connection._writer.write(Message(type_id, payload, 0, stream_id, 5)))


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\x02\x00\x0aonMetaData\x0a" + struct.pack(">I", 60_000) + b"\x05" * 60_000, "more than 4096 values"),
        (b"\x02\x00\x0aonMetaData\x03" + b"\x00\x01a\x02\x00\x01" * 2, "truncated"),
        (amf0.encode_values(["onMetaData", {"x": "y" * 70_000}]), "above the limit of 65536"),
    ],
    ids=["values", "malformed", "size"],
)
def test_bad_or_oversized_data_messages_are_dropped_and_the_stream_goes_on(factory, registry, payload, why):
    peer = publishing(factory)
    with capturedLogs() as logs:
        send_data(peer, payload)
        peer.session.send_media(m.MessageType.VIDEO, 0, KEYFRAME)
        peer.pump()
    assert not peer.closed
    assert registry.get("live/user1/stream1").counters.video_messages == 1
    assert factory.counters.messages_dropped["unreadable_data"] == 1
    assert any("dropping a data message" in line and why in line for line in log_lines(logs))


def test_oversized_command_closes_the_connection(factory, registry):
    protocol, transport = handshaken(factory)
    big = amf0.encode_values(["connect", 1.0, {"app": "live", "junk": "x" * 70_000}])
    writer = ChunkWriter(chunk_size=128)
    with capturedLogs() as logs:
        protocol.dataReceived(writer.write(Message(20, big, 0, 0, 3)))
    assert transport.disconnecting
    assert any("above the limit of 65536" in line for line in log_lines(logs))


def test_metadata_with_foreign_values_is_sanitized_and_re_encodable(factory, registry):
    peer = publishing(factory)
    sink = RecordingSink()
    registry.get("live/user1/stream1").attach(sink)
    # onMetaData holding an AMF3 byte array (AVM+ marker 0x11, then 0x0c: ByteArray of 3 bytes)
    payload = (
        b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x02"
        + b"\x00\x05width" + b"\x00" + struct.pack(">d", 640.0)
        + b"\x00\x04blob" + b"\x11\x0c\x07abc"
        + b"\x00\x00\x09"
    )
    send_data(peer, payload)
    peer.pump()
    assert not peer.closed
    (metadata,) = sink.metadata
    assert metadata == {"width": 640.0}
    m.encode_body(m.Data(("onMetaData", amf0.ECMAArray(metadata))))  # never a TypeError
    assert factory.counters.messages_dropped["metadata_values"] == 1


def test_connection_config_refuses_a_message_size_the_length_field_cannot_carry():
    with pytest.raises(ValueError, match="24-bit"):
        ConnectionConfig(max_message_size=16 * 1024 * 1024)


def test_a_flood_of_tiny_messages_is_closed_before_it_costs_the_cleaner(clock):
    limits = attrs.evolve(LIMITS, max_messages_per_second=100, message_burst=300)
    registry = StreamRegistry(cleaning=CleanerConfig())
    factory = RTMPServerFactory(registry, ServerConfig(limits=limits), clock)
    peer = publishing(factory)
    stream = registry.get("live/user1/stream1")
    writer = peer.session.connection._writer
    # A type 3 header plus one byte: two bytes a message.
    flood = b"".join(writer.write(Message(9, b"\x27", i, 1, 6)) for i in range(5000))
    with capturedLogs() as logs:
        peer.protocol.dataReceived(flood)
    assert peer.closed
    assert stream.counters.video_messages == 0  # refused before the cleaner saw any
    assert any("message budget" in line for line in log_lines(logs))
    assert factory.counters.connections_closed["ChunkStreamError"] == 1


def test_a_steady_stream_never_spends_its_message_budget(clock):
    limits = attrs.evolve(LIMITS, max_messages_per_second=100, message_burst=300, idle_publisher_timeout=1000)
    factory = RTMPServerFactory(StreamRegistry(), ServerConfig(limits=limits), clock)
    peer = publishing(factory)
    for second in range(30):
        for i in range(90):  # 90 a second, under the rate
            peer.session.send_media(m.MessageType.AUDIO, second * 1000 + i, AUDIO)
        peer.pump()
        clock.advance(1.0)
    assert not peer.closed


def test_chunk_size_below_the_minimum_closes_the_connection(factory):
    protocol, transport = handshaken(factory)
    with capturedLogs() as logs:
        protocol.dataReceived(ChunkWriter().write(Message(1, struct.pack(">I", 1), 0, 0, 2)))
    assert transport.disconnecting
    assert any("chunk size 1 is below the limit of 128" in line for line in log_lines(logs))


def test_reads_closer_together_than_one_token_still_earn_the_rate(clock):
    """A publisher whose messages come in several small reads (chunk size 128 over Wi-Fi)
    earns tokens at the rate all the same: the fraction of a token carries over between
    reads (it used to be lost, so reads under 1/rate apart earned nothing)."""
    limits = attrs.evolve(LIMITS, max_messages_per_second=100, message_burst=300, idle_publisher_timeout=1000)
    factory = RTMPServerFactory(StreamRegistry(), ServerConfig(limits=limits), clock)
    peer = publishing(factory)
    for second in range(10):
        for i in range(90):  # 90 messages a second, under the rate, each in three reads 3.7 ms apart
            peer.session.send_media(m.MessageType.AUDIO, second * 1000 + i * 11, AUDIO)
            data = peer.session.data_to_send()
            third = max(1, len(data) // 3)
            for piece in (data[:third], data[third : 2 * third], data[2 * third :]):
                peer.protocol.dataReceived(piece)
                clock.advance(1 / 270)
    assert not peer.closed
