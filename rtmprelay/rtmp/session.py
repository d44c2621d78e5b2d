"""NetConnection and NetStream state machines, server and client side.

``ServerSession`` turns a peer's commands into events the relay decides on
(``PublishRequested`` -> ``accept_publish`` or ``reject_publish``) and answers
the bookkeeping commands (releaseStream, FCPublish, createStream, ...) itself,
the way nginx-rtmp, SRS and FMS answer them. ``ClientSession`` walks the
publishing sequence ffmpeg uses (connect, releaseStream, FCPublish,
createStream, publish) against an upstream.

Both own a ``Connection``: feed them bytes with ``receive_data``, send what
``data_to_send`` returns.

Their rules are tables of ``(state, input) -> (handler, next state)`` (h2's
shape; see "the tables" below): the server's NetConnection and NetStream
machines, the client's publishing machine. What the peer sends with no entry
for the current state is a ``SessionError`` (the peer's fault; its connection
closes); what our own code asks with no entry (``accept_publish`` of a stream
that is not waiting, ``send_media`` before the publish started) is a
``LocalProtocolError``. Ask the state first (``publish_pending``,
``publishing``) where a wait may have been overtaken.
"""

from __future__ import annotations

import enum
import math
from typing import Any
from urllib.parse import urlsplit

import attrs

from rtmprelay.errors import LocalProtocolError, MessageError, SessionError
from rtmprelay.media.message import MediaMessage
from rtmprelay.names import BadStreamName, parse_stream_path
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp.amf0 import ECMAArray
from rtmprelay.rtmp.connection import (
    DEFAULT_OUT_CHUNK_SIZE,
    DEFAULT_WINDOW_ACK_SIZE,
    Connection,
    ConnectionConfig,
    HandshakeCompleted,
    MediaReceived,
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


# --- the tables ---------------------------------------------------------------
#
# Each state machine is one table in h2's shape: (state, input) -> (handler,
# next state). Its dispatcher (``ServerSession._fire_connection`` and
# ``._fire_stream``, ``ClientSession._fire``) looks the pair up, calls the
# handler and moves to the next state: no other code assigns a state. A pair
# with no entry is a fault, the peer's (``SessionError``, which closes its
# connection only) when the peer made the input, ours (``LocalProtocolError``)
# when our own code did. docs/architecture.md renders the tables.


class _Symbol(enum.Enum):
    """A state or an input of a table. Members are singletons, so identity hashing
    is exact; it keeps the per-message lookup a C call (Enum's own hash is not)."""

    __hash__ = object.__hash__


def _rows(table: dict) -> dict:
    """The table by state, as the dispatchers read it: one lookup keyed by the input."""
    rows: dict = {}
    for (state, input_), entry in table.items():
        rows.setdefault(state, {})[input_] = entry
    return rows


def _no_entry(session: object, local: frozenset, state: _Symbol, input_: _Symbol, what: str, where: str) -> Exception:
    """The error for a (state, input) pair missing from a table: ours or the peer's."""
    if input_ in local:
        where = f"{type(session).__name__}.{input_.value}"
        return LocalProtocolError(what, where, state=state.value, input=input_.value)
    return SessionError(what, where, state=state.value, input=input_.value)


# --- server -----------------------------------------------------------------


class _NetConnection(_Symbol):
    # Values read after an input's name: "createStream before connect".
    NEW = "before connect"
    CONNECT_PENDING = "while connect is pending"
    CONNECTED = "after connect"
    REJECTED = "after a rejected connect"


class _NetStream(_Symbol):
    #: A stream id createStream never returned, or one deleteStream removed.
    ABSENT = "never created or deleted"
    IDLE = "idle"
    PUBLISH_PENDING = "publish-pending"
    PUBLISHING = "publishing"
    PLAY_PENDING = "play-pending"
    PLAYING = "playing"


_ABSENT = _NetStream.ABSENT  # read on every message: a module global is the quickest lookup


class _In(_Symbol):
    """A server session's inputs: the peer's commands and messages, the relay's decisions."""

    # the peer's commands (values are their names)
    CONNECT = "connect"
    CREATE_STREAM = "createStream"
    PUBLISH = "publish"
    PLAY = "play"
    CLOSE_STREAM = "closeStream"
    DELETE_STREAM = "deleteStream"
    RELEASE_STREAM = "releaseStream"
    FC_PUBLISH = "FCPublish"
    FC_UNPUBLISH = "FCUnpublish"
    GET_STREAM_LENGTH = "getStreamLength"
    IGNORED_COMMAND = "a command a live server ignores"
    UNKNOWN_COMMAND = "an unknown command"
    # what the peer's commands and messages do to one NetStream
    CREATED = "createStream's new stream"
    PUBLISH_BAD_NAME = "publish of a bad name"
    PLAY_BAD_NAME = "play of a bad name"
    MEDIA = "audio or video"
    DATA = "data"
    AGGREGATE = "aggregate"
    # the relay's decisions (values are the methods' names)
    ACCEPT_CONNECT = "accept_connect"
    REJECT_CONNECT = "reject_connect"
    ACCEPT_PUBLISH = "accept_publish"
    REJECT_PUBLISH = "reject_publish"
    ACCEPT_PLAY = "accept_play"
    REJECT_PLAY = "reject_play"
    END_PLAY = "end_play"


_SERVER_LOCAL = frozenset(
    {_In.ACCEPT_CONNECT, _In.REJECT_CONNECT, _In.ACCEPT_PUBLISH, _In.REJECT_PUBLISH, _In.ACCEPT_PLAY, _In.REJECT_PLAY, _In.END_PLAY}
)

_SERVER_COMMANDS = {
    "connect": _In.CONNECT,
    "createStream": _In.CREATE_STREAM,
    "publish": _In.PUBLISH,
    "play": _In.PLAY,
    "closeStream": _In.CLOSE_STREAM,
    "deleteStream": _In.DELETE_STREAM,
    "releaseStream": _In.RELEASE_STREAM,
    "FCPublish": _In.FC_PUBLISH,
    "FCUnpublish": _In.FC_UNPUBLISH,
    "getStreamLength": _In.GET_STREAM_LENGTH,
    # What a live server answers by doing nothing (as nginx-rtmp does).
    "FCSubscribe": _In.IGNORED_COMMAND,
    "receiveAudio": _In.IGNORED_COMMAND,
    "receiveVideo": _In.IGNORED_COMMAND,
    "_checkbw": _In.IGNORED_COMMAND,
    "checkBandwidth": _In.IGNORED_COMMAND,
    "_result": _In.IGNORED_COMMAND,
    "_error": _In.IGNORED_COMMAND,
    "onBWDone": _In.IGNORED_COMMAND,
    "pause": _In.IGNORED_COMMAND,
}

#: Audio and video come as ``MediaReceived`` (the connection is made with ``media_values``).
_MESSAGE_INPUTS = {m.Data: _In.DATA, m.Aggregate: _In.AGGREGATE}


@attrs.define
class _StreamState:
    stream_id: int
    state: _NetStream = _NetStream.IDLE
    path: str = ""
    name: str = ""


class ServerSession:
    """The server side of one RTMP connection: two tables, ``_NETCONNECTION`` and ``_NETSTREAM``."""

    #: Bound on NetStreams one connection may create: real clients use one or two.
    MAX_STREAMS = 16

    def __init__(
        self,
        config: ConnectionConfig = ConnectionConfig(),
        *,
        window_ack_size: int = DEFAULT_WINDOW_ACK_SIZE,
    ) -> None:
        self.connection = Connection(Role.SERVER, config, media_values=True)
        self.window_ack_size = window_ack_size
        self.app: str | None = None
        self.tc_url = ""
        self._state = _NetConnection.NEW
        self._object_encoding = 0
        self._connect_transaction: float = 1
        self._streams: dict[int, _StreamState] = {}
        self._next_stream_id = 1

    # -- bytes ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> list:
        events: list = []
        for event in self.connection.receive_data(data):
            if type(event) is MediaReceived:  # nearly every message
                stream = self._streams.get(event.stream_id)
                if stream is not None and stream.state is _NetStream.PUBLISHING:
                    events.append(event)  # the table's (PUBLISHING, MEDIA) row, read in line
                else:
                    self._fire_stream(event.stream_id, _In.MEDIA, event, events)
            elif type(event) is MessageReceived:
                input_ = _MESSAGE_INPUTS.get(type(event.body))
                if input_ is not None:
                    self._fire_stream(event.stream_id, input_, event, events)
                else:
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
        self._fire_connection(_In.ACCEPT_CONNECT)

    def reject_connect(self, description: str) -> None:
        self._fire_connection(_In.REJECT_CONNECT, description)

    def accept_publish(self, stream_id: int) -> None:
        """Only while ``publish_pending(stream_id)``: a client may withdraw its publish meanwhile."""
        self._fire_stream(stream_id, _In.ACCEPT_PUBLISH)

    def reject_publish(self, stream_id: int, code: str, description: str) -> None:
        self._fire_stream(stream_id, _In.REJECT_PUBLISH, code, description)

    def accept_play(self, stream_id: int) -> None:
        """Only while ``play_pending(stream_id)``."""
        self._fire_stream(stream_id, _In.ACCEPT_PLAY)

    def reject_play(self, stream_id: int, code: str, description: str) -> None:
        self._fire_stream(stream_id, _In.REJECT_PLAY, code, description)

    def end_play(self, stream_id: int, description: str = "Stream ended.") -> None:
        """The stream being played was unpublished: tell the player (if it still plays)."""
        self._fire_stream(stream_id, _In.END_PLAY, description)

    def send_media(self, stream_id: int, type_id: int, timestamp: int, payload: bytes) -> None:
        """Audio, video or data to a playing stream."""
        csid = CSID_VIDEO if type_id == m.MessageType.VIDEO else CSID_AUDIO if type_id == m.MessageType.AUDIO else CSID_DATA
        self.connection.send_raw(type_id, payload, stream_id=stream_id, timestamp=timestamp, chunk_stream_id=csid)

    # -- state, as the relay may ask it --------------------------------------

    def publish_pending(self, stream_id: int) -> bool:
        """A publish waits for ``accept_publish`` or ``reject_publish`` (not withdrawn)."""
        return self._stream_state(stream_id) is _NetStream.PUBLISH_PENDING

    def play_pending(self, stream_id: int) -> bool:
        return self._stream_state(stream_id) is _NetStream.PLAY_PENDING

    def publishing_streams(self) -> list[tuple[int, str]]:
        return [(sid, s.path) for sid, s in self._streams.items() if s.state is _NetStream.PUBLISHING]

    def playing_streams(self) -> list[tuple[int, str]]:
        return [(sid, s.path) for sid, s in self._streams.items() if s.state is _NetStream.PLAYING]

    # -- the dispatchers: the only code that changes a state ----------------------

    def _fire_connection(self, input_: _In, *args: Any) -> None:
        state = self._state
        entry = _NETCONNECTION_ROWS[state].get(input_)
        if entry is None:
            raise _no_entry(self, _SERVER_LOCAL, state, input_, f"{input_.value} {state.value}", f"{input_.value} command")
        handler, next_state = entry
        if handler is not None:
            handler(self, *args)
        self._state = next_state

    def _fire_stream(self, stream_id: int, input_: _In, *args: Any) -> None:
        stream = self._streams.get(stream_id)
        state = _ABSENT if stream is None else stream.state
        entry = _NETSTREAM_ROWS[state].get(input_)
        if entry is None:
            what = f"{input_.value} on stream {stream_id}, {state.value}"
            raise _no_entry(self, _SERVER_LOCAL, state, input_, what, f"message stream {stream_id}")
        handler, next_state = entry
        if next_state is state:  # the per-message case: media on a publishing stream
            if handler is not None:  # never on an absent stream: nothing to act on
                handler(self, stream, *args)
            return
        if stream is None:
            stream = self._streams[stream_id] = _StreamState(stream_id)
        if handler is not None:
            handler(self, stream, *args)
        if next_state is _ABSENT:
            del self._streams[stream_id]
        else:
            stream.state = next_state

    def _stream_state(self, stream_id: int) -> _NetStream:
        stream = self._streams.get(stream_id)
        return _ABSENT if stream is None else stream.state

    # -- NetConnection handlers -------------------------------------------------

    def _on_command(self, event: MessageReceived, events: list) -> None:
        body: m.Command = event.body
        self._fire_connection(_SERVER_COMMANDS.get(body.name, _In.UNKNOWN_COMMAND), body, event.stream_id, events)

    def _cmd_connect(self, body: m.Command, stream_id: int, events: list) -> None:
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

    def _accept_connect(self) -> None:
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

    def _reject_connect(self, description: str) -> None:
        self._send_command("_error", self._connect_transaction, None, _status("error", Status.CONNECT_REJECTED, description))

    def _cmd_create_stream(self, body: m.Command, stream_id: int, events: list) -> None:
        if len(self._streams) >= self.MAX_STREAMS:
            raise SessionError(f"more than {self.MAX_STREAMS} streams on one connection", where="createStream")
        new_id = self._next_stream_id
        self._next_stream_id += 1
        self._fire_stream(new_id, _In.CREATED)
        self._send_command("_result", body.transaction_id, None, new_id)

    def _cmd_publish(self, body: m.Command, stream_id: int, events: list) -> None:
        # ffmpeg and librtmp always createStream first; FMS answers a publish on any other stream with an error too.
        name = body.args[0] if body.args and isinstance(body.args[0], str) else ""
        publish_type = body.args[1] if len(body.args) > 1 and isinstance(body.args[1], str) else "live"
        try:
            parsed, query = parse_stream_path(self.app or "", name)
        except BadStreamName as error:
            self._fire_stream(stream_id, _In.PUBLISH_BAD_NAME, str(error), events)
            return
        self._fire_stream(stream_id, _In.PUBLISH, PublishRequested(stream_id, name, parsed.full, publish_type, query), events)

    def _cmd_play(self, body: m.Command, stream_id: int, events: list) -> None:
        name = body.args[0] if body.args and isinstance(body.args[0], str) else ""
        try:
            parsed, query = parse_stream_path(self.app or "", name)
        except BadStreamName as error:
            self._fire_stream(stream_id, _In.PLAY_BAD_NAME, str(error), events)
            return
        self._fire_stream(stream_id, _In.PLAY, PlayRequested(stream_id, name, parsed.full, query), events)

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
        for stream in list(self._streams.values()):
            if not name or stream.name == name:
                self._fire_stream(stream.stream_id, _In.FC_UNPUBLISH, events)

    def _cmd_delete_stream(self, body: m.Command, stream_id: int, events: list) -> None:
        target = body.args[0] if body.args and isinstance(body.args[0], (int, float)) else stream_id
        if not isinstance(target, int):
            # AMF numbers are doubles: NaN, infinities and fractions name no stream.
            if not (math.isfinite(target) and target == int(target)):
                return
            target = int(target)
        self._fire_stream(target, _In.DELETE_STREAM, events)

    def _cmd_close_stream(self, body: m.Command, stream_id: int, events: list) -> None:
        self._fire_stream(stream_id, _In.CLOSE_STREAM, events)

    def _cmd_get_stream_length(self, body: m.Command, stream_id: int, events: list) -> None:
        if body.transaction_id:
            self._send_command("_result", body.transaction_id, None, 0)

    def _cmd_unknown(self, body: m.Command, stream_id: int, events: list) -> None:
        events.append(UnhandledCommand(body.name, stream_id))

    def _on_unknown(self, event: MessageReceived, events: list) -> None:
        raise MessageError(
            f"unknown message type {event.body.type_id}",
            where=f"chunk stream {event.chunk_stream_id}, message stream {event.stream_id}",
        )

    # -- NetStream handlers ---------------------------------------------------------

    def _publish_requested(self, stream: _StreamState, request: PublishRequested, events: list) -> None:
        stream.name, stream.path = request.name, request.path
        events.append(request)

    def _play_requested(self, stream: _StreamState, request: PlayRequested, events: list) -> None:
        stream.name, stream.path = request.name, request.path
        events.append(request)

    def _publish_bad_name(self, stream: _StreamState, reason: str, events: list) -> None:
        self._on_status(stream.stream_id, "error", Status.PUBLISH_BAD_NAME, f"Bad stream name: {reason}.")
        events.append(RequestRefused(stream.stream_id, "publish", reason))

    def _play_bad_name(self, stream: _StreamState, reason: str, events: list) -> None:
        self._on_status(stream.stream_id, "error", Status.PLAY_STREAM_NOT_FOUND, f"Bad stream name: {reason}.")
        events.append(RequestRefused(stream.stream_id, "play", reason))

    def _publish_in_use(self, stream: _StreamState, request: object, events: list) -> None:
        self._on_status(stream.stream_id, "error", Status.PUBLISH_BAD_NAME, "Stream already in use on this connection.")

    def _accept_publish(self, stream: _StreamState) -> None:
        self.connection.send(m.StreamBegin(stream.stream_id))
        self._on_status(stream.stream_id, "status", Status.PUBLISH_START, f"{stream.name} is now published.")

    def _accept_play(self, stream: _StreamState) -> None:
        stream_id = stream.stream_id
        c = self.connection
        c.send(m.StreamIsRecorded(stream_id))
        c.send(m.StreamBegin(stream_id))
        self._on_status(stream_id, "status", Status.PLAY_RESET, f"Playing and resetting {stream.name}.")
        self._on_status(stream_id, "status", Status.PLAY_START, f"Started playing {stream.name}.")
        c.send(m.Data(("|RtmpSampleAccess", True, True)), stream_id=stream_id, chunk_stream_id=CSID_DATA)

    def _reject(self, stream: _StreamState, code: str, description: str) -> None:
        self._on_status(stream.stream_id, "error", code, description)

    def _notify_play_end(self, stream: _StreamState, description: str) -> None:
        self.connection.send(m.StreamEOF(stream.stream_id))
        self._on_status(stream.stream_id, "status", Status.PLAY_UNPUBLISH_NOTIFY, description)

    def _end_publish(self, stream: _StreamState, events: list) -> None:
        events.append(PublishEnded(stream.stream_id, stream.path))
        self._on_status(stream.stream_id, "status", Status.UNPUBLISH_SUCCESS, f"{stream.name} is now unpublished.")

    def _end_play(self, stream: _StreamState, events: list) -> None:
        events.append(PlayEnded(stream.stream_id, stream.path))

    # -- data and media --------------------------------------------------------

    def _on_data(self, stream: _StreamState, event: MessageReceived, events: list) -> None:
        values = list(event.body.values)
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            kept = sanitize_metadata(values[1])
            events.append(MetadataReceived(event.stream_id, event.timestamp, kept.metadata, kept.altered))

    def _on_media(self, stream: _StreamState, event: MediaReceived, events: list) -> None:
        events.append(event)  # the connection made the value; a publishing stream passes it on

    def _on_aggregate(self, stream: _StreamState, event: MessageReceived, events: list) -> None:
        """FLV tags bundled into one message (FMS and some encoders send them): unbundled."""
        try:
            inners = m.split_aggregate(event.body.payload, event.timestamp, stream_id=event.stream_id)
        except MessageError as error:
            # Media, not the connection's control: a broken bundle costs its frames only.
            events.append(MessageDropped(m.MessageType.AGGREGATE, event.stream_id, str(error)))
            return
        for inner in inners:
            if inner.type_id in (m.MessageType.AUDIO, m.MessageType.VIDEO):
                events.append(MediaReceived(event.stream_id, MediaMessage.of(inner.type_id, inner.timestamp, inner.payload)))
            elif inner.type_id == m.MessageType.DATA_AMF0:
                try:
                    body = m.decode_body(inner.type_id, inner.payload, self.connection.config.amf)
                except MessageError as error:
                    events.append(MessageDropped(inner.type_id, event.stream_id, str(error)))
                    continue
                self._on_data(stream, MessageReceived(body, inner.timestamp, event.stream_id, event.chunk_stream_id), events)

    # -- helpers -----------------------------------------------------------------

    def _send_command(self, name: str, transaction_id: float, command_object: Any, *args: Any, stream_id: int = 0) -> None:
        csid = CSID_COMMAND if stream_id == 0 else CSID_STREAM_COMMAND
        self.connection.send(m.Command(name, transaction_id, command_object, args), stream_id=stream_id, chunk_stream_id=csid)

    def _on_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._send_command("onStatus", 0, None, _status(level, code, description), stream_id=stream_id)


_SERVER_HANDLERS = {
    m.Command: ServerSession._on_command,
    m.Unknown: ServerSession._on_unknown,
}

S = ServerSession
C = _NetConnection
N = _NetStream

#: The NetConnection: what the peer may ask before and after connect, and the relay's answer to connect.
_NETCONNECTION: dict = {
    (C.NEW, _In.CONNECT): (S._cmd_connect, C.CONNECT_PENDING),
    (C.CONNECT_PENDING, _In.ACCEPT_CONNECT): (S._accept_connect, C.CONNECTED),
    (C.CONNECT_PENDING, _In.REJECT_CONNECT): (S._reject_connect, C.REJECTED),
}
for _state in (C.CONNECT_PENDING, C.CONNECTED):
    # Clients wait for connect's _result; one that sends createStream before it is served all the same.
    _NETCONNECTION[(_state, _In.CREATE_STREAM)] = (S._cmd_create_stream, _state)
    _NETCONNECTION[(_state, _In.PUBLISH)] = (S._cmd_publish, _state)
    _NETCONNECTION[(_state, _In.PLAY)] = (S._cmd_play, _state)
for _state in C:
    # Harmless in any state, as nginx-rtmp answers them.
    _NETCONNECTION[(_state, _In.RELEASE_STREAM)] = (S._cmd_release_stream, _state)
    _NETCONNECTION[(_state, _In.FC_PUBLISH)] = (S._cmd_fc_publish, _state)
    _NETCONNECTION[(_state, _In.FC_UNPUBLISH)] = (S._cmd_fc_unpublish, _state)
    _NETCONNECTION[(_state, _In.CLOSE_STREAM)] = (S._cmd_close_stream, _state)
    _NETCONNECTION[(_state, _In.DELETE_STREAM)] = (S._cmd_delete_stream, _state)
    _NETCONNECTION[(_state, _In.GET_STREAM_LENGTH)] = (S._cmd_get_stream_length, _state)
    _NETCONNECTION[(_state, _In.IGNORED_COMMAND)] = (None, _state)
    _NETCONNECTION[(_state, _In.UNKNOWN_COMMAND)] = (S._cmd_unknown, _state)

#: One NetStream, from createStream to deleteStream.
_NETSTREAM: dict = {
    (N.ABSENT, _In.CREATED): (None, N.IDLE),
    (N.IDLE, _In.PUBLISH): (S._publish_requested, N.PUBLISH_PENDING),
    (N.IDLE, _In.PUBLISH_BAD_NAME): (S._publish_bad_name, N.IDLE),
    (N.IDLE, _In.PLAY): (S._play_requested, N.PLAY_PENDING),
    (N.IDLE, _In.PLAY_BAD_NAME): (S._play_bad_name, N.IDLE),
    (N.PUBLISH_PENDING, _In.ACCEPT_PUBLISH): (S._accept_publish, N.PUBLISHING),
    (N.PUBLISH_PENDING, _In.REJECT_PUBLISH): (S._reject, N.IDLE),
    (N.PLAY_PENDING, _In.ACCEPT_PLAY): (S._accept_play, N.PLAYING),
    (N.PLAY_PENDING, _In.REJECT_PLAY): (S._reject, N.IDLE),
    (N.PUBLISHING, _In.MEDIA): (S._on_media, N.PUBLISHING),
    (N.PUBLISHING, _In.DATA): (S._on_data, N.PUBLISHING),
    (N.PUBLISHING, _In.AGGREGATE): (S._on_aggregate, N.PUBLISHING),
    (N.PUBLISHING, _In.FC_UNPUBLISH): (S._end_publish, N.IDLE),
    (N.PLAYING, _In.END_PLAY): (S._notify_play_end, N.PLAYING),
    (N.ABSENT, _In.CLOSE_STREAM): (None, N.ABSENT),
    (N.ABSENT, _In.DELETE_STREAM): (None, N.ABSENT),
}
for _state in (N.IDLE, N.PUBLISH_PENDING, N.PUBLISHING, N.PLAY_PENDING, N.PLAYING):
    _end = S._end_publish if _state is N.PUBLISHING else S._end_play if _state is N.PLAYING else None
    _NETSTREAM[(_state, _In.CLOSE_STREAM)] = (_end, N.IDLE)
    _NETSTREAM[(_state, _In.DELETE_STREAM)] = (_end, N.ABSENT)
    if _state is not N.IDLE:
        # A second publish on a busy stream is refused and the stream goes on; a second play is ignored.
        _NETSTREAM[(_state, _In.PUBLISH)] = (S._publish_in_use, _state)
        _NETSTREAM[(_state, _In.PUBLISH_BAD_NAME)] = (S._publish_in_use, _state)
        _NETSTREAM[(_state, _In.PLAY)] = (None, _state)
        _NETSTREAM[(_state, _In.PLAY_BAD_NAME)] = (None, _state)
    if _state is not N.PUBLISHING:
        _NETSTREAM[(_state, _In.FC_UNPUBLISH)] = (None, _state)
for _state in N:
    if _state is not N.PUBLISHING:
        # Media before the publish is accepted, or after unpublish: nowhere to go.
        _NETSTREAM[(_state, _In.MEDIA)] = (None, _state)
        _NETSTREAM[(_state, _In.DATA)] = (None, _state)
        _NETSTREAM[(_state, _In.AGGREGATE)] = (None, _state)
    if _state is not N.PLAYING:
        # The registry ends a play whose player may have left meanwhile: nothing to tell.
        _NETSTREAM[(_state, _In.END_PLAY)] = (None, _state)
del S, C, N, _state, _end

_NETCONNECTION_ROWS = _rows(_NETCONNECTION)
_NETSTREAM_ROWS = _rows(_NETSTREAM)


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


class _ClientState(_Symbol):
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"
    CREATING_STREAM = "creating-stream"
    PUBLISHING_PENDING = "publish-pending"
    PUBLISHING = "publishing"
    FAILED = "failed"
    CLOSED = "closed"


class _ClientInput(_Symbol):
    """What the upstream says to a publishing client, and what our code asks of it."""

    HANDSHAKE_DONE = "the handshake's end"
    CONNECT_RESULT = "connect's _result"
    PREPARE_RESULT = "releaseStream's or FCPublish's _result"
    CREATE_STREAM_RESULT = "createStream's _result"
    OTHER_RESULT = "a _result to no request of ours"
    #: An _error to connect, createStream or publish: publishing depends on them.
    FATAL_ERROR = "an _error to connect, createStream or publish"
    #: Some servers answer releaseStream or FCPublish with _error: harmless.
    MINOR_ERROR = "an _error to another request"
    PUBLISH_START = "onStatus NetStream.Publish.Start"
    STATUS_ERROR = "an onStatus of level error"
    STATUS = "an onStatus"
    OTHER_COMMAND = "another command"
    # our code's calls (values are the methods' names)
    SEND_MEDIA = "send_media"
    SEND_METADATA = "send_metadata"
    CLOSE = "close"


_CLIENT_LOCAL = frozenset({_ClientInput.SEND_MEDIA, _ClientInput.SEND_METADATA, _ClientInput.CLOSE})


class ClientSession:
    """Publishes one stream to an upstream RTMP server, the way ffmpeg does; one table, ``_CLIENT``."""

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
            if type(event) is MessageReceived:
                if type(event.body) is m.Command:
                    body = event.body
                    classify = _CLIENT_COMMANDS.get(body.name)
                    if classify is None:
                        self._fire(_ClientInput.OTHER_COMMAND, body, events)
                    else:
                        classify(self, body, events)
            elif type(event) is HandshakeCompleted:
                self._fire(_ClientInput.HANDSHAKE_DONE, None, events)
        return events

    def data_to_send(self) -> bytes:
        return self.connection.data_to_send()

    @property
    def publishing(self) -> bool:
        return self.state is _ClientState.PUBLISHING

    def send_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        """Only while ``publishing``. The forwarding hot path: the table's row is read
        in line (sending changes no state, so there is nothing to dispatch)."""
        if _ClientInput.SEND_MEDIA not in _CLIENT_ROWS[self.state]:
            raise self._no_entry(_ClientInput.SEND_MEDIA, None)
        csid = CSID_VIDEO if type_id == m.MessageType.VIDEO else CSID_AUDIO if type_id == m.MessageType.AUDIO else CSID_DATA
        self.connection.send_raw(type_id, payload, stream_id=self.stream_id, timestamp=timestamp, chunk_stream_id=csid)

    def send_metadata(self, metadata: dict, timestamp: int = 0) -> None:
        """Only while ``publishing``."""
        self._fire(_ClientInput.SEND_METADATA, metadata, timestamp)

    def close(self) -> None:
        """Unpublish politely, as ffmpeg does on exit (from any state; sends nothing unless publishing)."""
        self._fire(_ClientInput.CLOSE)

    # -- the dispatcher: the only code that changes the state ---------------------

    def _fire(self, input_: _ClientInput, *args: Any) -> None:
        entry = _CLIENT_ROWS[self.state].get(input_)
        if entry is None:
            raise self._no_entry(input_, args[0] if args else None)
        handler, next_state = entry
        if handler is not None:
            handler(self, *args)
        self.state = next_state

    def _no_entry(self, input_: _ClientInput, body: object) -> Exception:
        where = f"{body.name} command, transaction {body.transaction_id!r}" if type(body) is m.Command else "handshake"
        return _no_entry(self, _CLIENT_LOCAL, self.state, input_, f"{input_.value} while {self.state.value}", where)

    # -- what the upstream's commands are --------------------------------------

    def _on_result(self, body: m.Command, events: list) -> None:
        self._fire(_RESULT_INPUTS.get(body.transaction_id, _ClientInput.OTHER_RESULT), body, events)

    def _on_error(self, body: m.Command, events: list) -> None:
        fatal = body.transaction_id in (self._TX_CONNECT, self._TX_CREATE_STREAM, self._TX_PUBLISH)
        self._fire(_ClientInput.FATAL_ERROR if fatal else _ClientInput.MINOR_ERROR, body, events)

    def _on_status(self, body: m.Command, events: list) -> None:
        info = body.args[0] if body.args and isinstance(body.args[0], dict) else {}
        if info.get("code") == Status.PUBLISH_START:
            self._fire(_ClientInput.PUBLISH_START, body, events)
        elif info.get("level") == "error":
            self._fire(_ClientInput.STATUS_ERROR, body, events)
        else:
            self._fire(_ClientInput.STATUS, body, events)

    # -- handlers ------------------------------------------------------------------

    def _send_connect(self, body: None, events: list) -> None:
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

    def _connected(self, body: m.Command, events: list) -> None:
        events.append(Connected())
        self._send_command("releaseStream", self._TX_RELEASE, self.stream_name)
        self._send_command("FCPublish", self._TX_FCPUBLISH, self.stream_name)
        self._send_command("createStream", self._TX_CREATE_STREAM)

    def _publish(self, body: m.Command, events: list) -> None:
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

    def _started(self, body: m.Command, events: list) -> None:
        events.append(PublishStarted(self.stream_id or 0))

    def _fail(self, body: m.Command, events: list) -> None:
        info = body.args[0] if body.args and isinstance(body.args[0], dict) else {}
        events.append(PublishFailed(str(info.get("code", body.name)), str(info.get("description", ""))))

    def _send_metadata(self, metadata: dict, timestamp: int) -> None:
        self.connection.send(
            m.Data(("@setDataFrame", "onMetaData", ECMAArray(metadata))),
            stream_id=self.stream_id,
            timestamp=timestamp,
            chunk_stream_id=CSID_DATA,
        )

    def _unpublish(self) -> None:
        self._send_command("FCUnpublish", 0, self.stream_name)
        self._send_command("deleteStream", 0, self.stream_id)

    def _send_command(self, name: str, transaction_id: float, *args: Any, stream_id: int = 0) -> None:
        csid = CSID_COMMAND if stream_id == 0 else CSID_STREAM_COMMAND
        self.connection.send(m.Command(name, transaction_id, None, args), stream_id=stream_id, chunk_stream_id=csid)


_CLIENT_COMMANDS = {"_result": ClientSession._on_result, "_error": ClientSession._on_error, "onStatus": ClientSession._on_status}
_RESULT_INPUTS = {
    ClientSession._TX_CONNECT: _ClientInput.CONNECT_RESULT,
    ClientSession._TX_RELEASE: _ClientInput.PREPARE_RESULT,
    ClientSession._TX_FCPUBLISH: _ClientInput.PREPARE_RESULT,
    ClientSession._TX_CREATE_STREAM: _ClientInput.CREATE_STREAM_RESULT,
}

K = ClientSession
A = _ClientState
I = _ClientInput

#: ffmpeg's publishing sequence: connect, releaseStream + FCPublish + createStream, publish.
_CLIENT: dict = {
    (A.HANDSHAKE, I.HANDSHAKE_DONE): (K._send_connect, A.CONNECTING),
    (A.CONNECTING, I.CONNECT_RESULT): (K._connected, A.CREATING_STREAM),
    (A.CREATING_STREAM, I.CREATE_STREAM_RESULT): (K._publish, A.PUBLISHING_PENDING),
    (A.PUBLISHING_PENDING, I.PUBLISH_START): (K._started, A.PUBLISHING),
    (A.PUBLISHING, I.SEND_MEDIA): (None, A.PUBLISHING),
    (A.PUBLISHING, I.SEND_METADATA): (K._send_metadata, A.PUBLISHING),
    (A.PUBLISHING, I.CLOSE): (K._unpublish, A.CLOSED),
    (A.HANDSHAKE, I.CLOSE): (None, A.CLOSED),
}
for _state in (A.CONNECTING, A.CREATING_STREAM, A.PUBLISHING_PENDING, A.PUBLISHING):
    _CLIENT[(_state, I.FATAL_ERROR)] = (K._fail, A.FAILED)
    _CLIENT[(_state, I.STATUS_ERROR)] = (K._fail, A.FAILED)
    for _input in (I.MINOR_ERROR, I.OTHER_RESULT, I.STATUS, I.OTHER_COMMAND):
        _CLIENT[(_state, _input)] = (None, _state)
    if _state is not A.PUBLISHING_PENDING:
        # A server may say Publish.Start for FCPublish too, or twice.
        _CLIENT[(_state, I.PUBLISH_START)] = (None, _state)
    if _state is not A.CONNECTING:
        # Answered before or after createStream's, whatever the server's order.
        _CLIENT[(_state, I.PREPARE_RESULT)] = (None, _state)
    if _state is not A.PUBLISHING:
        _CLIENT[(_state, I.CLOSE)] = (None, A.CLOSED)
for _state in (A.FAILED, A.CLOSED):
    # Whatever the server still says before the connection goes (onFCUnpublish, a last
    # _result or onStatus) is ignored: the publish is over.
    for _input in I:
        if _input not in _CLIENT_LOCAL:
            _CLIENT[(_state, _input)] = (None, _state)
    _CLIENT[(_state, I.CLOSE)] = (None, A.CLOSED)
del K, A, I, _state, _input

_CLIENT_ROWS = _rows(_CLIENT)
