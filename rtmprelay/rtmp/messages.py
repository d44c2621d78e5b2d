"""RTMP message bodies as values, and their encoding to and from payload bytes.

A body carries only what its payload holds; the timestamp, message stream id
and chunk stream id travel beside it (see ``chunks.Message``).

CONTRACT (fixed; other modules code against it):
    encode_body(body) -> tuple[int, bytes]      # (type_id, payload)
    decode_body(type_id: int, payload: bytes) -> Body   # dispatch dict on type_id
Unknown type ids decode to ``Unknown``; malformed payloads raise ``MessageError``
(what, where).
"""

from __future__ import annotations

import enum
import struct
from typing import Any, Callable

import attrs
import construct as c

from rtmprelay.errors import AMFError, MessageError
from rtmprelay.rtmp import amf0
from rtmprelay.rtmp.chunks import Message

__all__ = [
    "DATA_TYPES",
    "MEDIA_BODIES",
    "DEFAULT_AMF_LIMITS",
    "Abort",
    "AmfLimits",
    "Acknowledgement",
    "Aggregate",
    "Audio",
    "Body",
    "Command",
    "Data",
    "MessageType",
    "PeerBandwidthLimit",
    "PingRequest",
    "PingResponse",
    "SetBufferLength",
    "SetChunkSize",
    "SetPeerBandwidth",
    "StreamBegin",
    "StreamDry",
    "StreamEOF",
    "StreamIsRecorded",
    "Unknown",
    "UnknownUserControl",
    "UserControlEvent",
    "Video",
    "WindowAckSize",
    "decode_body",
    "encode_body",
    "split_aggregate",
]


class MessageType(enum.IntEnum):
    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


class UserControlEvent(enum.IntEnum):
    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class PeerBandwidthLimit(enum.IntEnum):
    HARD = 0
    SOFT = 1
    DYNAMIC = 2


# --- protocol control -------------------------------------------------------


@attrs.frozen
class SetChunkSize:
    size: int


@attrs.frozen
class Abort:
    chunk_stream_id: int


@attrs.frozen
class Acknowledgement:
    sequence_number: int


@attrs.frozen
class WindowAckSize:
    size: int


@attrs.frozen
class SetPeerBandwidth:
    size: int
    limit_type: int = PeerBandwidthLimit.DYNAMIC


# --- user control (type 4) --------------------------------------------------


@attrs.frozen
class StreamBegin:
    stream_id: int


@attrs.frozen
class StreamEOF:
    stream_id: int


@attrs.frozen
class StreamDry:
    stream_id: int


@attrs.frozen
class SetBufferLength:
    stream_id: int
    buffer_ms: int


@attrs.frozen
class StreamIsRecorded:
    stream_id: int


@attrs.frozen
class PingRequest:
    timestamp: int


@attrs.frozen
class PingResponse:
    timestamp: int


@attrs.frozen
class UnknownUserControl:
    event: int
    data: bytes


# --- commands, data, media --------------------------------------------------


@attrs.frozen
class Command:
    """A NetConnection/NetStream command: name, transaction id, command object, args.

    ``amf3`` records that it arrived as type 17 so a reply can mirror it; we
    always *send* AMF0 (type 20), which every client accepts.
    """

    name: str
    transaction_id: float
    command_object: Any = None
    args: tuple = ()
    amf3: bool = False


@attrs.frozen
class Data:
    """A data message (``@setDataFrame``, ``onMetaData``, ...) as its AMF values."""

    values: tuple
    amf3: bool = False


@attrs.frozen
class Audio:
    payload: bytes


@attrs.frozen
class Video:
    payload: bytes


@attrs.frozen
class Aggregate:
    payload: bytes


@attrs.frozen
class Unknown:
    type_id: int
    payload: bytes


Body = Any  # one of the classes above


# --- codec --------------------------------------------------------------------
#
# Protocol control (types 1, 2, 3, 5, 6) and user control (type 4) are small
# fixed layouts that arrive a few times a minute, so they are declared with
# construct: the cold path, where a declaration reads best. Commands and data
# are AMF0 values (``rtmprelay.rtmp.amf0``). Media payloads pass through.
# Both directions dispatch on dicts: type id -> decoder, body class -> encoder.
#
# Control messages with bytes beyond their layout decode (the extra bytes are
# ignored, as ffmpeg and nginx-rtmp do); shorter ones raise ``MessageError``.

_Decoder = Callable[[bytes], Body]
_Encoder = Callable[[Body], "tuple[int, bytes]"]

_U32 = 0xFFFFFFFF

_CONTROL_LAYOUTS: dict[type, tuple[MessageType, c.Construct]] = {
    SetChunkSize: (
        MessageType.SET_CHUNK_SIZE,
        # RTMP 1.0, 5.4.1: 31 bits, the top bit must be 0, and 0 is no size.
        c.Struct("size" / c.Int32ub, c.Check(lambda this: 1 <= this.size <= 0x7FFFFFFF)),
    ),
    Abort: (MessageType.ABORT, c.Struct("chunk_stream_id" / c.Int32ub)),
    Acknowledgement: (MessageType.ACKNOWLEDGEMENT, c.Struct("sequence_number" / c.Int32ub)),
    WindowAckSize: (MessageType.WINDOW_ACK_SIZE, c.Struct("size" / c.Int32ub)),
    SetPeerBandwidth: (
        MessageType.SET_PEER_BANDWIDTH,
        c.Struct("size" / c.Int32ub, "limit_type" / c.Int8ub),
    ),
}

_STREAM_EVENT = c.Struct("stream_id" / c.Int32ub)
_PING_EVENT = c.Struct("timestamp" / c.Int32ub)

_USER_CONTROL_LAYOUTS: dict[type, tuple[UserControlEvent, c.Construct]] = {
    StreamBegin: (UserControlEvent.STREAM_BEGIN, _STREAM_EVENT),
    StreamEOF: (UserControlEvent.STREAM_EOF, _STREAM_EVENT),
    StreamDry: (UserControlEvent.STREAM_DRY, _STREAM_EVENT),
    SetBufferLength: (
        UserControlEvent.SET_BUFFER_LENGTH,
        c.Struct("stream_id" / c.Int32ub, "buffer_ms" / c.Int32ub),
    ),
    StreamIsRecorded: (UserControlEvent.STREAM_IS_RECORDED, _STREAM_EVENT),
    PingRequest: (UserControlEvent.PING_REQUEST, _PING_EVENT),
    PingResponse: (UserControlEvent.PING_RESPONSE, _PING_EVENT),
}
_USER_CONTROL_EVENT = c.Int16ub
_USER_CONTROL = c.Struct(
    "event" / _USER_CONTROL_EVENT,
    "data"
    / c.Switch(
        c.this.event,
        {int(event): layout for event, layout in _USER_CONTROL_LAYOUTS.values()},
        default=c.GreedyBytes,
    ),
)
_USER_CONTROL_CLASSES: dict[int, tuple[type, int]] = {
    int(event): (cls, layout.sizeof()) for cls, (event, layout) in _USER_CONTROL_LAYOUTS.items()
}


_LABELS = {
    MessageType.SET_CHUNK_SIZE: "set chunk size message",
    MessageType.ABORT: "abort message",
    MessageType.ACKNOWLEDGEMENT: "acknowledgement message",
    MessageType.USER_CONTROL: "user control message",
    MessageType.WINDOW_ACK_SIZE: "window acknowledgement size message",
    MessageType.SET_PEER_BANDWIDTH: "set peer bandwidth message",
    MessageType.DATA_AMF3: "AMF3 data message",
    MessageType.COMMAND_AMF3: "AMF3 command message",
    MessageType.DATA_AMF0: "data message",
    MessageType.COMMAND_AMF0: "command message",
    MessageType.AGGREGATE: "aggregate message",
}


def _label(type_id: int) -> str:
    """What error messages call a message of ``type_id``."""
    return _LABELS.get(type_id) or f"type {type_id} message"


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in attrs.fields(cls))


def _one_line(error: Exception) -> str:
    """construct's messages span lines; ours are one line."""
    return " ".join(str(error).split())


def _build(layout: c.Construct, values: dict, body: Body) -> bytes:
    try:
        return layout.build(values)
    except c.ConstructError as error:
        raise ValueError(f"cannot encode {body!r}: {_one_line(error)}") from None


def _control_decoder(cls: type, type_id: int, layout: c.Construct) -> _Decoder:
    names = _field_names(cls)
    size = layout.sizeof()
    label = _label(type_id)

    def decode(payload: bytes) -> Body:
        if len(payload) < size:
            raise MessageError(
                f"{label} of {len(payload)} bytes (needs {size})", f"{label}, offset {len(payload)}"
            )
        try:
            parsed = layout.parse(payload)
        except c.ConstructError as error:
            # Only the Check in a layout can fail once the length is right.
            raise MessageError(
                f"{label} with a value out of range: {bytes(payload[:size]).hex(' ')}",
                f"{label}, offset 0",
            ) from error
        return cls(*(parsed[name] for name in names))

    return decode


def _control_encoder(type_id: int, layout: c.Construct) -> _Encoder:
    def encode(body: Body) -> tuple[int, bytes]:
        return type_id, _build(layout, attrs.asdict(body, recurse=False), body)

    return encode


def _decode_user_control(payload: bytes) -> Body:
    label = _label(MessageType.USER_CONTROL)
    if len(payload) < 2:
        raise MessageError(
            f"{label} of {len(payload)} bytes (needs 2)", f"{label}, offset {len(payload)}"
        )
    event = payload[0] << 8 | payload[1]
    known = _USER_CONTROL_CLASSES.get(event)
    if known is None:
        return UnknownUserControl(event, bytes(payload[2:]))
    cls, size = known
    if len(payload) < 2 + size:
        raise MessageError(
            f"{label} ({UserControlEvent(event).name}) of {len(payload)} bytes (needs {2 + size})",
            f"{label}, offset {len(payload)}",
        )
    data = _USER_CONTROL.parse(payload).data
    return cls(*(data[name] for name in _field_names(cls)))


def _user_control_encoder(event: int) -> _Encoder:
    def encode(body: Body) -> tuple[int, bytes]:
        values = {"event": event, "data": attrs.asdict(body, recurse=False)}
        return MessageType.USER_CONTROL, _build(_USER_CONTROL, values, body)

    return encode


def _encode_unknown_user_control(body: UnknownUserControl) -> tuple[int, bytes]:
    event = _build(_USER_CONTROL_EVENT, body.event, body)
    return MessageType.USER_CONTROL, event + bytes(body.data)


# -- AMF: commands and data


def _where(label: str, amf_where: str | None, skipped: int) -> str:
    """An AMF error's ``offset N`` (in the AMF bytes) as an offset in the payload."""
    prefix = "offset "
    if amf_where and amf_where.startswith(prefix) and amf_where[len(prefix) :].isdigit():
        return f"{label}, offset {int(amf_where[len(prefix):]) + skipped}"
    return f"{label}, {amf_where}" if amf_where else label


@attrs.frozen
class AmfLimits:
    """What decoding one command or data message may cost.

    A message of AMF is decoded on the reactor thread: a 64 KiB one of
    tiny values takes ~15 ms in Python, a 16 MiB one seconds. Real commands
    and onMetaData are under 2 KiB and a few dozen values.
    """

    max_bytes: int = 64 * 1024
    max_values: int = 4096
    max_depth: int = 16


DEFAULT_AMF_LIMITS = AmfLimits()


def _amf_values(payload: bytes, type_id: int, *, format_byte: bool, limits: AmfLimits = DEFAULT_AMF_LIMITS) -> list:
    """The AMF0 values of a payload; types 15 and 17 first have a 0x00 format byte."""
    label = _label(type_id)
    if len(payload) > limits.max_bytes:
        raise MessageError(
            f"{label} of {len(payload)} bytes is above the limit of {limits.max_bytes}", f"{label}, offset 0"
        )
    data: bytes | memoryview = payload
    skipped = 0
    if format_byte:
        if not payload:
            raise MessageError(f"empty {label} (no format byte)", f"{label}, offset 0")
        if payload[0] != 0:
            raise MessageError(
                f"{label} with format byte 0x{payload[0]:02x} (expected 0x00)", f"{label}, offset 0"
            )
        data = memoryview(payload)[1:]
        skipped = 1
    try:
        return amf0.decode_all(data, max_depth=limits.max_depth, max_values=limits.max_values)
    except AMFError as error:
        raise MessageError(f"{label}: {error.what}", _where(label, error.where, skipped)) from error


def _command(payload: bytes, type_id: int, *, amf3: bool, limits: AmfLimits) -> Command:
    values = _amf_values(payload, type_id, format_byte=amf3, limits=limits)
    label = _label(type_id)
    offset = 1 if amf3 else 0
    if not values or not isinstance(values[0], str):
        found = type(values[0]).__name__ if values else "nothing"
        raise MessageError(f"{label} without a string name (found {found})", f"{label}, offset {offset}")
    name = values[0]
    transaction_id = values[1] if len(values) > 1 else 0.0
    if isinstance(transaction_id, bool) or not isinstance(transaction_id, (int, float)):
        raise MessageError(
            f"{label} {name!r} with a transaction id of type {type(transaction_id).__name__}",
            f"{label}, after the name",
        )
    command_object = values[2] if len(values) > 2 else None
    return Command(name, float(transaction_id), command_object, tuple(values[3:]), amf3)


def _decode_command_amf0(payload: bytes, limits: AmfLimits) -> Command:
    return _command(payload, MessageType.COMMAND_AMF0, amf3=False, limits=limits)


def _decode_command_amf3(payload: bytes, limits: AmfLimits) -> Command:
    return _command(payload, MessageType.COMMAND_AMF3, amf3=True, limits=limits)


def _decode_data_amf0(payload: bytes, limits: AmfLimits) -> Data:
    return Data(tuple(_amf_values(payload, MessageType.DATA_AMF0, format_byte=False, limits=limits)))


def _decode_data_amf3(payload: bytes, limits: AmfLimits) -> Data:
    return Data(tuple(_amf_values(payload, MessageType.DATA_AMF3, format_byte=True, limits=limits)), amf3=True)


# Replies go out as AMF0 (types 20 and 18) whatever ``amf3`` says, as the
# ``Command`` docstring promises: every client accepts AMF0.
def _encode_command(body: Command) -> tuple[int, bytes]:
    values = (body.name, body.transaction_id, body.command_object, *body.args)
    return MessageType.COMMAND_AMF0, amf0.encode_values(values)


def _encode_data(body: Data) -> tuple[int, bytes]:
    return MessageType.DATA_AMF0, amf0.encode_values(body.values)


# -- the dispatch tables

_DECODERS: dict[int, _Decoder] = {
    **{
        type_id: _control_decoder(cls, type_id, layout)
        for cls, (type_id, layout) in _CONTROL_LAYOUTS.items()
    },
    MessageType.USER_CONTROL: _decode_user_control,
    MessageType.AUDIO: lambda payload: Audio(bytes(payload)),
    MessageType.VIDEO: lambda payload: Video(bytes(payload)),
    MessageType.AGGREGATE: lambda payload: Aggregate(bytes(payload)),
}

#: Audio and video: the payload as it is, in the body of its type (what ``decode_body`` gives,
#: for a caller on the per-message path that wants no decoding call).
MEDIA_BODIES: dict[int, type] = {MessageType.AUDIO: Audio, MessageType.VIDEO: Video}

#: Messages of AMF values: what decoding them may cost is bounded (``AmfLimits``).
_AMF_DECODERS: dict[int, Callable[[bytes, AmfLimits], Body]] = {
    MessageType.DATA_AMF3: _decode_data_amf3,
    MessageType.COMMAND_AMF3: _decode_command_amf3,
    MessageType.DATA_AMF0: _decode_data_amf0,
    MessageType.COMMAND_AMF0: _decode_command_amf0,
}
#: Data messages (onMetaData, onTextData, ...): a bad one can be dropped without losing the stream.
DATA_TYPES = frozenset((MessageType.DATA_AMF0, MessageType.DATA_AMF3))

_ENCODERS: dict[type, _Encoder] = {
    **{cls: _control_encoder(type_id, layout) for cls, (type_id, layout) in _CONTROL_LAYOUTS.items()},
    **{cls: _user_control_encoder(event) for cls, (event, _) in _USER_CONTROL_LAYOUTS.items()},
    UnknownUserControl: _encode_unknown_user_control,
    Audio: lambda body: (MessageType.AUDIO, body.payload),
    Video: lambda body: (MessageType.VIDEO, body.payload),
    Aggregate: lambda body: (MessageType.AGGREGATE, body.payload),
    Command: _encode_command,
    Data: _encode_data,
    Unknown: lambda body: (body.type_id, body.payload),
}


def encode_body(body: Body) -> tuple[int, bytes]:
    """The message type id and payload bytes of ``body``.

    Raises ``TypeError`` for something that is not a body and ``ValueError``
    for values that do not fit their fields (a chunk size of 0, ...).
    """
    encoder = _ENCODERS.get(type(body))
    if encoder is None:
        raise TypeError(f"not a message body: {body!r}")
    type_id, payload = encoder(body)
    return int(type_id), payload


def decode_body(type_id: int, payload: bytes, amf_limits: AmfLimits = DEFAULT_AMF_LIMITS) -> Body:
    """The body of a message of ``type_id``; ``Unknown`` for types we do not read.

    Malformed payloads, and AMF messages over ``amf_limits``, raise
    ``MessageError(what, where)``, ``where`` naming the message kind and the
    payload offset.
    """
    decoder = _DECODERS.get(type_id)
    if decoder is not None:
        return decoder(payload)
    amf_decoder = _AMF_DECODERS.get(type_id)
    if amf_decoder is not None:
        return amf_decoder(payload, amf_limits)
    return Unknown(type_id, bytes(payload))


# -- aggregate messages

# An FLV tag header: type(1) size(3) | timestamp(3) timestamp-extension(1),
# then a 3-byte stream id that is always 0 and that we skip.
_FLV_TAG_HEAD = struct.Struct(">II")
_FLV_TAG_HEADER_SIZE = 11
_FLV_BACK_POINTER_SIZE = 4


def split_aggregate(
    payload: bytes, timestamp: int, *, stream_id: int = 0, chunk_stream_id: int = 0
) -> list[Message]:
    """The messages inside an aggregate (type 22) message.

    The payload is a run of FLV tags, each followed by its 4-byte back pointer
    (the last one may be missing). Tag timestamps are re-based so that the
    first tag gets the aggregate message's ``timestamp`` and the others keep
    their distance from it; all get ``stream_id`` and ``chunk_stream_id``.
    """
    label = _label(MessageType.AGGREGATE)
    view = memoryview(payload)
    end = len(view)
    offset = 0
    shift = None
    out: list[Message] = []
    unpack = _FLV_TAG_HEAD.unpack_from
    while offset < end:
        if end - offset < _FLV_TAG_HEADER_SIZE:
            have = end - offset
            raise MessageError(
                f"{label} ends inside an FLV tag header ({have} of {_FLV_TAG_HEADER_SIZE} bytes)",
                f"{label}, offset {offset}",
            )
        type_size, raw_time = unpack(view, offset)
        size = type_size & 0xFFFFFF
        start = offset + _FLV_TAG_HEADER_SIZE
        stop = start + size
        if stop > end:
            raise MessageError(
                f"{label}: FLV tag of {size} bytes runs {stop - end} bytes past the end",
                f"{label}, offset {offset}",
            )
        tag_time = raw_time >> 8 | (raw_time & 0xFF) << 24
        if shift is None:
            shift = (timestamp - tag_time) & _U32
        # The top bits of the type byte are FLV's reserved and filter bits.
        type_id = (type_size >> 24) & 0x1F
        data = bytes(view[start:stop])
        out.append(Message(type_id, data, (tag_time + shift) & _U32, stream_id, chunk_stream_id))
        left = end - stop
        if 0 < left < _FLV_BACK_POINTER_SIZE:
            raise MessageError(
                f"{label} ends inside a back pointer ({left} of {_FLV_BACK_POINTER_SIZE} bytes)",
                f"{label}, offset {stop}",
            )
        offset = stop + _FLV_BACK_POINTER_SIZE if left else stop
    return out
