"""The Twisted server adapter driven synchronously: StringTransport for the
socket, MemoryReactorClock for time, ClientSession as the peer."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs

from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp import session as s
from rtmprelay.rtmp.chunks import ChunkWriter, Message
from rtmprelay.rtmp.connection import ConnectionConfig
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.relay.server import RTMPServerFactory, ServerConfig

AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1"
AAC_HEADER = b"\xaf\x00\x12\x10"
KEYFRAME = b"\x17\x01\x00\x00\x00" + b"K" * 100
INTERFRAME = b"\x27\x01\x00\x00\x00" + b"P" * 50
AUDIO = b"\xaf\x01" + b"A" * 20


class Peer:
    """A client session wired to one server protocol through StringTransports."""

    def __init__(self, factory, url="rtmp://127.0.0.1/live/user1/stream1", session=None):
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.session = session or s.ClientSession.for_url(url)
        self.events: list = []
        self.session.initiate()

    def pump(self, rounds=20):
        for _ in range(rounds):
            out = self.session.data_to_send()
            if out:
                self.protocol.dataReceived(out)
            back = self.transport.value()
            self.transport.clear()
            if back:
                self.events.extend(self.session.receive_data(back))
            if not out and not back:
                return

    def send_raw_bytes(self, data: bytes):
        self.protocol.dataReceived(data)

    @property
    def closed(self):
        return self.transport.disconnecting


def of_type(events, cls):
    return [e for e in events if type(e) is cls]


@pytest.fixture
def clock():
    return MemoryReactorClock()


@pytest.fixture
def registry():
    return StreamRegistry()


@pytest.fixture
def factory(registry, clock):
    return RTMPServerFactory(registry, ServerConfig(connection=ConnectionConfig(max_message_size=1_000_000)), clock)


def publish(factory, url="rtmp://127.0.0.1/live/user1/stream1"):
    peer = Peer(factory, url)
    peer.pump()
    assert of_type(peer.events, s.PublishStarted), peer.events
    return peer


def log_lines(logs):
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in logs]


def test_publish_registers_the_stream_and_unpublish_removes_it(factory, registry):
    peer = publish(factory)
    assert registry.get("live/user1/stream1") is not None
    peer.session.close()
    peer.pump()
    assert registry.get("live/user1/stream1") is None


def test_second_publish_to_a_live_path_gets_bad_name_and_the_first_goes_on(factory, registry):
    first = publish(factory)
    with capturedLogs() as logs:
        second = Peer(factory, "rtmp://127.0.0.1/live/user1/stream1")
        second.pump()
    (failed,) = of_type(second.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.BadName"
    assert any("already being published" in line for line in log_lines(logs))
    stream = registry.get("live/user1/stream1")
    assert stream.publisher is first.protocol
    first.session.send_media(m.MessageType.VIDEO, 0, KEYFRAME)
    first.pump()
    assert stream.counters.video_messages == 1


def test_differently_split_urls_are_the_same_stream(factory, registry):
    publish(factory, "rtmp://127.0.0.1/live/user1/stream1")
    session = s.ClientSession("live", "user1/stream1?token=x", "rtmp://127.0.0.1/live")
    other = Peer(factory, session=session)
    other.pump()
    assert of_type(other.events, s.PublishFailed)[0].code == "NetStream.Publish.BadName"


def test_handshake_that_stalls_is_closed_with_a_log_line(factory, clock):
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"\x03" + b"\x00" * 100)  # C0 and part of C1, then nothing
    with capturedLogs() as logs:
        clock.advance(factory.config.limits.handshake_timeout + 0.1)
    assert transport.disconnecting
    assert any("handshake not finished" in line for line in log_lines(logs))


def test_completed_handshake_is_not_timed_out(factory, clock):
    peer = publish(factory)
    clock.advance(factory.config.limits.handshake_timeout + 1)
    assert not peer.closed


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x06" + b"\x00" * 1536, "C0"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 1536, "C0"),
    ],
)
def test_bad_handshake_closes_the_connection_with_what_and_where(factory, data, expected):
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    with capturedLogs() as logs:
        protocol.dataReceived(data)
    assert transport.disconnecting
    (line,) = [line for line in log_lines(logs) if "closing RTMP connection" in line]
    assert expected in line


def _after_connect(factory):
    """A peer that finished connect + createStream and publishes; returns (peer, writer)."""
    return publish(factory)


@pytest.mark.parametrize(
    ("bad_message", "expected_where"),
    [
        (Message(m.MessageType.SET_CHUNK_SIZE, b"\x00\x00\x00\x00", 0, 0, 2), "chunk"),
        (Message(m.MessageType.SET_CHUNK_SIZE, b"\x80\x00\x00\x00", 0, 0, 2), "chunk"),
        (Message(9, b"x" * 2_000_000, 0, 1, 6), "stream byte"),
        (Message(77, b"whatever", 0, 0, 3), "type"),
        (Message(m.MessageType.COMMAND_AMF0, b"\x02\x00\x05hel", 0, 0, 3), "offset"),
        (Message(m.MessageType.COMMAND_AMF0, b"\x02\x00\x07connect\x00\x3f\xf0" + b"\x00" * 6 + b"\x0a\x00\x00\x00\x01" * 200, 0, 0, 3), "offset"),
    ],
    ids=["chunk-size-0", "chunk-size-2^31", "message-over-cap", "unknown-type", "truncated-amf", "absurd-nesting"],
)
def test_bad_messages_close_only_the_offending_connection(factory, registry, bad_message, expected_where):
    good = publish(factory, "rtmp://127.0.0.1/live/user1/good")
    bad = publish(factory, "rtmp://127.0.0.1/live/user1/bad")
    writer = ChunkWriter(chunk_size=4096)
    with capturedLogs() as logs:
        bad.send_raw_bytes(writer.write(bad_message))
    assert bad.closed
    (line,) = [line for line in log_lines(logs) if "closing RTMP connection" in line]
    assert expected_where in line
    bad.protocol.connectionLost(None)
    assert registry.get("live/user1/bad") is None
    good.session.send_media(m.MessageType.VIDEO, 0, KEYFRAME)
    good.pump()
    assert not good.closed
    assert registry.get("live/user1/good").counters.video_messages == 1


def test_unknown_chunk_stream_continuing_a_message_closes_the_connection(factory):
    peer = publish(factory)
    # fmt 3 (0xC0) on chunk stream 40, never opened with a full header
    with capturedLogs() as logs:
        peer.send_raw_bytes(b"\xe8" + b"\x00" * 10)
    assert peer.closed
    assert any("chunk stream" in line and "closing" in line for line in log_lines(logs))


class Recorder:
    def __init__(self):
        self.items = []

    def on_metadata(self, metadata):
        self.items.append(("meta", metadata))

    def on_media(self, message):
        self.items.append((message.type_id, message.timestamp, message.payload))

    def on_stream_end(self):
        self.items.append(("end",))


def test_late_sink_starts_with_metadata_headers_and_the_last_gop(factory, registry):
    peer = publish(factory)
    session = peer.session
    session.send_metadata({"width": 640.0})
    session.send_media(9, 0, AVC_HEADER)
    session.send_media(8, 0, AAC_HEADER)
    session.send_media(9, 0, KEYFRAME)
    session.send_media(9, 33, INTERFRAME)
    session.send_media(9, 66, KEYFRAME)
    session.send_media(8, 70, AUDIO)
    session.send_media(9, 99, INTERFRAME)
    peer.pump()
    recorder = Recorder()
    registry.get("live/user1/stream1").attach(recorder)
    assert recorder.items == [
        ("meta", {"width": 640.0}),
        (9, 0, AVC_HEADER),
        (8, 0, AAC_HEADER),
        (9, 0, KEYFRAME),  # its own timeline: from 0 where its first frame (66 ms) starts
        (8, 4, AUDIO),
        (9, 33, INTERFRAME),
    ]
    peer.session.close()
    peer.pump()
    assert recorder.items[-1] == ("end",)


def test_player_through_the_server_gets_headers_first(factory, registry):
    publisher = publish(factory)
    publisher.session.send_media(9, 0, AVC_HEADER)
    publisher.session.send_media(9, 0, KEYFRAME)
    publisher.pump()
    # a player: a bare Connection speaking the play sequence
    from rtmprelay.rtmp.connection import Connection, MessageReceived, Role

    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    client = Connection(Role.CLIENT)
    client.initiate()
    received = []

    def exchange():
        for _ in range(5):
            out = client.data_to_send()
            if out:
                protocol.dataReceived(out)
            back = transport.value()
            transport.clear()
            if back:
                received.extend(client.receive_data(back))

    exchange()
    client.send(m.Command("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"}))
    client.send(m.Command("createStream", 2))
    exchange()
    client.send(m.Command("play", 0, None, ("user1/stream1",)), stream_id=1, chunk_stream_id=8)
    exchange()
    media = [(e.body.payload, e.timestamp) for e in received if type(e) is MessageReceived and type(e.body) is m.Video]
    assert media == [(AVC_HEADER, 0), (KEYFRAME, 0)]
    publisher.session.send_media(9, 33, INTERFRAME)
    publisher.pump()
    exchange()
    media = [e.body.payload for e in received if type(e) is MessageReceived and type(e.body) is m.Video]
    assert media[-1] == INTERFRAME


@pytest.mark.parametrize(
    ("app", "name", "why"),
    [
        ("live", "../../victim", "is not a name"),
        ("live", "%2e%2e/%2e%2e/etc", "character '%'"),
        ("live", "user1/s\x00x", "character '\\x00'"),
        ("live", "user1/" + "x" * 60_000, "characters (at most"),
    ],
)
def test_bad_stream_names_are_refused_with_bad_name_and_the_reason(factory, registry, app, name, why):
    session = s.ClientSession(app, name, "rtmp://127.0.0.1/live")
    with capturedLogs() as logs:
        peer = Peer(factory, session=session)
        peer.pump()
    (failed,) = of_type(peer.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.BadName"
    assert why in failed.description
    assert registry.streams() == []
    (line,) = [line for line in log_lines(logs) if "refusing publish" in line]
    assert why in line and "\x00" not in line
    assert not peer.closed  # the client is told and may try another name, as for a taken one


@pytest.mark.parametrize("target", [float("nan"), float("inf"), -float("inf"), 1e300, 1.5])
def test_delete_stream_with_a_number_that_names_no_stream_is_ignored(factory, registry, target):
    peer = publish(factory)
    peer.session.connection.send(m.Command("deleteStream", 0, None, (target,)), chunk_stream_id=3)
    peer.pump()
    assert not peer.closed
    assert registry.get("live/user1/stream1") is not None
    peer.session.send_media(m.MessageType.VIDEO, 0, KEYFRAME)
    peer.pump()
    assert registry.get("live/user1/stream1").counters.video_messages == 1


def test_a_silent_publisher_of_a_bridged_path_is_dropped_for_a_new_one(clock):
    """A phone that changed networks leaves a half-open connection: with bridging on, a new
    publish of the path after 2 s of silence takes it over instead of being refused."""
    registry = StreamRegistry(clock=clock, bridge_grace_s=10.0)
    factory = RTMPServerFactory(registry, ServerConfig(connection=ConnectionConfig(max_message_size=1_000_000)), clock)
    first = publish(factory)
    first.session.send_media(9, 0, KEYFRAME)
    first.pump()
    clock.advance(1.0)
    early = Peer(factory)
    early.pump()
    assert of_type(early.events, s.PublishFailed)  # 1 s of silence: still its publisher's
    clock.advance(1.5)
    with capturedLogs() as logs:
        second = publish(factory)
    assert first.closed and second.protocol in [stream.publisher for stream in registry.streams()]
    assert any("a new publisher took the path over" in line for line in log_lines(logs))
    first.protocol.connectionLost(None)  # its close, later, leaves the new publisher alone
    assert registry.get("live/user1/stream1").publisher is second.protocol


def test_a_publish_withdrawn_in_the_same_read_is_neither_refused_nor_a_fault(factory, registry):
    """publish and closeStream in one read, to a taken path: the session is idle again when
    the relay decides, so there is nothing to refuse (once a SessionError closing the peer)."""
    first = publish(factory)
    second = Peer(factory)
    while second.session.state is not s._ClientState.PUBLISHING_PENDING:
        second.pump(rounds=1)
    second.session.connection.send(m.Command("closeStream", 0, None, ()), stream_id=second.session.stream_id, chunk_stream_id=5)
    second.pump()
    assert not second.closed
    assert not of_type(second.events, s.PublishFailed)
    assert factory.counters.faults == {} and factory.counters.connections_closed == {}
    assert registry.get("live/user1/stream1").publisher is first.protocol
