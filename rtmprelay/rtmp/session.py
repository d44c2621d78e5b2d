"""NetConnection and NetStream state machines, server and client side.

``ServerSession`` turns a peer's commands into events the relay decides on
(``PublishRequested`` -> ``accept_publish`` or ``reject_publish``) and answers
the bookkeeping commands (releaseStream, FCPublish, createStream, ...) itself,
the way nginx-rtmp, SRS and FMS answer them. ``ClientSession`` walks the
publishing sequence ffmpeg uses (connect, releaseStream, FCPublish,
createStream, publish) against an upstream.

Both own a ``Connection``: feed them bytes with ``receive_data``, send what
``data_to_send`` returns.
"""

from __future__ import annotations

import enum
import math
from typing import Any
from urllib.parse import urlsplit

import attrs

from rtmprelay.errors import MessageError, SessionError
from rtmprelay.names import BadStreamName, parse_stream_path
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp.amf0 import ECMAArray
from rtmprelay.rtmp.connection import (
    DEFAULT_OUT_CHUNK_SIZE,
    DEFAULT_WINDOW_ACK_SIZE,
    Connection,
    ConnectionConfig,
    HandshakeCompleted,
    MessageDropped,
    MessageReceived,
    Role,
)
from rtmprelay.media.metadata import sanitize_metadata

# Chunk stream ids for what a session sends (ffmpeg's and nginx's choices).
CSID_COMMAND = 3
CSID_STREAM_COMMAND = 5
CSID_DATA = 5
CSID_AUDIO = 4
CSID_VIDEO = 6

FMS_VERSION = "FMS/3,5,7,7009"
FMS_CAPABILITIES = 31
DEFAULT_FLASH_VERSION = "FMLE/3.0 (compatible; rtmprelay)"


def stream_path(app: str, name: str) -> str:
    """The one path a stream is known by, however the client split its URL
    (``rtmprelay.names.parse_stream_path``); raises ``BadStreamName``."""
    return parse_stream_path(app, name)[0].full


def split_rtmp_url(url: str) -> tuple[str, int, str, str, bool]:
    """(host, port, app, stream name, tls) for an rtmp:// or rtmps:// URL.

    Like ffmpeg, the stream name is the last path segment and the app the rest;
    a query string stays on the name (Cloudflare and others put keys there).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("rtmp", "rtmps"):
        raise ValueError(f"not an rtmp:// or rtmps:// URL: {url!r}")
    tls = parts.scheme == "rtmps"
    port = parts.port or (443 if tls else 1935)
    path = parts.path.lstrip("/")
    if "/" in path:
        app, name = path.rsplit("/", 1)
    else:
        app, name = path, ""
    if parts.query:
        name = f"{name}?{parts.query}"
    if not app:
        raise ValueError(f"no application in RTMP URL: {url!r}")
    return parts.hostname or "", port, app, name, tls


# --- status codes (the standard ones clients understand) --------------------


class Status:
    CONNECT_SUCCESS = "NetConnection.Connect.Success"
    CONNECT_REJECTED = "NetConnection.Connect.Rejected"
    PUBLISH_START = "NetStream.Publish.Start"
    PUBLISH_BAD_NAME = "NetStream.Publish.BadName"
    PUBLISH_REJECTED = "NetStream.Publish.Rejected"
    #: Not one of Adobe's codes, as there is none for this; a level "error" is what clients act on.
    PUBLISH_UNAUTHORIZED = "NetStream.Publish.Unauthorized"
    UNPUBLISH_SUCCESS = "NetStream.Unpublish.Success"
    PLAY_RESET = "NetStream.Play.Reset"
    PLAY_START = "NetStream.Play.Start"
    PLAY_STOP = "NetStream.Play.Stop"
    #: librtmp players (rtmpdump, GStreamer's rtmpsrc) close the connection on this one.
    PLAY_FAILED = "NetStream.Play.Failed"
    PLAY_STREAM_NOT_FOUND = "NetStream.Play.StreamNotFound"
    PLAY_UNPUBLISH_NOTIFY = "NetStream.Play.UnpublishNotify"
    PLAY_PUBLISH_NOTIFY = "NetStream.Play.PublishNotify"


def _status(level: str, code: str, description: str, **extra: Any) -> dict:
    return {"level": level, "code": code, "description": description, **extra}


# --- events ----------------------------------------------------------------


@attrs.frozen
class ConnectRequested:
    app: str
    tc_url: str
    command_object: Any


@attrs.frozen
class PublishRequested:
    stream_id: int
    name: str
    path: str
    publish_type: str
    #: Parameters of the query strings on the app and the name (``exp``, ``sig``, tokens).
    query: dict = attrs.field(factory=dict)


@attrs.frozen
class PlayRequested:
    stream_id: int
    name: str
    path: str
    query: dict = attrs.field(factory=dict)


@attrs.frozen
class RequestRefused:
    """A publish or play the session refused itself (a bad stream name); the peer was told why."""

    stream_id: int
    action: str
    reason: str


@attrs.frozen
class MediaReceived:
    """Audio (type 8), video (type 9) or data (type 18) on a publishing stream."""

    stream_id: int
    type_id: int
    timestamp: int
    payload: bytes


@attrs.frozen
class MetadataReceived:
    stream_id: int
    timestamp: int
    #: Plain, bounded values only (``rtmprelay.media.metadata``).
    metadata: dict
    #: Values the publisher sent that were left out or cut.
    altered: int = 0


@attrs.frozen
class PublishEnded:
    stream_id: int
    path: str


@attrs.frozen
class PlayEnded:
    stream_id: int
    path: str


@attrs.frozen
class UnhandledCommand:
    name: str
    stream_id: int


# --- server -----------------------------------------------------------------


class _NetStream(enum.Enum):
    IDLE = "idle"
    PUBLISH_PENDING = "publish-pending"
    PUBLISHING = "publishing"
    PLAY_PENDING = "play-pending"
    PLAYING = "playing"


@attrs.define
class _StreamState:
    state: _NetStream = _NetStream.IDLE
    path: str = ""
    name: str = ""
    transaction_id: float = 0


class ServerSession:
    """The server side of one RTMP connection."""

    #: Bound on NetStreams one connection may create: real clients use one or two.
    MAX_STREAMS = 16

    def __init__(
        self,
        config: ConnectionConfig = ConnectionConfig(),
        *,
        window_ack_size: int = DEFAULT_WINDOW_ACK_SIZE,
    ) -> None:
        self.connection = Connection(Role.SERVER, config)
        self.window_ack_size = window_ack_size
        self.app: str | None = None
        self.tc_url = ""
        self._object_encoding = 0
        self._connect_transaction: float | None = None
        self._streams: dict[int, _StreamState] = {}
        self._next_stream_id = 1

    # -- bytes ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> list:
        events: list = []
        for event in self.connection.receive_data(data):
            if type(event) is MessageReceived:
                handler = _SERVER_HANDLERS.get(type(event.body))
                if handler is not None:
                    handler(self, event, events)
            elif type(event) is HandshakeCompleted or type(event) is MessageDropped:
                events.append(event)
        return events

    def data_to_send(self) -> bytes:
        return self.connection.data_to_send()

    # -- decisions from the relay -------------------------------------------

    def accept_connect(self) -> None:
        if self._connect_transaction is None:
            raise SessionError("accept_connect without a pending connect")
        c = self.connection
        c.send(m.WindowAckSize(self.window_ack_size))
        c.send(m.SetPeerBandwidth(self.window_ack_size, m.PeerBandwidthLimit.DYNAMIC))
        c.send(m.SetChunkSize(self.connection.config.out_chunk_size))
        c.send(m.StreamBegin(0))
        self._send_command(
            "_result",
            self._connect_transaction,
            {"fmsVer": FMS_VERSION, "capabilities": FMS_CAPABILITIES, "mode": 1},
            _status(
                "status",
                Status.CONNECT_SUCCESS,
                "Connection succeeded.",
                objectEncoding=self._object_encoding,
            ),
        )
        self._connect_transaction = None

    def reject_connect(self, description: str) -> None:
        self._send_command(
            "_error",
            self._connect_transaction or 1,
            None,
            _status("error", Status.CONNECT_REJECTED, description),
        )
        self._connect_transaction = None

    def accept_publish(self, stream_id: int) -> None:
        stream = self._stream(stream_id, _NetStream.PUBLISH_PENDING)
        stream.state = _NetStream.PUBLISHING
        self.connection.send(m.StreamBegin(stream_id))
        self._on_status(stream_id, "status", Status.PUBLISH_START, f"{stream.name} is now published.")

    def reject_publish(self, stream_id: int, code: str, description: str) -> None:
        stream = self._stream(stream_id, _NetStream.PUBLISH_PENDING)
        stream.state = _NetStream.IDLE
        self._on_status(stream_id, "error", code, description)

    def accept_play(self, stream_id: int) -> None:
        stream = self._stream(stream_id, _NetStream.PLAY_PENDING)
        stream.state = _NetStream.PLAYING
        c = self.connection
        c.send(m.StreamIsRecorded(stream_id))
        c.send(m.StreamBegin(stream_id))
        self._on_status(stream_id, "status", Status.PLAY_RESET, f"Playing and resetting {stream.name}.")
        self._on_status(stream_id, "status", Status.PLAY_START, f"Started playing {stream.name}.")
        c.send(m.Data(("|RtmpSampleAccess", True, True)), stream_id=stream_id, chunk_stream_id=CSID_DATA)

    def reject_play(self, stream_id: int, code: str, description: str) -> None:
        stream = self._stream(stream_id, _NetStream.PLAY_PENDING)
        stream.state = _NetStream.IDLE
        self._on_status(stream_id, "error", code, description)

    def end_play(self, stream_id: int, description: str = "Stream ended.") -> None:
        """The stream being played was unpublished: tell the player."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.state is not _NetStream.PLAYING:
            return
        self.connection.send(m.StreamEOF(stream_id))
        self._on_status(stream_id, "status", Status.PLAY_UNPUBLISH_NOTIFY, description)

    def send_media(self, stream_id: int, type_id: int, timestamp: int, payload: bytes) -> None:
        """Audio, video or data to a playing stream."""
        csid = CSID_VIDEO if type_id == m.MessageType.VIDEO else CSID_AUDIO if type_id == m.MessageType.AUDIO else CSID_DATA
        self.connection.send_raw(type_id, payload, stream_id=stream_id, timestamp=timestamp, chunk_stream_id=csid)

    def publishing_streams(self) -> list[tuple[int, str]]:
        return [(sid, s.path) for sid, s in self._streams.items() if s.state is _NetStream.PUBLISHING]

    def playing_streams(self) -> list[tuple[int, str]]:
        return [(sid, s.path) for sid, s in self._streams.items() if s.state is _NetStream.PLAYING]

    # -- command handlers ------------------------------------------------------

    def _on_command(self, event: MessageReceived, events: list) -> None:
        body: m.Command = event.body
        handler = _SERVER_COMMANDS.get(body.name)
        if handler is None:
            events.append(UnhandledCommand(body.name, event.stream_id))
            return
        handler(self, body, event.stream_id, events)

    def _cmd_connect(self, body: m.Command, stream_id: int, events: list) -> None:
        if self.app is not None:
            raise SessionError("second connect on one connection", where="connect command")
        obj = body.command_object if isinstance(body.command_object, dict) else {}
        app = obj.get("app")
        if not isinstance(app, str):
            raise SessionError("connect without an app string", where="connect command object")
        self.app = app
        tc_url = obj.get("tcUrl") or obj.get("tcurl") or ""
        self.tc_url = tc_url if isinstance(tc_url, str) else ""
        encoding = obj.get("objectEncoding", 0)
        self._object_encoding = 3 if encoding == 3 else 0
        self._connect_transaction = body.transaction_id
        events.append(ConnectRequested(app, self.tc_url, obj))

    def _cmd_create_stream(self, body: m.Command, stream_id: int, events: list) -> None:
        self._require_connected("createStream")
        if len(self._streams) >= self.MAX_STREAMS:
            raise SessionError(f"more than {self.MAX_STREAMS} streams on one connection", where="createStream")
        new_id = self._next_stream_id
        self._next_stream_id += 1
        self._streams[new_id] = _StreamState()
        self._send_command("_result", body.transaction_id, None, new_id)

    def _cmd_publish(self, body: m.Command, stream_id: int, events: list) -> None:
        self._require_connected("publish")
        stream = self._streams.get(stream_id)
        if stream is None:
            # ffmpeg and librtmp always createStream first; FMS answers such a publish with an error too.
            raise SessionError(f"publish on stream {stream_id} that was never created", where="publish command")
        name = body.args[0] if body.args and isinstance(body.args[0], str) else ""
        publish_type = body.args[1] if len(body.args) > 1 and isinstance(body.args[1], str) else "live"
        if stream.state is not _NetStream.IDLE:
            self._on_status(stream_id, "error", Status.PUBLISH_BAD_NAME, "Stream already in use on this connection.")
            return
        try:
            parsed, query = parse_stream_path(self.app or "", name)
        except BadStreamName as error:
            self._on_status(stream_id, "error", Status.PUBLISH_BAD_NAME, f"Bad stream name: {error}.")
            events.append(RequestRefused(stream_id, "publish", str(error)))
            return
        stream.name, stream.path, stream.transaction_id = name, parsed.full, body.transaction_id
        stream.state = _NetStream.PUBLISH_PENDING
        events.append(PublishRequested(stream_id, name, parsed.full, publish_type, query))

    def _cmd_play(self, body: m.Command, stream_id: int, events: list) -> None:
        self._require_connected("play")
        stream = self._streams.get(stream_id)
        if stream is None:
            raise SessionError(f"play on stream {stream_id} that was never created", where="play command")
        name = body.args[0] if body.args and isinstance(body.args[0], str) else ""
        if stream.state is not _NetStream.IDLE:
            return
        try:
            parsed, query = parse_stream_path(self.app or "", name)
        except BadStreamName as error:
            self._on_status(stream_id, "error", Status.PLAY_STREAM_NOT_FOUND, f"Bad stream name: {error}.")
            events.append(RequestRefused(stream_id, "play", str(error)))
            return
        stream.name, stream.path, stream.transaction_id = name, parsed.full, body.transaction_id
        stream.state = _NetStream.PLAY_PENDING
        events.append(PlayRequested(stream_id, name, parsed.full, query))

    def _cmd_release_stream(self, body: m.Command, stream_id: int, events: list) -> None:
        # nginx-rtmp and SRS answer with a bare _result; ffmpeg waits for nothing here.
        if body.transaction_id:
            self._send_command("_result", body.transaction_id, None)

    def _cmd_fc_publish(self, body: m.Command, stream_id: int, events: list) -> None:
        name = body.args[0] if body.args and isinstance(body.args[0], str) else ""
        self._send_command("onFCPublish", 0, None, _status("status", Status.PUBLISH_START, f"FCPublish to stream {name}."))
        if body.transaction_id:
            self._send_command("_result", body.transaction_id, None)

    def _cmd_fc_unpublish(self, body: m.Command, stream_id: int, events: list) -> None:
        name = body.args[0] if body.args and isinstance(body.args[0], str) else ""
        self._send_command("onFCUnpublish", 0, None, _status("status", Status.UNPUBLISH_SUCCESS, f"FCUnpublish {name}."))
        if body.transaction_id:
            self._send_command("_result", body.transaction_id, None)
        for sid, stream in self._streams.items():
            if stream.state is _NetStream.PUBLISHING and (not name or stream.name == name):
                self._end_stream(sid, events)

    def _cmd_delete_stream(self, body: m.Command, stream_id: int, events: list) -> None:
        target = body.args[0] if body.args and isinstance(body.args[0], (int, float)) else stream_id
        if not isinstance(target, int):
            # AMF numbers are doubles: NaN, infinities and fractions name no stream.
            if not (math.isfinite(target) and target == int(target)):
                return
            target = int(target)
        if target in self._streams:
            self._end_stream(target, events)
            del self._streams[target]

    def _cmd_close_stream(self, body: m.Command, stream_id: int, events: list) -> None:
        if stream_id in self._streams:
            self._end_stream(stream_id, events)

    def _cmd_get_stream_length(self, body: m.Command, stream_id: int, events: list) -> None:
        if body.transaction_id:
            self._send_command("_result", body.transaction_id, None, 0)

    def _cmd_ignore(self, body: m.Command, stream_id: int, events: list) -> None:
        """Commands a live server answers by doing nothing (as nginx-rtmp does)."""

    # -- data and media --------------------------------------------------------

    def _on_data(self, event: MessageReceived, events: list) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or stream.state is not _NetStream.PUBLISHING:
            return
        values = list(event.body.values)
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            kept = sanitize_metadata(values[1])
            events.append(MetadataReceived(event.stream_id, event.timestamp, kept.metadata, kept.altered))

    def _on_media(self, event: MessageReceived, events: list) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or stream.state is not _NetStream.PUBLISHING:
            return  # media before publish is accepted, or after unpublish: nowhere to go
        body = event.body
        type_id = m.MessageType.VIDEO if type(body) is m.Video else m.MessageType.AUDIO
        events.append(MediaReceived(event.stream_id, type_id, event.timestamp, body.payload))

    def _on_aggregate(self, event: MessageReceived, events: list) -> None:
        """FLV tags bundled into one message (FMS and some encoders send them): unbundled."""
        stream = self._streams.get(event.stream_id)
        if stream is None or stream.state is not _NetStream.PUBLISHING:
            return
        try:
            inners = m.split_aggregate(event.body.payload, event.timestamp, stream_id=event.stream_id)
        except MessageError as error:
            # Media, not the connection's control: a broken bundle costs its frames only.
            events.append(MessageDropped(m.MessageType.AGGREGATE, event.stream_id, str(error)))
            return
        for inner in inners:
            if inner.type_id in (m.MessageType.AUDIO, m.MessageType.VIDEO):
                events.append(MediaReceived(event.stream_id, inner.type_id, inner.timestamp, inner.payload))
            elif inner.type_id == m.MessageType.DATA_AMF0:
                try:
                    body = m.decode_body(inner.type_id, inner.payload, self.connection.config.amf)
                except MessageError as error:
                    events.append(MessageDropped(inner.type_id, event.stream_id, str(error)))
                    continue
                self._on_data(MessageReceived(body, inner.timestamp, event.stream_id, event.chunk_stream_id), events)

    def _on_unknown(self, event: MessageReceived, events: list) -> None:
        raise MessageError(
            f"unknown message type {event.body.type_id}",
            where=f"chunk stream {event.chunk_stream_id}, message stream {event.stream_id}",
        )

    # -- helpers -----------------------------------------------------------------

    def _end_stream(self, stream_id: int, events: list) -> None:
        stream = self._streams[stream_id]
        if stream.state is _NetStream.PUBLISHING:
            events.append(PublishEnded(stream_id, stream.path))
            self._on_status(stream_id, "status", Status.UNPUBLISH_SUCCESS, f"{stream.name} is now unpublished.")
        elif stream.state is _NetStream.PLAYING:
            events.append(PlayEnded(stream_id, stream.path))
        stream.state = _NetStream.IDLE

    def _stream(self, stream_id: int, expected: _NetStream) -> _StreamState:
        stream = self._streams.get(stream_id)
        if stream is None or stream.state is not expected:
            raise SessionError(f"stream {stream_id} is not {expected.value}")
        return stream

    def _require_connected(self, command: str) -> None:
        if self.app is None:
            raise SessionError(f"{command} before connect", where=f"{command} command")

    def _send_command(self, name: str, transaction_id: float, command_object: Any, *args: Any, stream_id: int = 0) -> None:
        csid = CSID_COMMAND if stream_id == 0 else CSID_STREAM_COMMAND
        self.connection.send(m.Command(name, transaction_id, command_object, args), stream_id=stream_id, chunk_stream_id=csid)

    def _on_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._send_command("onStatus", 0, None, _status(level, code, description), stream_id=stream_id)


_SERVER_COMMANDS = {
    "connect": ServerSession._cmd_connect,
    "createStream": ServerSession._cmd_create_stream,
    "publish": ServerSession._cmd_publish,
    "play": ServerSession._cmd_play,
    "releaseStream": ServerSession._cmd_release_stream,
    "FCPublish": ServerSession._cmd_fc_publish,
    "FCUnpublish": ServerSession._cmd_fc_unpublish,
    "deleteStream": ServerSession._cmd_delete_stream,
    "closeStream": ServerSession._cmd_close_stream,
    "getStreamLength": ServerSession._cmd_get_stream_length,
    "FCSubscribe": ServerSession._cmd_ignore,
    "receiveAudio": ServerSession._cmd_ignore,
    "receiveVideo": ServerSession._cmd_ignore,
    "_checkbw": ServerSession._cmd_ignore,
    "checkBandwidth": ServerSession._cmd_ignore,
    "_result": ServerSession._cmd_ignore,
    "_error": ServerSession._cmd_ignore,
    "onBWDone": ServerSession._cmd_ignore,
    "pause": ServerSession._cmd_ignore,
}

_SERVER_HANDLERS = {
    m.Command: ServerSession._on_command,
    m.Data: ServerSession._on_data,
    m.Audio: ServerSession._on_media,
    m.Video: ServerSession._on_media,
    m.Aggregate: ServerSession._on_aggregate,
    m.Unknown: ServerSession._on_unknown,
}


# --- client -----------------------------------------------------------------


@attrs.frozen
class Connected:
    pass


@attrs.frozen
class PublishStarted:
    stream_id: int


@attrs.frozen
class PublishFailed:
    code: str
    description: str


class _ClientState(enum.Enum):
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"
    CREATING_STREAM = "creating-stream"
    PUBLISHING_PENDING = "publish-pending"
    PUBLISHING = "publishing"
    FAILED = "failed"
    CLOSED = "closed"


class ClientSession:
    """Publishes one stream to an upstream RTMP server, the way ffmpeg does."""

    _TX_CONNECT = 1
    _TX_RELEASE = 2
    _TX_FCPUBLISH = 3
    _TX_CREATE_STREAM = 4
    _TX_PUBLISH = 5

    def __init__(
        self,
        app: str,
        stream_name: str,
        tc_url: str,
        *,
        flash_version: str = DEFAULT_FLASH_VERSION,
        config: ConnectionConfig = ConnectionConfig(),
    ) -> None:
        self.app = app
        self.stream_name = stream_name
        self.tc_url = tc_url
        self.flash_version = flash_version
        self.connection = Connection(Role.CLIENT, config)
        self.state = _ClientState.HANDSHAKE
        self.stream_id: int | None = None

    @classmethod
    def for_url(cls, url: str, **kwargs: Any) -> "ClientSession":
        host, port, app, name, tls = split_rtmp_url(url)
        scheme = "rtmps" if tls else "rtmp"
        default_port = 443 if tls else 1935
        netloc = host if port == default_port else f"{host}:{port}"
        return cls(app, name, f"{scheme}://{netloc}/{app}", **kwargs)

    def initiate(self) -> None:
        self.connection.initiate()

    def receive_data(self, data: bytes) -> list:
        events: list = []
        for event in self.connection.receive_data(data):
            if type(event) is HandshakeCompleted:
                self._send_connect()
            elif type(event) is MessageReceived and type(event.body) is m.Command:
                self._on_command(event.body, events)
        return events

    def data_to_send(self) -> bytes:
        return self.connection.data_to_send()

    @property
    def publishing(self) -> bool:
        return self.state is _ClientState.PUBLISHING

    def send_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        if self.state is not _ClientState.PUBLISHING:
            raise SessionError(f"media sent while {self.state.value}")
        csid = CSID_VIDEO if type_id == m.MessageType.VIDEO else CSID_AUDIO if type_id == m.MessageType.AUDIO else CSID_DATA
        self.connection.send_raw(type_id, payload, stream_id=self.stream_id, timestamp=timestamp, chunk_stream_id=csid)

    def send_metadata(self, metadata: dict, timestamp: int = 0) -> None:
        if self.state is not _ClientState.PUBLISHING:
            raise SessionError(f"metadata sent while {self.state.value}")
        self.connection.send(
            m.Data(("@setDataFrame", "onMetaData", ECMAArray(metadata))),
            stream_id=self.stream_id,
            timestamp=timestamp,
            chunk_stream_id=CSID_DATA,
        )

    def close(self) -> None:
        """Unpublish politely, as ffmpeg does on exit."""
        if self.state is _ClientState.PUBLISHING and self.stream_id is not None:
            self._send_command("FCUnpublish", 0, self.stream_name)
            self._send_command("deleteStream", 0, self.stream_id)
        self.state = _ClientState.CLOSED

    # -- internals -------------------------------------------------------------

    def _send_command(self, name: str, transaction_id: float, *args: Any, stream_id: int = 0) -> None:
        csid = CSID_COMMAND if stream_id == 0 else CSID_STREAM_COMMAND
        self.connection.send(m.Command(name, transaction_id, None, args), stream_id=stream_id, chunk_stream_id=csid)

    def _send_connect(self) -> None:
        self.connection.send(m.SetChunkSize(self.connection.config.out_chunk_size))
        self.connection.send(
            m.Command(
                "connect",
                self._TX_CONNECT,
                {
                    "app": self.app,
                    "type": "nonprivate",
                    "flashVer": self.flash_version,
                    "tcUrl": self.tc_url,
                },
            ),
            chunk_stream_id=CSID_COMMAND,
        )
        self.state = _ClientState.CONNECTING

    def _on_command(self, body: m.Command, events: list) -> None:
        if body.name == "_result":
            self._on_result(body, events)
        elif body.name == "_error":
            # Some servers answer releaseStream or FCPublish with _error; only
            # the steps publishing depends on are fatal.
            if body.transaction_id in (self._TX_CONNECT, self._TX_CREATE_STREAM, self._TX_PUBLISH):
                self._fail(body, events)
        elif body.name == "onStatus":
            info = body.args[0] if body.args and isinstance(body.args[0], dict) else {}
            code = str(info.get("code", ""))
            if code == Status.PUBLISH_START and self.state is _ClientState.PUBLISHING_PENDING:
                self.state = _ClientState.PUBLISHING
                events.append(PublishStarted(self.stream_id or 0))
            elif info.get("level") == "error":
                self._fail(body, events)

    def _on_result(self, body: m.Command, events: list) -> None:
        tx = body.transaction_id
        if tx == self._TX_CONNECT and self.state is _ClientState.CONNECTING:
            events.append(Connected())
            self._send_command("releaseStream", self._TX_RELEASE, self.stream_name)
            self._send_command("FCPublish", self._TX_FCPUBLISH, self.stream_name)
            self._send_command("createStream", self._TX_CREATE_STREAM)
            self.state = _ClientState.CREATING_STREAM
        elif tx == self._TX_CREATE_STREAM and self.state is _ClientState.CREATING_STREAM:
            stream_id = body.args[0] if body.args else None
            if (
                not isinstance(stream_id, (int, float))
                or isinstance(stream_id, bool)
                or not math.isfinite(stream_id)
                or stream_id != int(stream_id)
                or not 0 <= stream_id <= 0xFFFFFFFF
            ):
                raise SessionError(f"createStream result without a usable stream id ({stream_id!r})", where="_result")
            self.stream_id = int(stream_id)
            self._send_command("publish", self._TX_PUBLISH, self.stream_name, "live", stream_id=self.stream_id)
            self.state = _ClientState.PUBLISHING_PENDING

    def _fail(self, body: m.Command, events: list) -> None:
        info = body.args[0] if body.args and isinstance(body.args[0], dict) else {}
        self.state = _ClientState.FAILED
        events.append(PublishFailed(str(info.get("code", body.name)), str(info.get("description", ""))))
