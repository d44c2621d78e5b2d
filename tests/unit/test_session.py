"""The NetConnection/NetStream state machines, with no sockets: a ClientSession
and a ServerSession exchange bytes in memory."""

from __future__ import annotations

import pytest

from rtmprelay.errors import SessionError
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp import session as s
from rtmprelay.rtmp.chunks import ChunkReader, ChunkWriter, Message
from rtmprelay.rtmp.connection import Connection, HandshakeCompleted, MessageReceived, Role
from rtmprelay.rtmp.handshake import ClientHandshake
from rtmprelay.testing.memory import accept_all, publishing_pair, pump


def connected_pair(url="rtmp://127.0.0.1/live/user1/stream1", decide=accept_all):
    client, server, server_events, client_events, _ = publishing_pair(url, decide)
    return client, server, server_events, client_events


def of_type(events, cls):
    return [e for e in events if type(e) is cls]


def test_client_publishes_through_the_whole_sequence():
    client, server, server_events, client_events = connected_pair()
    (connect,) = of_type(server_events, s.ConnectRequested)
    assert connect.app == "live/user1"
    assert connect.tc_url == "rtmp://127.0.0.1/live/user1"
    (publish,) = of_type(server_events, s.PublishRequested)
    assert (publish.name, publish.path, publish.publish_type) == ("stream1", "live/user1/stream1", "live")
    assert of_type(client_events, s.Connected)
    (started,) = of_type(client_events, s.PublishStarted)
    assert client.publishing and started.stream_id == publish.stream_id
    assert server.publishing_streams() == [(publish.stream_id, "live/user1/stream1")]


def test_media_and_metadata_reach_the_server_in_order():
    client, server, server_events, client_events = connected_pair()
    server_events.clear()
    client.send_metadata({"width": 1280.0, "height": 720.0})
    client.send_media(m.MessageType.VIDEO, 0, b"\x17\x00\x00\x00\x00seqheader")
    client.send_media(m.MessageType.AUDIO, 0, b"\xaf\x00\x12\x10")
    client.send_media(m.MessageType.VIDEO, 33, b"\x17\x01\x00\x00\x00frame")
    pump(client, server, server_events, client_events)
    (meta,) = of_type(server_events, s.MetadataReceived)
    assert meta.metadata == {"width": 1280.0, "height": 720.0}
    media = [(e.type_id, e.timestamp, e.payload) for e in of_type(server_events, s.MediaReceived)]
    assert media == [
        (9, 0, b"\x17\x00\x00\x00\x00seqheader"),
        (8, 0, b"\xaf\x00\x12\x10"),
        (9, 33, b"\x17\x01\x00\x00\x00frame"),
    ]


def test_unpublish_ends_the_stream():
    client, server, server_events, client_events = connected_pair()
    server_events.clear()
    client.close()
    pump(client, server, server_events, client_events)
    (ended,) = of_type(server_events, s.PublishEnded)
    assert ended.path == "live/user1/stream1"
    assert server.publishing_streams() == []


def test_rejected_publish_reports_bad_name_to_the_client():
    def reject(server, event):
        if type(event) is s.ConnectRequested:
            server.accept_connect()
        elif type(event) is s.PublishRequested:
            server.reject_publish(event.stream_id, s.Status.PUBLISH_BAD_NAME, "already published")

    client, server, server_events, client_events = connected_pair(decide=reject)
    (failed,) = of_type(client_events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.BadName"
    assert not client.publishing


@pytest.mark.parametrize(
    ("app", "name", "path"),
    [
        ("live/user1", "stream1", "live/user1/stream1"),  # ffmpeg, librtmp
        ("live", "user1/stream1", "live/user1/stream1"),  # some Android libraries
        ("live", "user1/stream1?token=abc", "live/user1/stream1"),
        ("live/user1?key=1", "stream1", "live/user1/stream1"),
        ("/live//user1/", "/stream1", "live/user1/stream1"),
    ],
)
def test_stream_path_is_the_same_however_the_url_is_split(app, name, path):
    assert s.stream_path(app, name) == path


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtmp://h/live/u/s", ("h", 1935, "live/u", "s", False)),
        ("rtmps://live.cloudflare.com:443/live/KEY", ("live.cloudflare.com", 443, "live", "KEY", True)),
        ("rtmps://h/live/KEY?x=1", ("h", 443, "live", "KEY?x=1", True)),
        ("rtmp://h:1936/live", ("h", 1936, "live", "", False)),
    ],
)
def test_split_rtmp_url(url, expected):
    assert s.split_rtmp_url(url) == expected


def test_split_rtmp_url_rejects_other_schemes():
    with pytest.raises(ValueError):
        s.split_rtmp_url("http://h/live/x")


def test_play_request_and_media_to_the_player():
    client = Connection(Role.CLIENT)
    server = s.ServerSession()
    client.initiate()
    server_events: list = []
    client_events: list = []

    def exchange():
        data = client.data_to_send()
        if data:
            new = server.receive_data(data)
            server_events.extend(new)
            for event in new:
                accept_all(server, event)
        back = server.data_to_send()
        if back:
            client_events.extend(client.receive_data(back))

    exchange()
    exchange()
    client.send(m.Command("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"}))
    exchange()
    client.send(m.Command("createStream", 2))
    exchange()
    (created,) = [e for e in client_events if type(e) is MessageReceived and getattr(e.body, "transaction_id", None) == 2]
    stream_id = int(created.body.args[0])
    client.send(m.Command("play", 0, None, ("user1/stream1",)), stream_id=stream_id)
    exchange()
    (play,) = of_type(server_events, s.PlayRequested)
    assert play.path == "live/user1/stream1"
    codes = [e.body.args[0]["code"] for e in client_events if type(e) is MessageReceived and type(e.body) is m.Command and e.body.name == "onStatus"]
    assert codes == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    client_events.clear()
    server.send_media(stream_id, m.MessageType.VIDEO, 40, b"\x17\x01frame")
    exchange()
    (video,) = [e for e in client_events if type(e) is MessageReceived and type(e.body) is m.Video]
    assert (video.body.payload, video.timestamp, video.stream_id) == (b"\x17\x01frame", 40, stream_id)


def _server_after_handshake():
    server = s.ServerSession()
    hs = ClientHandshake()
    c0c1 = hs.initiate()
    reply = server.receive_data(c0c1)
    server_bytes = server.data_to_send()
    c2 = hs.receive_data(server_bytes)
    assert hs.done
    events = server.receive_data(c2)
    assert of_type(events, HandshakeCompleted)
    return server


def _command_bytes(body, stream_id=0, writer=None):
    writer = writer or ChunkWriter()
    type_id, payload = m.encode_body(body)
    return writer.write(Message(type_id, payload, 0, stream_id, 3))


def test_publish_before_connect_is_a_session_error():
    server = _server_after_handshake()
    with pytest.raises(SessionError) as info:
        server.receive_data(_command_bytes(m.Command("publish", 5, None, ("x", "live")), stream_id=1))
    assert "before connect" in info.value.what


def test_publish_on_a_stream_never_created_is_a_session_error():
    server = _server_after_handshake()
    writer = ChunkWriter()
    events = server.receive_data(_command_bytes(m.Command("connect", 1, {"app": "live"}), writer=writer))
    server.accept_connect()
    with pytest.raises(SessionError) as info:
        server.receive_data(_command_bytes(m.Command("publish", 5, None, ("x", "live")), stream_id=7, writer=writer))
    assert "never created" in info.value.what


def test_connect_without_app_is_a_session_error():
    server = _server_after_handshake()
    with pytest.raises(SessionError) as info:
        server.receive_data(_command_bytes(m.Command("connect", 1, {"tcUrl": "x"})))
    assert info.value.where == "connect command object"


def test_server_acknowledges_when_the_window_fills():
    """A receiver must acknowledge once the peer's window of bytes has arrived."""
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER)
    client.initiate()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.send(m.WindowAckSize(10_000))
    client.send(m.SetChunkSize(4096))
    server.receive_data(client.data_to_send())
    for i in range(5):
        client.send_raw(9, b"x" * 3000, stream_id=1, timestamp=i * 33)
    server.receive_data(client.data_to_send())
    acks = [e.body for e in client.receive_data(server.data_to_send()) if type(e) is MessageReceived and type(e.body) is m.Acknowledgement]
    assert len(acks) == 1
    assert acks[0].sequence_number >= 10_000


def test_ping_request_gets_a_ping_response():
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER)
    client.initiate()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    server.send(m.PingRequest(123456))
    client_events = client.receive_data(server.data_to_send())
    assert of_type([e.body for e in client_events], m.PingRequest)
    reply = [e.body for e in server.receive_data(client.data_to_send())]
    assert m.PingResponse(123456) in reply


def _flv_tag(type_id: int, timestamp: int, data: bytes) -> bytes:
    head = bytes([type_id]) + len(data).to_bytes(3, "big") + (timestamp & 0xFFFFFF).to_bytes(3, "big")
    head += bytes([timestamp >> 24 & 0xFF]) + b"\x00\x00\x00"
    return head + data + (11 + len(data)).to_bytes(4, "big")


def test_aggregate_messages_are_unbundled_into_media():
    client, server, server_events, client_events = connected_pair()
    server_events.clear()
    bundle = _flv_tag(9, 1000, b"\x17\x01\x00\x00\x00key") + _flv_tag(8, 1010, b"\xaf\x01aac") + _flv_tag(9, 1033, b"\x27\x01\x00\x00\x00p")
    client.connection.send(m.Aggregate(bundle), stream_id=client.stream_id, timestamp=5000, chunk_stream_id=6)
    pump(client, server, server_events, client_events)
    media = [(e.type_id, e.timestamp, e.payload) for e in of_type(server_events, s.MediaReceived)]
    assert media == [
        (9, 5000, b"\x17\x01\x00\x00\x00key"),
        (8, 5010, b"\xaf\x01aac"),
        (9, 5033, b"\x27\x01\x00\x00\x00p"),
    ]


@pytest.mark.parametrize("stream_id", [float("nan"), float("inf"), 1.5, -1.0, 2.0**40, "1", None])
def test_client_refuses_a_create_stream_result_that_names_no_stream(stream_id):
    from rtmprelay.errors import SessionError

    client = s.ClientSession.for_url("rtmp://h/live/s")
    client.state = s._ClientState.CREATING_STREAM
    with pytest.raises(SessionError, match="usable stream id"):
        client._on_result(m.Command("_result", client._TX_CREATE_STREAM, None, (stream_id,)), [])
