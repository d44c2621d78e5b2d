"""The session state tables themselves: every pair missing from a table is the
peer's SessionError when the peer made the input and our LocalProtocolError when
our code did; every entry's input, fed as real bytes, reaches the entry's next
state; and the normal publish and play sequences walk the tables as expected."""

from __future__ import annotations

import itertools
from typing import Callable

import attrs

import pytest

from rtmprelay.errors import LocalProtocolError, ProtocolError, SessionError
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp import session as s
from rtmprelay.rtmp.amf0 import ECMAArray
from rtmprelay.rtmp.chunks import ChunkWriter, Message
from rtmprelay.rtmp.connection import Connection, MessageReceived, Role
from rtmprelay.rtmp.handshake import ClientHandshake, ServerHandshake
from rtmprelay.testing.memory import accept_all, pump

C, N, In = s._NetConnection, s._NetStream, s._In
A, I = s._ClientState, s._ClientInput

#: Server inputs that reach the NetConnection table (the peer's commands and the relay's connect decision).
CONNECTION_INPUTS = sorted({input_ for (_state, input_) in s._NETCONNECTION}, key=lambda i: i.name)
#: Server inputs that reach the NetStream table.
STREAM_INPUTS = sorted({input_ for (_state, input_) in s._NETSTREAM}, key=lambda i: i.name)
STREAM = 1  # the stream id createStream gives first
NEVER = 9  # a stream id createStream never gave


def missing(table: dict, states, inputs) -> list:
    return [(state, input_) for state, input_ in itertools.product(states, inputs) if (state, input_) not in table]


# -- the server, in any state ------------------------------------------------------------------


class Peer:
    """A server session and hand-made chunks from its client (no client session, so any command goes)."""

    def __init__(self) -> None:
        self.server = s.ServerSession()
        self.writer = ChunkWriter()
        self.events: list = []
        client = ClientHandshake()
        self.server.receive_data(client.initiate())
        self.server.receive_data(client.receive_data(self.server.data_to_send()))

    def command(self, name: str, *args, transaction_id: float = 0, command_object=None, stream_id: int = 0) -> list:
        type_id, payload = m.encode_body(m.Command(name, transaction_id, command_object, args))
        return self.raw(type_id, payload, stream_id, chunk_stream_id=3)

    def raw(self, type_id: int, payload: bytes, stream_id: int, chunk_stream_id: int = 6) -> list:
        new = self.server.receive_data(self.writer.write(Message(type_id, payload, 0, stream_id, chunk_stream_id)))
        self.events.extend(new)
        return new

    def connect(self) -> None:
        self.command("connect", transaction_id=1, command_object={"app": "live", "tcUrl": "rtmp://h/live"})


def server_in(state: C) -> Peer:
    peer = Peer()
    if state is not C.NEW:
        peer.connect()
    if state is C.CONNECTED:
        peer.server.accept_connect()
    elif state is C.REJECTED:
        peer.server.reject_connect("no")
    assert peer.server._state is state
    return peer


def stream_in(state: N) -> Peer:
    """A connected server whose stream STREAM is in ``state`` (NEVER is always absent)."""
    peer = server_in(C.CONNECTED)
    if state is N.ABSENT:
        return peer
    peer.command("createStream", transaction_id=2)
    if state in (N.PUBLISH_PENDING, N.PUBLISHING):
        peer.command("publish", "user1/stream1", "live", stream_id=STREAM)
    elif state in (N.PLAY_PENDING, N.PLAYING):
        peer.command("play", "user1/stream1", stream_id=STREAM)
    if state is N.PUBLISHING:
        peer.server.accept_publish(STREAM)
    elif state is N.PLAYING:
        peer.server.accept_play(STREAM)
    assert peer.server._stream_state(STREAM) is state
    return peer


AGGREGATE = (
    bytes([9]) + (5).to_bytes(3, "big") + bytes(4) + bytes(3) + b"\x27\x01\x00\x00\x00" + (16).to_bytes(4, "big")
)


def feed_stream_input(peer: Peer, stream_id: int, input_: In) -> None:
    """``input_`` to the stream, as the peer's bytes where the peer can send it alone."""
    senders = {
        In.PUBLISH: lambda: peer.command("publish", "user1/stream1", "live", stream_id=stream_id),
        In.PUBLISH_BAD_NAME: lambda: peer.command("publish", "../../victim", "live", stream_id=stream_id),
        In.PLAY: lambda: peer.command("play", "user1/stream1", stream_id=stream_id),
        In.PLAY_BAD_NAME: lambda: peer.command("play", "../../victim", stream_id=stream_id),
        In.CLOSE_STREAM: lambda: peer.command("closeStream", stream_id=stream_id),
        In.DELETE_STREAM: lambda: peer.command("deleteStream", float(stream_id)),
        In.MEDIA: lambda: peer.raw(9, b"\x27\x01\x00\x00\x00", stream_id),
        In.DATA: lambda: peer.raw(18, m.encode_body(m.Data(("@setDataFrame", "onMetaData", ECMAArray({"width": 1.0}))))[1], stream_id),
        In.AGGREGATE: lambda: peer.raw(22, AGGREGATE, stream_id),
    }
    if input_ in senders:
        senders[input_]()
    elif input_ in s._SERVER_LOCAL:
        call_local(peer.server, input_, stream_id)
    else:
        # CREATED (always a fresh id) and FC_UNPUBLISH (only for existing streams) come
        # from other commands: given to the dispatcher as those commands give them.
        peer.server._fire_stream(stream_id, input_, peer.events)


def call_local(server: s.ServerSession, input_: In, stream_id: int = STREAM) -> None:
    calls = {
        In.ACCEPT_CONNECT: lambda: server.accept_connect(),
        In.REJECT_CONNECT: lambda: server.reject_connect("no"),
        In.ACCEPT_PUBLISH: lambda: server.accept_publish(stream_id),
        In.REJECT_PUBLISH: lambda: server.reject_publish(stream_id, s.Status.PUBLISH_REJECTED, "no"),
        In.ACCEPT_PLAY: lambda: server.accept_play(stream_id),
        In.REJECT_PLAY: lambda: server.reject_play(stream_id, s.Status.PLAY_FAILED, "no"),
        In.END_PLAY: lambda: server.end_play(stream_id),
    }
    calls[input_]()


def feed_connection_input(peer: Peer, input_: In) -> None:
    commands = {
        In.CONNECT: lambda: peer.connect(),
        In.CREATE_STREAM: lambda: peer.command("createStream", transaction_id=2),
        In.PUBLISH: lambda: peer.command("publish", "user1/stream1", "live", stream_id=STREAM),
        In.PLAY: lambda: peer.command("play", "user1/stream1", stream_id=STREAM),
        In.CLOSE_STREAM: lambda: peer.command("closeStream", stream_id=STREAM),
        In.DELETE_STREAM: lambda: peer.command("deleteStream", float(STREAM)),
        In.RELEASE_STREAM: lambda: peer.command("releaseStream", "stream1", transaction_id=2),
        In.FC_PUBLISH: lambda: peer.command("FCPublish", "stream1", transaction_id=3),
        In.FC_UNPUBLISH: lambda: peer.command("FCUnpublish", "stream1", transaction_id=6),
        In.GET_STREAM_LENGTH: lambda: peer.command("getStreamLength", transaction_id=7),
        In.IGNORED_COMMAND: lambda: peer.command("FCSubscribe", "stream1"),
        In.UNKNOWN_COMMAND: lambda: peer.command("noSuchCommand"),
    }
    if input_ in (In.PUBLISH, In.PLAY) and (peer.server._state, In.CREATE_STREAM) in s._NETCONNECTION:
        peer.command("createStream", transaction_id=2)  # a stream to publish or play on
    if input_ in commands:
        commands[input_]()
    else:
        call_local(peer.server, input_)


# -- NetConnection --------------------------------------------------------------------------------


def test_the_peer_fault_names_state_input_and_where():
    peer = server_in(C.NEW)
    with pytest.raises(SessionError) as info:
        feed_connection_input(peer, In.CREATE_STREAM)
    assert str(info.value) == "createStream before connect (at createStream command)"


# -- NetStream --------------------------------------------------------------------------------------


def test_absent_streams_have_nothing_to_act_on():
    for (state, _input), (handler, next_state) in s._NETSTREAM.items():
        if state is N.ABSENT and next_state is N.ABSENT:
            assert handler is None


def test_a_publish_on_a_stream_never_created_closes_on_bytes_alone():
    peer = server_in(C.CONNECTED)
    with pytest.raises(SessionError) as info:
        peer.command("publish", "user1/stream1", "live", stream_id=NEVER)
    assert (info.value.state, info.value.input) == ("never created or deleted", "publish")
    assert info.value.where == f"message stream {NEVER}"


# -- local misuse -------------------------------------------------------------------------------------


def test_local_misuse_is_not_a_protocol_error():
    """Nothing that closes a peer's connection (``except ProtocolError``) may catch our own bug."""
    assert not issubclass(LocalProtocolError, ProtocolError)
    peer = stream_in(N.PUBLISHING)
    with pytest.raises(LocalProtocolError) as info:
        peer.server.accept_publish(STREAM)
    assert info.value.where == "ServerSession.accept_publish"
    assert str(info.value) == "accept_publish on stream 1, publishing (at ServerSession.accept_publish)"


def test_a_withdrawn_publish_is_asked_not_caught():
    peer = stream_in(N.PUBLISH_PENDING)
    assert peer.server.publish_pending(STREAM)
    peer.command("closeStream", stream_id=STREAM)
    assert not peer.server.publish_pending(STREAM)
    with pytest.raises(LocalProtocolError):
        peer.server.accept_publish(STREAM)


# -- the client -------------------------------------------------------------------------------------------


class Upstream:
    """A ClientSession past the handshake, and hand-made chunks from its server."""

    def __init__(self) -> None:
        self.client = s.ClientSession.for_url("rtmp://h/live/stream1")
        self.client.initiate()
        handshake = ServerHandshake()
        self.client.receive_data(handshake.receive_data(self.client.data_to_send()))
        handshake.receive_data(self.client.data_to_send())  # C2 and the connect
        self.writer = ChunkWriter()
        self.events: list = []

    def command(self, name: str, *args, transaction_id: float = 0) -> None:
        type_id, payload = m.encode_body(m.Command(name, transaction_id, None, args))
        self.events.extend(self.client.receive_data(self.writer.write(Message(type_id, payload, 0, 0, 3))))


def client_in(state: A) -> Upstream:
    """A client in ``state``, reached by the server's answers (or our calls)."""
    upstream = Upstream()
    assert upstream.client.state is A.CONNECTING
    if state is A.HANDSHAKE:
        upstream.client.state = A.HANDSHAKE  # no server answer leads back here: the handshake's end was fed once
        return upstream
    steps = [
        ("_result", ({"code": s.Status.CONNECT_SUCCESS},), 1),
        ("_result", (1.0,), 4),
        ("onStatus", ({"level": "status", "code": s.Status.PUBLISH_START},), 0),
    ]
    order = [A.CONNECTING, A.CREATING_STREAM, A.PUBLISHING_PENDING, A.PUBLISHING]
    if state in order:
        for name, args, tx in steps[: order.index(state)]:
            upstream.command(name, *args, transaction_id=tx)
    elif state is A.FAILED:
        upstream.command("_error", {"level": "error", "code": s.Status.CONNECT_REJECTED}, transaction_id=1)
    elif state is A.CLOSED:
        upstream.client.close()
    assert upstream.client.state is state
    return upstream


def feed_client_input(upstream: Upstream, input_: I) -> None:
    client = upstream.client
    senders = {
        I.CONNECT_RESULT: lambda: upstream.command("_result", {"code": s.Status.CONNECT_SUCCESS}, transaction_id=1),
        I.PREPARE_RESULT: lambda: upstream.command("_result", transaction_id=2),
        I.CREATE_STREAM_RESULT: lambda: upstream.command("_result", 1.0, transaction_id=4),
        I.OTHER_RESULT: lambda: upstream.command("_result", transaction_id=9),
        I.FATAL_ERROR: lambda: upstream.command("_error", {"level": "error", "code": "x"}, transaction_id=4),
        I.MINOR_ERROR: lambda: upstream.command("_error", {"level": "error", "code": "x"}, transaction_id=2),
        I.PUBLISH_START: lambda: upstream.command("onStatus", {"level": "status", "code": s.Status.PUBLISH_START}),
        I.STATUS_ERROR: lambda: upstream.command("onStatus", {"level": "error", "code": s.Status.PUBLISH_BAD_NAME}),
        I.STATUS: lambda: upstream.command("onStatus", {"level": "status", "code": "NetStream.Publish.Idle"}),
        I.OTHER_COMMAND: lambda: upstream.command("onBWDone"),
        I.SEND_MEDIA: lambda: client.send_media(9, 0, b"\x17\x01\x00\x00\x00"),
        I.SEND_METADATA: lambda: client.send_metadata({"width": 1.0}),
        I.CLOSE: lambda: client.close(),
        # the one input no server bytes can repeat: the dispatcher is given it as receive_data gives it
        I.HANDSHAKE_DONE: lambda: client._fire(I.HANDSHAKE_DONE, None, upstream.events),
    }
    senders[input_]()


def test_media_before_the_publish_started_is_local_misuse():
    upstream = client_in(A.PUBLISHING_PENDING)
    with pytest.raises(LocalProtocolError) as info:
        upstream.client.send_media(9, 0, b"\x17\x01\x00\x00\x00")
    assert str(info.value) == "send_media while publish-pending (at ClientSession.send_media)"


def test_a_second_connect_result_is_the_peers_fault():
    upstream = client_in(A.CREATING_STREAM)
    with pytest.raises(SessionError) as info:
        upstream.command("_result", transaction_id=1)
    assert str(info.value) == "connect's _result while creating-stream (at _result command, transaction 1.0)"


# -- every table: each missing pair is a fault, each entry is reached ----------------------------------


@attrs.frozen
class Machine:
    name: str
    table: dict
    states: type
    inputs: list
    local: frozenset
    enter: Callable  # state -> a subject in that state
    feed: Callable  # (subject, input) -> None
    state_of: Callable  # subject -> its state


MACHINES = [
    Machine("netconnection", s._NETCONNECTION, C, CONNECTION_INPUTS, s._SERVER_LOCAL, server_in, feed_connection_input, lambda peer: peer.server._state),
    Machine(
        "netstream",
        s._NETSTREAM,
        N,
        STREAM_INPUTS,
        s._SERVER_LOCAL,
        stream_in,
        lambda peer, input_: feed_stream_input(peer, STREAM, input_),
        lambda peer: peer.server._stream_state(STREAM),
    ),
    Machine("client", s._CLIENT, A, list(I), s._CLIENT_LOCAL, client_in, feed_client_input, lambda upstream: upstream.client.state),
]


def pairs(missing_ones: bool) -> list:
    out = []
    for machine in MACHINES:
        chosen = missing(machine.table, machine.states, machine.inputs) if missing_ones else sorted(machine.table, key=str)
        out += [pytest.param(machine, state, input_, id=f"{machine.name}-{state.name}-{input_.name}") for state, input_ in chosen]
    return out


@pytest.mark.parametrize(("machine", "state", "input_"), pairs(missing_ones=True))
def test_a_pair_missing_from_a_table_is_a_fault(machine, state, input_):
    """The peer's SessionError for the peer's input, our LocalProtocolError for our call; the state stays."""
    subject = machine.enter(state)
    error_type = LocalProtocolError if input_ in machine.local else SessionError
    with pytest.raises(error_type) as info:
        machine.feed(subject, input_)
    assert (info.value.state, info.value.input) == (state.value, input_.value)
    assert input_.value in info.value.what and info.value.where
    assert machine.state_of(subject) is state


@pytest.mark.parametrize(("machine", "state", "input_"), pairs(missing_ones=False))
def test_every_entry_is_reached_from_its_input(machine, state, input_):
    subject = machine.enter(state)
    machine.feed(subject, input_)
    assert machine.state_of(subject) is machine.table[(state, input_)][1]


# -- the normal sequences, walked --------------------------------------------------------------------


class RecordingServer(s.ServerSession):
    def __init__(self) -> None:
        super().__init__()
        self.walk: list = []

    def _fire_connection(self, input_, *args) -> None:
        super()._fire_connection(input_, *args)
        self.walk.append((input_.name, self._state.name))

    def _fire_stream(self, stream_id, input_, *args) -> None:
        super()._fire_stream(stream_id, input_, *args)
        self.walk.append((stream_id, input_.name, self._stream_state(stream_id).name))


class RecordingClient(s.ClientSession):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.walk: list = []

    def _fire(self, input_, *args) -> None:
        super()._fire(input_, *args)
        self.walk.append((input_.name, self.state.name))


def test_the_publish_sequence_walks_both_tables():
    client = RecordingClient("live/user1", "stream1", "rtmp://h/live/user1")
    server = RecordingServer()
    server_events: list = []
    client_events: list = []
    client.initiate()
    pump(client, server, server_events, client_events)
    client.send_metadata({"width": 1280.0})
    client.send_media(9, 0, b"\x17\x01\x00\x00\x00")
    pump(client, server, server_events, client_events)
    client.close()
    pump(client, server, server_events, client_events)
    assert client.walk == [
        ("HANDSHAKE_DONE", "CONNECTING"),
        ("CONNECT_RESULT", "CREATING_STREAM"),
        ("PREPARE_RESULT", "CREATING_STREAM"),  # releaseStream's
        ("OTHER_COMMAND", "CREATING_STREAM"),  # onFCPublish
        ("PREPARE_RESULT", "CREATING_STREAM"),  # FCPublish's
        ("CREATE_STREAM_RESULT", "PUBLISHING_PENDING"),
        ("PUBLISH_START", "PUBLISHING"),
        ("SEND_METADATA", "PUBLISHING"),
        ("CLOSE", "CLOSED"),
        ("OTHER_COMMAND", "CLOSED"),  # onFCUnpublish
        ("STATUS", "CLOSED"),  # Unpublish.Success
    ]
    assert server.walk == [
        ("CONNECT", "CONNECT_PENDING"),
        ("ACCEPT_CONNECT", "CONNECTED"),
        ("RELEASE_STREAM", "CONNECTED"),
        ("FC_PUBLISH", "CONNECTED"),
        (1, "CREATED", "IDLE"),
        ("CREATE_STREAM", "CONNECTED"),
        (1, "PUBLISH", "PUBLISH_PENDING"),
        ("PUBLISH", "CONNECTED"),
        (1, "ACCEPT_PUBLISH", "PUBLISHING"),
        (1, "DATA", "PUBLISHING"),
        # media on a publishing stream: its row read in line, not dispatched (as the
        # client's send_media); test_the_media_row_read_in_line_is_the_tables pins the row
        (1, "FC_UNPUBLISH", "IDLE"),
        ("FC_UNPUBLISH", "CONNECTED"),
        (1, "DELETE_STREAM", "ABSENT"),
        ("DELETE_STREAM", "CONNECTED"),
    ]
    assert [type(e).__name__ for e in server_events if type(e) is not s.MediaReceived][-1] == "PublishEnded"


def test_the_play_sequence_walks_the_server_tables():
    server = RecordingServer()
    client = Connection(Role.CLIENT)
    client.initiate()
    client_events: list = []

    def exchange():
        for _ in range(3):
            data = client.data_to_send()
            if data:
                for event in server.receive_data(data):
                    accept_all(server, event)
            back = server.data_to_send()
            if back:
                client_events.extend(client.receive_data(back))

    exchange()
    client.send(m.Command("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"}))
    exchange()
    client.send(m.Command("createStream", 2))
    exchange()
    client.send(m.Command("play", 0, None, ("user1/stream1",)), stream_id=1)
    exchange()
    server.send_media(1, 9, 0, b"\x17\x01\x00\x00\x00")
    server.end_play(1)
    exchange()
    client.send(m.Command("closeStream", 0), stream_id=1)
    client.send(m.Command("deleteStream", 0, None, (1.0,)))
    exchange()
    assert server.walk == [
        ("CONNECT", "CONNECT_PENDING"),
        ("ACCEPT_CONNECT", "CONNECTED"),
        (1, "CREATED", "IDLE"),
        ("CREATE_STREAM", "CONNECTED"),
        (1, "PLAY", "PLAY_PENDING"),
        ("PLAY", "CONNECTED"),
        (1, "ACCEPT_PLAY", "PLAYING"),
        (1, "END_PLAY", "PLAYING"),
        (1, "CLOSE_STREAM", "IDLE"),
        ("CLOSE_STREAM", "CONNECTED"),
        (1, "DELETE_STREAM", "ABSENT"),
        ("DELETE_STREAM", "CONNECTED"),
    ]
    codes = [e.body.args[0]["code"] for e in client_events if type(e) is MessageReceived and type(e.body) is m.Command and e.body.name == "onStatus"]
    assert codes == ["NetStream.Play.Reset", "NetStream.Play.Start", "NetStream.Play.UnpublishNotify"]


def test_the_media_row_read_in_line_is_the_tables():
    """ServerSession.receive_data reads the (publishing, media) row in line for every
    media message instead of dispatching: the row must say what that code does (pass the
    event on, stay publishing), and media on any other state still goes through the table."""
    row = s._NETSTREAM_ROWS[s._NetStream.PUBLISHING][s._In.MEDIA]
    assert row == (s.ServerSession._on_media, s._NetStream.PUBLISHING)
