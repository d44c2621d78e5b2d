"""The RTMP chunk stream: messages cut into chunks, and chunks joined into messages.

Sans-IO: ``ChunkReader.feed(data)`` takes bytes and returns the messages they
complete; ``ChunkWriter.write(message)`` returns the bytes to send
(``write_parts`` the same as a first header and a rest that is shared between
connections, see ``SharedChunks``). Neither touches a socket or a clock, and
neither imports Twisted.

This is the hot path (every audio and video byte passes through it), so headers
are read with precompiled ``struct.Struct`` objects straight out of the input
buffer, and nothing is re-sliced per chunk. A message whose chunks are all in
one ``feed`` (its first chunk, then its type 3 continuations with nothing
between them: what every sender does) is sliced out and joined with one copy;
otherwise chunk data is copied into a per-chunk-stream ``bytearray`` through a
``memoryview`` as it arrives.

A chunk is a basic header (format and chunk stream id), a message header of 11,
7, 3 or 0 bytes for formats 0, 1, 2 and 3, an optional 4-byte extended
timestamp, then at most ``chunk_size`` bytes of the message::

    fmt 0: timestamp(3, absolute) length(3) type(1) stream id(4, little-endian)
    fmt 1: timestamp delta(3) length(3) type(1)
    fmt 2: timestamp delta(3)
    fmt 3: nothing; everything as in the last header on this chunk stream

Basic header forms (RTMP 1.0, 5.3.1.1), pinned by tests against ffmpeg,
librtmp and nginx-rtmp, which all agree:

* one byte: chunk stream ids 2 to 63 in the low six bits;
* two bytes: low bits 0, then ``csid - 64`` (ids 64 to 319);
* three bytes: low bits 1, then ``csid - 64`` *low byte first*, high byte second
  (ids 64 to 65599).

Timestamps, and the two points where implementations differ:

* A 3-byte timestamp field of 0xFFFFFF means a 4-byte extended timestamp
  follows; it is absolute for fmt 0 and a delta for fmt 1 and 2.
* A type 3 chunk that *starts* a message adds the previous delta on its chunk
  stream. After a type 0 header that delta is the type 0 timestamp itself: the
  spec says so (5.3.1.2.4) and ffmpeg's ``rtmppkt.c`` (it keeps the raw
  timestamp field and adds it for every non-type-0 header) and librtmp (it
  keeps the field and clears ``m_hasAbsTimestamp``) do exactly that, so the
  reader does too. nginx-rtmp instead takes the delta after a type 0 header to
  be 0. The writer therefore never relies on either reading: after a type 0
  header with a nonzero timestamp it sends a type 2 header next, never a type
  3 (see ``ChunkWriter``).
* If the header of a message carried an extended timestamp, a type 3 chunk
  that starts a *new* message carries one too (it is that message's delta):
  ffmpeg, librtmp and SRS all read it. A type 3 chunk that *continues* a
  message repeats the 4 bytes in the form librtmp, Flash/FMS, nginx-rtmp
  (``play_time_fix``) and current ffmpeg send, but older ffmpeg did not repeat
  them. SRS tells the two apart by looking at the 4 bytes; the reader does the
  same: if they equal the extended timestamp of the message being continued
  they are consumed, otherwise they are chunk data. (A continuation whose data
  happens to begin with exactly those 4 bytes is ambiguous on the wire; it is
  read as the repeated form. When fewer than 4 bytes have arrived and they
  match so far, the reader waits for the next ones.) The writer always repeats
  them, as every sender in tests/data does: ffmpeg, librtmp, GStreamer's rtmp2
  and nginx-rtmp.

Set Chunk Size (type 1) and Abort (type 2) change how the following bytes are
read, so the reader applies them itself at the byte where they complete, then
still returns them so the layers above see them.
"""

from __future__ import annotations

import struct
from typing import Callable

import attrs

from rtmprelay.errors import ChunkStreamError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_CHUNK_STREAM_ID",
    "ChunkReader",
    "ChunkWriter",
    "Message",
    "SHARED_CHUNKS",
    "SharedChunks",
    "default_chunk_stream_id",
]

DEFAULT_CHUNK_SIZE = 128
#: Set Chunk Size carries 31 bits; the top bit must be 0.
MAX_CHUNK_SIZE = 0x7FFFFFFF
MIN_CHUNK_STREAM_ID = 2
MAX_CHUNK_STREAM_ID = 65599
#: The message length field is 24 bits.
MAX_MESSAGE_LENGTH = 0xFFFFFF
#: The largest message accepted. Far above a real frame (a 1080p IDR is a few
#: hundred kB, a 4K one 1-2 MB) and well under what the 24-bit field allows;
#: nginx-rtmp's ``max_message`` is 1 MB.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: How many chunk streams may have a message half-received at once. Real peers
#: interleave two or three (audio, video, a command).
DEFAULT_MAX_IN_PROGRESS = 8
#: How many chunk stream ids one connection may use. Real peers use a handful
#: below 10; nginx-rtmp refuses ids from 32 up (its ``max_streams``).
DEFAULT_MAX_CHUNK_STREAMS = 64
#: Bound on the declared lengths of all messages in progress on one connection:
#: what a peer can make us hold without completing anything.
DEFAULT_MAX_PENDING_BYTES = 2 * DEFAULT_MAX_MESSAGE_SIZE
#: The largest chunk size a peer may set. A chunk larger than any message we
#: accept changes nothing, so this is a sanity bound: nginx-rtmp's is 10 MB.
DEFAULT_MAX_PEER_CHUNK_SIZE = 10 * 1024 * 1024
#: The smallest chunk size a peer may set (SRS's bound too). Every chunk costs a
#: header's parsing: at a chunk size of 1, 64 KiB of input is 32,768 chunks, a
#: thousand times the work of the same bytes at 128, the size every client
#: starts with and nobody lowers.
DEFAULT_MIN_PEER_CHUNK_SIZE = DEFAULT_CHUNK_SIZE

_EXTENDED = 0xFFFFFF
_U32 = 0xFFFFFFFF
_TYPE_SET_CHUNK_SIZE = 1
_TYPE_ABORT = 2

# Read from the last byte of the basic header: that byte plus the 3-byte
# timestamp is one big-endian u32 (mask off the top byte), and length(3) plus
# type(1) is the next one.
_BE_U32_U32 = struct.Struct(">II")
_BE_U32 = struct.Struct(">I")
_LE_U32 = struct.Struct("<I")
_unpack_be_u32_u32 = _BE_U32_U32.unpack_from
_unpack_be_u32 = _BE_U32.unpack_from
_unpack_le_u32 = _LE_U32.unpack_from
_pack_be_u32 = _BE_U32.pack
# The writer packs timestamp(3) + length(3) + type(1) as the low 7 bytes of a u64.
_pack_be_u64 = struct.Struct(">Q").pack
_pack_le_u32 = _LE_U32.pack


@attrs.frozen
class Message:
    """One RTMP message as the chunk stream carries it.

    ``timestamp`` is absolute in milliseconds and wraps at 2**32;
    ``chunk_stream_id`` 0 asks ``ChunkWriter`` for ``default_chunk_stream_id``.
    """

    type_id: int
    payload: bytes
    timestamp: int = 0
    stream_id: int = 0
    chunk_stream_id: int = 0


# --- chunk stream ids ---------------------------------------------------------

#: ffmpeg's chunk stream ids (libavformat/rtmppkt.h, ``enum RTMPChannel``):
#: 2 for protocol and user control, 3 for commands, 4 for audio and for data
#: (``@setDataFrame``), 6 for video. What the captures in tests/data show the
#: others use:
#:
#: ===============  =======  ========  =======  =====  =====
#: sender           control  commands  data     audio  video
#: ===============  =======  ========  =======  =====  =====
#: ffmpeg           2        3 (8)     4        4      6
#: librtmp          2        3 (4, 8)  4        4      4
#: GStreamer rtmp2  2        3         4        5      6
#: nginx-rtmp       2        3 (5)     5        6      7
#: ===============  =======  ========  =======  =====  =====
#:
#: In brackets: ffmpeg sends ``publish``/``play`` on 8, librtmp ``publish`` on
#: 4 and ``play`` on 8, nginx-rtmp ``onStatus`` on 5. That choice needs more
#: than the type id, so a caller who wants it passes the id explicitly.
#: nginx-rtmp refuses ids from its ``max_streams`` (32 by default) up, so
#: everything here stays small.
_DEFAULT_CHUNK_STREAM_IDS = {
    1: 2,  # Set Chunk Size
    2: 2,  # Abort
    3: 2,  # Acknowledgement
    4: 2,  # User Control
    5: 2,  # Window Acknowledgement Size
    6: 2,  # Set Peer Bandwidth
    8: 4,  # Audio
    9: 6,  # Video
    15: 4,  # Data (AMF3)
    16: 3,  # Shared Object (AMF3)
    17: 3,  # Command (AMF3)
    18: 4,  # Data (AMF0)
    19: 3,  # Shared Object (AMF0)
    20: 3,  # Command (AMF0)
    22: 6,  # Aggregate
}
_COMMAND_CHUNK_STREAM_ID = 3


def default_chunk_stream_id(type_id: int) -> int:
    """The chunk stream id ffmpeg would use for a message of ``type_id``."""
    return _DEFAULT_CHUNK_STREAM_IDS.get(type_id, _COMMAND_CHUNK_STREAM_ID)


def _basic_header(fmt: int, csid: int) -> bytes:
    if MIN_CHUNK_STREAM_ID <= csid <= 63:
        return bytes((fmt << 6 | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= MAX_CHUNK_STREAM_ID:
        rest = csid - 64
        return bytes((fmt << 6 | 1, rest & 0xFF, rest >> 8))
    raise ValueError(f"chunk stream id {csid} is outside 2..{MAX_CHUNK_STREAM_ID}")


# --- reading ------------------------------------------------------------------


class _InStream:
    """What one incoming chunk stream remembers between chunks."""

    __slots__ = (
        "csid",
        "timestamp",
        "delta",
        "length",
        "type_id",
        "stream_id",
        "extended",
        "ext_value",
        "payload",
        "remaining",
    )

    def __init__(self, csid: int) -> None:
        self.csid = csid
        self.timestamp = 0  # absolute timestamp of the current (or last) message
        self.delta = 0  # what a type 3 header starting a message adds
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False  # the last timestamp field was 0xFFFFFF
        self.ext_value = 0  # the 4-byte value that came with it
        self.payload: bytearray | None = None  # not None while a message is in progress
        self.remaining = 0  # bytes of that message still to come


class ChunkReader:
    """Joins chunks into messages.

    ``feed(data)`` may be given any slicing of the stream (whole, byte by byte,
    random splits) and returns the same messages. It keeps no more unparsed
    input than one incomplete chunk header (at most 18 bytes): chunk data goes
    straight into the message it belongs to. Each message in progress is
    bounded by ``max_message_size`` and at most ``max_in_progress`` chunk
    streams may have one at a time, at most ``max_chunk_streams`` chunk
    stream ids may be used, the declared lengths of the messages in progress
    add up to at most ``max_pending_bytes``, and the peer may set a chunk
    size of at most ``max_peer_chunk_size``.

    Errors raise ``ChunkStreamError`` whose ``where`` names the stream byte at
    which the offending chunk header starts (counting from the first byte fed)
    and its chunk stream. After an error the reader is in an undefined state:
    close the connection.
    """

    def __init__(
        self,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        max_in_progress: int = DEFAULT_MAX_IN_PROGRESS,
        max_chunk_streams: int = DEFAULT_MAX_CHUNK_STREAMS,
        max_pending_bytes: int | None = None,
        max_peer_chunk_size: int = DEFAULT_MAX_PEER_CHUNK_SIZE,
        min_peer_chunk_size: int = 1,
    ) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {chunk_size} is outside 1..{MAX_CHUNK_SIZE}")
        self._chunk_size = chunk_size
        self.max_message_size = max_message_size
        self.max_in_progress = max_in_progress
        self.max_chunk_streams = max_chunk_streams
        self.max_pending_bytes = 2 * max_message_size if max_pending_bytes is None else max_pending_bytes
        self.max_peer_chunk_size = min(max_peer_chunk_size, MAX_CHUNK_SIZE)
        self.min_peer_chunk_size = max(1, min_peer_chunk_size)
        self._pending_bytes = 0  # declared lengths of the messages in progress
        #: Messages that may still complete; None: no bound. The adapter refills it
        #: from the clock (a token bucket): a flood of tiny messages is refused here,
        #: before it costs anything above the chunk stream.
        self.message_budget: int | None = None
        #: Every byte ever given to ``feed``.
        self.bytes_received = 0
        self._streams: dict[int, _InStream] = {}
        self._in_progress = 0
        #: What ``feed`` makes of a completed message of a type id, called as
        #: ``Message`` is (type id, payload, timestamp, stream id, chunk stream id);
        #: ``Message`` for the types not here. The connection has the media value
        #: made here, where the message completes, with no ``Message`` between.
        self.makers: dict[int, Callable[[int, bytes, int, int, int], object]] = {}
        self._pending = b""  # an incomplete chunk header from the last feed
        self._body: _InStream | None = None  # set while inside a chunk's data
        self._chunk_left = 0  # data bytes of that chunk still to come
        self._chunk_start = 0  # stream offset of the current chunk's header

    @property
    def chunk_size(self) -> int:
        """The peer's chunk size, as its Set Chunk Size messages set it."""
        return self._chunk_size

    def feed(self, data: bytes) -> list:
        """Take the next bytes of the stream; return the messages they complete (``Message``,
        or what ``makers`` makes of them)."""
        size = len(data)
        if not size:
            return []
        pending = self._pending
        base = self.bytes_received - len(pending)  # stream offset of buf[0]
        self.bytes_received += size
        buf = pending + data if pending else data
        mv = memoryview(buf)
        end = len(buf)
        pos = 0
        out: list[Message] = []
        streams = self._streams
        unpack2 = _unpack_be_u32_u32
        unpack_be = _unpack_be_u32
        while True:
            cs = self._body
            if cs is not None:
                # Inside a chunk's data: copy what is there into its message.
                left = self._chunk_left
                avail = end - pos
                if avail < left:
                    if avail:
                        cs.payload += mv[pos:end]
                        cs.remaining -= avail
                        self._chunk_left = left - avail
                    pos = end
                    break
                cs.payload += mv[pos : pos + left]
                pos += left
                self._body = None
                remaining = cs.remaining - left
                cs.remaining = remaining
                if not remaining:
                    self._complete(cs, out)
                continue

            if pos >= end:
                break
            # -- basic header
            b0 = buf[pos]
            fmt = b0 >> 6
            csid = b0 & 0x3F
            hpos = pos + 1
            if csid < 2:
                if csid == 0:
                    if hpos >= end:
                        break
                    csid = 64 + buf[hpos]
                    hpos += 1
                else:
                    if hpos + 2 > end:
                        break
                    csid = 64 + buf[hpos] + (buf[hpos + 1] << 8)
                    hpos += 2
            cs = streams.get(csid)
            if cs is None and fmt:
                raise self._unknown_stream(fmt, csid, base + pos)

            # -- message header; nothing is changed until all of it is here
            if fmt == 3:
                if cs.payload is not None:
                    # Continues a message: maybe a repeated extended timestamp.
                    if cs.extended:
                        avail = end - hpos
                        if avail >= 4:
                            if unpack_be(buf, hpos)[0] == cs.ext_value:
                                hpos += 4
                        elif bytes(mv[hpos:end]) == _pack_be_u32(cs.ext_value)[:avail]:
                            break  # cannot tell yet: wait for more bytes
                    self._chunk_start = base + pos
                    pos = hpos
                    left = cs.remaining
                    self._chunk_left = left if left < self._chunk_size else self._chunk_size
                    self._body = cs
                    continue
                # Starts a message with the previous header and delta.
                if cs.extended:
                    if hpos + 4 > end:
                        break
                    delta = unpack_be(buf, hpos)[0]
                    hpos += 4
                    cs.ext_value = delta
                else:
                    delta = cs.delta
                cs.delta = delta
                cs.timestamp = (cs.timestamp + delta) & _U32
            elif fmt == 0:
                if hpos + 11 > end:
                    break
                field, length_type = unpack2(buf, hpos - 1)
                field &= _EXTENDED
                stream_id = _unpack_le_u32(buf, hpos + 7)[0]
                hpos += 11
                extended = field == _EXTENDED
                if extended:
                    if hpos + 4 > end:
                        break
                    field = unpack_be(buf, hpos)[0]
                    hpos += 4
                length = length_type >> 8
                if cs is None:
                    cs = self._new_stream(csid, length, base + pos)
                else:
                    self._check_header(cs, fmt, length, base + pos)
                cs.timestamp = field
                cs.delta = field
                cs.extended = extended
                cs.ext_value = field
                cs.length = length
                cs.type_id = length_type & 0xFF
                cs.stream_id = stream_id
            elif fmt == 1:
                if hpos + 7 > end:
                    break
                field, length_type = unpack2(buf, hpos - 1)
                field &= _EXTENDED
                hpos += 7
                extended = field == _EXTENDED
                if extended:
                    if hpos + 4 > end:
                        break
                    field = unpack_be(buf, hpos)[0]
                    hpos += 4
                length = length_type >> 8
                self._check_header(cs, fmt, length, base + pos)
                cs.timestamp = (cs.timestamp + field) & _U32
                cs.delta = field
                cs.extended = extended
                cs.ext_value = field
                cs.length = length
                cs.type_id = length_type & 0xFF
            else:  # fmt 2
                if hpos + 3 > end:
                    break
                field = unpack_be(buf, hpos - 1)[0] & _EXTENDED
                hpos += 3
                extended = field == _EXTENDED
                if extended:
                    if hpos + 4 > end:
                        break
                    field = unpack_be(buf, hpos)[0]
                    hpos += 4
                self._check_header(cs, fmt, cs.length, base + pos)
                cs.timestamp = (cs.timestamp + field) & _U32
                cs.delta = field
                cs.extended = extended
                cs.ext_value = field

            # -- a new message starts here
            self._chunk_start = base + pos
            pos = hpos
            length = cs.length
            if not length:
                cs.payload = bytearray()
                self._in_progress += 1
                self._complete(cs, out)
                continue
            if self._in_progress >= self.max_in_progress:
                raise ChunkStreamError(
                    f"more than {self.max_in_progress} chunk streams with a message in progress",
                    self._where(self._chunk_start, csid),
                )
            if self._pending_bytes + length > self.max_pending_bytes:
                raise ChunkStreamError(
                    f"messages in progress would add up to {self._pending_bytes + length} bytes, "
                    f"above the limit of {self.max_pending_bytes}",
                    self._where(self._chunk_start, csid),
                )
            self._in_progress += 1
            self._pending_bytes += length
            chunk_size = self._chunk_size
            if length <= chunk_size:
                if end - pos >= length:
                    # The whole message is in this one chunk, and here: one copy.
                    cs.payload = buf[pos : pos + length]
                    cs.remaining = 0
                    pos += length
                    self._complete(cs, out)
                    continue
            elif csid < 64 and not cs.extended:
                # The whole message is here as its first chunk and type 3 continuations
                # straight after it (one-byte basic headers, no extended timestamp):
                # checked with one strided slice, joined with one copy. What the chunk
                # loop below would do, chunk by chunk, when nothing is interleaved.
                step = chunk_size + 1
                n = (length - 1) // chunk_size  # continuation chunks
                total = length + n
                if end - pos >= total and buf[pos + chunk_size : pos + total : step].count(0xC0 | csid) == n:
                    whole = mv[pos : pos + total]
                    cs.payload = b"".join([whole[i : i + chunk_size] for i in range(0, total, step)])
                    cs.remaining = 0
                    self._chunk_start = base + pos + n * step - 1  # the last chunk, as the loop names it
                    pos += total
                    self._complete(cs, out)
                    continue
            cs.payload = bytearray()
            cs.remaining = length
            self._chunk_left = length if length < chunk_size else chunk_size
            self._body = cs

        self._pending = bytes(mv[pos:end]) if pos < end else b""
        return out

    # -- helpers (off the per-chunk fast path, or once per message) --------

    @staticmethod
    def _where(offset: int, csid: int) -> str:
        return f"stream byte {offset}, chunk stream {csid}"

    def _unknown_stream(self, fmt: int, csid: int, offset: int) -> ChunkStreamError:
        return ChunkStreamError(
            f"unknown chunk stream id {csid} continuing a message "
            f"(a type {fmt} header before any type 0 header on it)",
            self._where(offset, csid),
        )

    def _new_stream(self, csid: int, length: int, offset: int) -> _InStream:
        if length > self.max_message_size:
            raise self._too_long(csid, length, offset)
        if len(self._streams) >= self.max_chunk_streams:
            raise ChunkStreamError(f"more than {self.max_chunk_streams} chunk stream ids", self._where(offset, csid))
        cs = self._streams[csid] = _InStream(csid)
        return cs

    def _check_header(self, cs: _InStream, fmt: int, length: int, offset: int) -> None:
        if cs.payload is not None:
            raise ChunkStreamError(
                f"type {fmt} header on chunk stream {cs.csid} while its message of "
                f"{cs.length} bytes is {cs.remaining} bytes short",
                self._where(offset, cs.csid),
            )
        if length > self.max_message_size:
            raise self._too_long(cs.csid, length, offset)

    def _too_long(self, csid: int, length: int, offset: int) -> ChunkStreamError:
        return ChunkStreamError(
            f"message length {length} is above the limit of {self.max_message_size} bytes",
            self._where(offset, csid),
        )

    def _complete(self, cs: _InStream, out: list[Message]) -> None:
        if self.message_budget is not None:
            self.message_budget -= 1
            if self.message_budget < 0:
                raise ChunkStreamError(
                    "messages arrive faster than the connection's message budget allows (a flood)",
                    self._where(self._chunk_start, cs.csid),
                )
        payload = bytes(cs.payload)
        cs.payload = None
        self._in_progress -= 1
        self._pending_bytes -= cs.length
        type_id = cs.type_id
        out.append(self.makers.get(type_id, Message)(type_id, payload, cs.timestamp, cs.stream_id, cs.csid))
        apply = _APPLY.get(type_id)
        if apply is not None:
            apply(self, payload, cs.csid)

    def _apply_set_chunk_size(self, payload: bytes, csid: int) -> None:
        where = self._where(self._chunk_start, csid)
        if len(payload) < 4:
            raise ChunkStreamError(f"Set Chunk Size message of {len(payload)} bytes (needs 4)", where)
        size = _unpack_be_u32(payload)[0]
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise ChunkStreamError(f"bad chunk size {size} (must be 1..{MAX_CHUNK_SIZE})", where)
        if size > self.max_peer_chunk_size:
            raise ChunkStreamError(f"chunk size {size} is above the limit of {self.max_peer_chunk_size}", where)
        if size < self.min_peer_chunk_size:
            raise ChunkStreamError(f"chunk size {size} is below the limit of {self.min_peer_chunk_size}", where)
        self._chunk_size = size

    def _apply_abort(self, payload: bytes, csid: int) -> None:
        if len(payload) < 4:
            raise ChunkStreamError(
                f"Abort message of {len(payload)} bytes (needs 4)", self._where(self._chunk_start, csid)
            )
        cs = self._streams.get(_unpack_be_u32(payload)[0])
        if cs is not None and cs.payload is not None:
            cs.payload = None
            cs.remaining = 0
            self._in_progress -= 1
            self._pending_bytes -= cs.length


_APPLY: dict[int, Callable[[ChunkReader, bytes, int], None]] = {
    _TYPE_SET_CHUNK_SIZE: ChunkReader._apply_set_chunk_size,
    _TYPE_ABORT: ChunkReader._apply_abort,
}


# --- writing ------------------------------------------------------------------

#: Shared chunked forms kept at once (see ``SharedChunks``). A message is written to
#: all its sinks one after another (the registry's fan-out loop), so a few suffice.
DEFAULT_SHARED_ENTRIES = 4
#: The largest chunked form kept: bigger ones are made per connection.
DEFAULT_SHARED_MAX_BYTES = 1024 * 1024


class SharedChunks:
    """The chunked form of recent payloads, made once for every connection that sends them.

    A message's chunks after its first header are the same on every connection
    with the same chunk size and chunk stream id, when the extended timestamp
    each repeats is the same too: the first chunk's data, then a type 3 basic
    header (plus the repeated extended timestamp) before each further chunk's
    data. Only the first header depends on what the connection last sent on
    that chunk stream. ``body(payload, chunk_size, continuation)`` returns that
    shared part, made on the first call and kept for the next ones.

    Entries are keyed by the payload object itself (its identity: the entry
    holds the payload, so its id cannot be reused while kept), the chunk size
    and the continuation header. At most ``entries`` are kept, replaced oldest
    first, and none larger than ``max_bytes``: memory stays under ``entries x
    max_bytes`` plus the payloads held. Not locked: used from one thread (the
    reactor's), and a race between threads would only cost a miss.
    """

    __slots__ = ("entries", "max_bytes", "_by_id", "_ring", "_next", "made", "reused")

    def __init__(self, entries: int = DEFAULT_SHARED_ENTRIES, max_bytes: int = DEFAULT_SHARED_MAX_BYTES) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        #: id(payload) -> (payload, chunk_size, continuation, body)
        self._by_id: dict[int, tuple] = {}
        #: The ids kept, in the order they are replaced.
        self._ring: list[int | None] = [None] * entries
        self._next = 0
        #: Chunked forms made, and made ones handed out again.
        self.made = 0
        self.reused = 0

    def body(self, payload: bytes, chunk_size: int, continuation: bytes) -> bytes:
        entry = self._by_id.get(id(payload))
        if entry is not None and entry[0] is payload and entry[1] == chunk_size and entry[2] == continuation:
            self.reused += 1
            return entry[3]
        body = _chunk_body(payload, chunk_size, continuation)
        self.made += 1
        if self.entries and len(body) <= self.max_bytes:
            ring, slot = self._ring, self._next
            old = ring[slot]
            if old is not None:
                self._by_id.pop(old, None)
            key = id(payload)
            if entry is not None:  # the same payload in another form: this one replaces it
                ring[ring.index(key)] = None
            self._by_id[key] = (payload, chunk_size, continuation, body)
            ring[slot] = key
            self._next = (slot + 1) % self.entries
        return body

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def held_bytes(self) -> int:
        """Bytes of the chunked forms kept (the payloads they hold are counted by their owners)."""
        return sum(len(entry[3]) for entry in self._by_id.values())


def _chunk_body(payload: bytes, chunk_size: int, continuation: bytes) -> bytes:
    """The payload cut into ``chunk_size`` pieces with ``continuation`` between them.

    One ``b"".join`` of ``memoryview`` slices and headers: one copy of the
    payload (bench/write_path.py times five ways; this one is the fastest at
    10 KB and within 5% of the fastest at 100 KB).
    """
    view = memoryview(payload)
    parts = [view[:chunk_size]]
    append = parts.append
    for start in range(chunk_size, len(payload), chunk_size):
        append(continuation)
        append(view[start : start + chunk_size])
    return b"".join(parts)


#: The cache every ``ChunkWriter`` shares unless given its own.
SHARED_CHUNKS = SharedChunks()


class _OutStream:
    """What the writer last told the peer about one chunk stream."""

    __slots__ = ("stream_id", "type_id", "length", "timestamp", "delta", "basic")

    def __init__(self, csid: int) -> None:
        self.stream_id = 0
        self.type_id = 0
        self.length = 0
        self.timestamp = 0
        #: The delta a type 3 header would add on the peer's side, or None when
        #: readers disagree about it (after a type 0 header, see the module doc).
        self.delta: int | None = None
        #: Basic headers for formats 0 to 3.
        self.basic = tuple(_basic_header(fmt, csid) for fmt in range(4))


class ChunkWriter:
    """Cuts messages into chunks with the most compact header each allows.

    Per chunk stream: type 0 the first time, when the message stream id
    changes or when the timestamp goes backwards; type 1 when the length or
    type changes; type 3 when the timestamp delta equals the one a type 3
    header would add on the peer's side; type 2 otherwise. After a type 0
    header with a nonzero timestamp the next message gets a type 2 header even
    if a type 3 would do under the spec's reading, because nginx-rtmp reads
    that type 3 differently (see the module docstring).

    Extended timestamps go in the header and are repeated in every type 3
    continuation chunk (the spec, librtmp and Flash form; ffmpeg, nginx-rtmp and
    this module's reader accept it).

    ``write_parts`` returns a message's chunks as two pieces, the first header
    and the rest; the rest of a message longer than one chunk comes from
    ``shared`` (a ``SharedChunks``, by default the module's ``SHARED_CHUNKS``),
    so a message sent on N connections with the same chunk size is cut and
    copied once, not N times. ``write`` joins the two.

    ``chunk_size`` may be changed between messages; send the Set Chunk Size
    message first, then change it.
    """

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE, *, shared: SharedChunks | None = None) -> None:
        self._streams: dict[int, _OutStream] = {}
        self.chunk_size = chunk_size
        self._shared = SHARED_CHUNKS if shared is None else shared

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    @chunk_size.setter
    def chunk_size(self, size: int) -> None:
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {size} is outside 1..{MAX_CHUNK_SIZE}")
        self._chunk_size = size

    def write(self, message: Message) -> bytes:
        """The chunks that carry ``message``."""
        header, body = self.write_parts(message)
        return header + body

    def write_parts(self, message: Message) -> tuple[bytes, bytes]:
        """The chunks that carry ``message``: its first header, then everything after it.

        The second piece is the payload itself when it fits in one chunk, else the
        shared chunked form (never to be changed: other connections send it too).
        """
        return self.write_fields(
            message.type_id, message.payload, message.timestamp, message.stream_id, message.chunk_stream_id
        )

    def write_fields(self, type_id: int, payload: bytes, timestamp: int, stream_id: int, chunk_stream_id: int) -> tuple[bytes, bytes]:
        """``write_parts`` of the message these fields make, without making it (the forwarding path)."""
        csid = chunk_stream_id or default_chunk_stream_id(type_id)
        if type(payload) is not bytes:
            payload = bytes(payload)  # the shared form is keyed by a bytes object's identity
        length = len(payload)
        if length > MAX_MESSAGE_LENGTH:
            raise ValueError(f"message of {length} bytes is above the 24-bit length field")
        if type_id & ~0xFF:
            raise ValueError(f"message type {type_id} does not fit in a byte")
        if stream_id & ~_U32:
            raise ValueError(f"message stream id {stream_id} does not fit in 32 bits")
        timestamp &= _U32
        st = self._streams.get(csid)
        if st is None:
            st = self._streams[csid] = _OutStream(csid)
            fmt = 0
        elif stream_id != st.stream_id or timestamp < st.timestamp:
            fmt = 0
        elif type_id != st.type_id or length != st.length:
            fmt = 1
        elif timestamp - st.timestamp == st.delta:
            fmt = 3
        else:
            fmt = 2

        if fmt == 0:
            field = timestamp
            st.delta = 0 if timestamp == 0 else None
        else:
            field = timestamp - st.timestamp
            st.delta = field
        st.stream_id = stream_id
        st.type_id = type_id
        st.length = length
        st.timestamp = timestamp

        basic = st.basic
        extended = field >= _EXTENDED
        short_field = _EXTENDED if extended else field
        if fmt == 0:
            fields = _pack_be_u64(short_field << 32 | length << 8 | type_id)[1:]
            header = basic[0] + fields + _pack_le_u32(stream_id)
        elif fmt == 1:
            header = basic[1] + _pack_be_u64(short_field << 32 | length << 8 | type_id)[1:]
        elif fmt == 2:
            header = basic[2] + _pack_be_u32(short_field)[1:]
        else:
            header = basic[3]
        if extended:
            ext = _pack_be_u32(field)
            header += ext
            continuation = basic[3] + ext
        else:
            continuation = basic[3]

        chunk_size = self._chunk_size
        if length <= chunk_size:
            return header, payload
        return header, self._shared.body(payload, chunk_size, continuation)
