"""One RTMP connection below the NetConnection layer: handshake, chunk stream
and protocol control, as a state machine fed bytes.

It answers what RTMP says a peer must answer without asking anyone: it follows
Set Chunk Size and Abort, acknowledges received bytes once the peer's window is
full, answers Ping Requests and replies to Set Peer Bandwidth. Everything it
receives is still reported, so the session above can see it.
"""

from __future__ import annotations

import enum

import attrs

from rtmprelay.errors import ChunkStreamError, MessageError
from rtmprelay.media.message import MediaMessage
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp.chunks import (
    DEFAULT_MAX_CHUNK_STREAMS,
    DEFAULT_MAX_IN_PROGRESS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PEER_CHUNK_SIZE,
    DEFAULT_MIN_PEER_CHUNK_SIZE,
    MAX_MESSAGE_LENGTH,
    ChunkReader,
    ChunkWriter,
    default_chunk_stream_id,
)
from rtmprelay.rtmp.handshake import ClientHandshake, ServerHandshake

#: What we ask peers to use and use ourselves; ffmpeg and nginx use 4096 too.
DEFAULT_OUT_CHUNK_SIZE = 4096
DEFAULT_WINDOW_ACK_SIZE = 2_500_000


class Role(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


@attrs.frozen
class HandshakeCompleted:
    scheme: str


@attrs.frozen
class MessageReceived:
    body: m.Body
    timestamp: int
    stream_id: int
    chunk_stream_id: int


@attrs.frozen
class MediaReceived:
    """Audio (type 8) or video (type 9) on message stream ``stream_id``: ``message`` is the
    media value every sink gets, made and classified here once (``media.message``), where
    the chunk reader completes the message. A connection made with ``media_values`` gives
    these instead of ``MessageReceived``; the server session passes them on for a
    publishing stream only."""

    stream_id: int
    message: MediaMessage

    @property
    def type_id(self) -> int:
        return self.message.type_id

    @property
    def timestamp(self) -> int:
        return self.message.timestamp

    @property
    def payload(self) -> bytes:
        return self.message.payload


@attrs.frozen
class MessageDropped:
    """A data message (onMetaData, onTextData, ...) that could not be read or was over its
    bounds: dropped, the connection goes on. ``reason`` names what and where."""

    type_id: int
    stream_id: int
    reason: str


def _message_size(instance, attribute, value: int) -> None:
    if not 1 <= value <= MAX_MESSAGE_LENGTH:
        raise ValueError(f"{attribute.name} {value} is outside 1..{MAX_MESSAGE_LENGTH} (the 24-bit length field)")


@attrs.frozen
class ConnectionConfig:
    """What one connection accepts from its peer (every bound has a default a real peer never reaches)."""

    max_message_size: int = attrs.field(default=DEFAULT_MAX_MESSAGE_SIZE, validator=_message_size)
    max_peer_chunk_size: int = DEFAULT_MAX_PEER_CHUNK_SIZE
    min_peer_chunk_size: int = DEFAULT_MIN_PEER_CHUNK_SIZE
    max_chunk_streams: int = DEFAULT_MAX_CHUNK_STREAMS
    max_messages_in_progress: int = DEFAULT_MAX_IN_PROGRESS
    #: Declared bytes of all messages in progress; None: twice ``max_message_size``.
    max_pending_bytes: int | None = None
    amf: m.AmfLimits = m.DEFAULT_AMF_LIMITS
    out_chunk_size: int = DEFAULT_OUT_CHUNK_SIZE
    handshake_scheme: str = "digest"  # client side only


class Connection:
    """Handshake, then chunks; ``receive_data`` returns events, ``data_to_send`` bytes."""

    def __init__(self, role: Role, config: ConnectionConfig = ConnectionConfig(), *, media_values: bool = False) -> None:
        self.role = role
        self.config = config
        #: Audio and video as ``MediaReceived`` (the media value) rather than ``MessageReceived``.
        self.media_values = media_values
        self._handshake = (
            ServerHandshake() if role is Role.SERVER else ClientHandshake(scheme=config.handshake_scheme)
        )
        self._reader = ChunkReader(
            max_message_size=config.max_message_size,
            max_in_progress=config.max_messages_in_progress,
            max_chunk_streams=config.max_chunk_streams,
            max_pending_bytes=config.max_pending_bytes,
            max_peer_chunk_size=config.max_peer_chunk_size,
            min_peer_chunk_size=config.min_peer_chunk_size,
        )
        if media_values:
            self._reader.makers = {m.MessageType.AUDIO: _media_received, m.MessageType.VIDEO: _media_received}
        self._writer = ChunkWriter()
        #: What is to be sent, as the pieces it was made in (handshake blocks, chunk
        #: headers, payloads and shared chunked forms): joined once, or never when
        #: the adapter gathers them into one ``sendmsg``.
        self._outbound: list[bytes] = []
        self._handshake_done = False
        # Acknowledgement bookkeeping: the peer tells us its window with WindowAckSize.
        self._peer_window: int | None = None
        self._bytes_acknowledged = 0
        self._our_window: int | None = None
        self.bytes_sent = 0

    # -- inputs ------------------------------------------------------------

    def initiate(self) -> None:
        """Client side: queue C0+C1."""
        if self.role is Role.CLIENT:
            self._outbound.append(self._handshake.initiate())

    def receive_data(self, data: bytes) -> list:
        events: list = []
        if not self._handshake_done:
            reply = self._handshake.receive_data(data)
            if reply:
                self._outbound.append(reply)
            if not self._handshake.done:
                return events
            self._handshake_done = True
            events.append(HandshakeCompleted(scheme=getattr(self._handshake, "scheme", "digest")))
            data = self._handshake.leftover
            if not data:
                return events
        amf = self.config.amf
        media = m.MEDIA_BODIES
        for raw in self._reader.feed(data):
            if type(raw) is MediaReceived:  # made by the reader (media_values)
                events.append(raw)
                continue
            body_type = media.get(raw.type_id)
            if body_type is not None:
                # Audio and video, nearly every message: no decoding, no protocol control.
                events.append(MessageReceived(body_type(raw.payload), raw.timestamp, raw.stream_id, raw.chunk_stream_id))
                continue
            try:
                body = m.decode_body(raw.type_id, raw.payload, amf)
            except MessageError as error:
                if raw.type_id not in m.DATA_TYPES:
                    raise
                # Metadata is not worth a connection: nginx-rtmp and SRS skip what they cannot read.
                events.append(MessageDropped(raw.type_id, raw.stream_id, str(error)))
                continue
            self._handle_control(body)
            events.append(MessageReceived(body, raw.timestamp, raw.stream_id, raw.chunk_stream_id))
        self._maybe_acknowledge()
        return events

    # -- outputs -----------------------------------------------------------

    def send(self, body, *, stream_id: int = 0, timestamp: int = 0, chunk_stream_id: int | None = None) -> None:
        type_id, payload = m.encode_body(body)
        self.send_raw(type_id, payload, stream_id=stream_id, timestamp=timestamp, chunk_stream_id=chunk_stream_id)
        if type(body) is m.SetChunkSize:
            self._writer.chunk_size = body.size
        elif type(body) is m.WindowAckSize:
            self._our_window = body.size

    def send_raw(
        self, type_id: int, payload: bytes, *, stream_id: int = 0, timestamp: int = 0, chunk_stream_id: int | None = None
    ) -> None:
        """The forwarding hot path: no body object, one header per message."""
        csid = chunk_stream_id if chunk_stream_id is not None else default_chunk_stream_id(type_id)
        self._outbound += self._writer.write_fields(type_id, payload, timestamp & 0xFFFFFFFF, stream_id, csid)

    def data_to_send(self) -> bytes:
        """What is to be sent, as one bytes object (one copy of it, none when it is one piece)."""
        return b"".join(self.parts_to_send())

    def parts_to_send(self) -> list[bytes]:
        """What is to be sent, in pieces to be written in order (``writeSequence``,
        ``sendmsg``): nothing copied. Pieces may be shared with other connections."""
        out = self._outbound
        if not out:
            return []
        self._outbound = []
        self.bytes_sent += sum(map(len, out))
        return out

    @property
    def handshake_done(self) -> bool:
        return self._handshake_done

    @property
    def bytes_received(self) -> int:
        return self._reader.bytes_received

    @property
    def message_budget(self) -> int | None:
        """Messages the peer may still send (see ``ChunkReader.message_budget``); None: no bound."""
        return self._reader.message_budget

    @message_budget.setter
    def message_budget(self, value: int | None) -> None:
        self._reader.message_budget = value

    @property
    def out_chunk_size(self) -> int:
        return self._writer.chunk_size

    # -- protocol control --------------------------------------------------

    def _handle_control(self, body) -> None:
        handler = _CONTROL_HANDLERS.get(type(body))
        if handler is not None:
            handler(self, body)

    def _on_window_ack_size(self, body: m.WindowAckSize) -> None:
        if body.size <= 0:
            raise ChunkStreamError(f"window acknowledgement size {body.size}", where="WindowAckSize message")
        self._peer_window = body.size

    def _on_set_peer_bandwidth(self, body: m.SetPeerBandwidth) -> None:
        # The spec asks the receiver to answer with its window when it changes.
        if body.size != self._our_window and body.size > 0:
            self.send(m.WindowAckSize(body.size))

    def _on_ping_request(self, body: m.PingRequest) -> None:
        self.send(m.PingResponse(body.timestamp))

    def _maybe_acknowledge(self) -> None:
        if self._peer_window is None:
            return
        received = self._reader.bytes_received
        if received - self._bytes_acknowledged >= self._peer_window:
            self._bytes_acknowledged = received
            self.send(m.Acknowledgement(received & 0xFFFFFFFF))


def _media_received(type_id: int, payload: bytes, timestamp: int, stream_id: int, chunk_stream_id: int) -> MediaReceived:
    """The chunk reader's maker for audio and video (``media_values``): the media value, made once."""
    return MediaReceived(stream_id, MediaMessage.of(type_id, timestamp, payload))


_CONTROL_HANDLERS = {
    m.WindowAckSize: Connection._on_window_ack_size,
    m.SetPeerBandwidth: Connection._on_set_peer_bandwidth,
    m.PingRequest: Connection._on_ping_request,
}
