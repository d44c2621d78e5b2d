"""The floors under bench/relay_forward.py's rtmprelay paths: the least a Python forwarder on Twisted costs.

    python bench/_floor_forward.py MODE LISTEN_PORT UPSTREAM_PORT [PROFILE_OUT]

Run by ``relay_forward.py`` (paths ``floor-tcp``, ``floor-rtmp``, ``floor-core``),
not by hand. Each mode is a transparent proxy on 127.0.0.1: the publisher's
connection is joined to its own connection to the upstream nginx, and what
nginx sends back goes to the publisher as it came. The modes differ in what
they do with what the publisher sends:

``tcp``
    Nothing: the bytes of each read are written to the upstream at once. What
    Twisted's reactor, its read dispatch and the socket calls cost per read,
    with no RTMP work at all.
``rtmp``
    After the handshake (C0, C1 and C2: 3,073 bytes, passed as they come) the
    bytes are taken apart into whole RTMP messages and each is chunked again,
    with a full header, at the publisher's own chunk size (its Set Chunk Size
    messages are forwarded, so nginx reads what was written). This is the least
    work any relay that holds whole messages must do, written as tight as this
    file could make it: no limits, no validation, no sessions, no per-stream
    state beyond the chunk streams'.
``core``
    As ``rtmp``, with rtmprelay's own ``ChunkReader`` and ``ChunkWriter``
    (limits and validation included) in place of the tight loop.

All three write the way rtmprelay does (``relay.transport.send_parts``: one
``sendmsg`` of a read's pieces straight to the socket when nothing is queued)
and set TCP_NODELAY on both sockets, as rtmprelay does: what differs from
rtmprelay is only the work done per read.
Nothing is bounded: a floor, not a server.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from twisted.internet import protocol, reactor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtmprelay.relay.transport import send_parts, set_tcp_nodelay  # noqa: E402
from rtmprelay.rtmp.chunks import ChunkReader, ChunkWriter, Message  # noqa: E402

HANDSHAKE_BYTES = 1 + 1536 + 1536  # C0, C1, C2
_BE_2U32 = struct.Struct(">II").unpack_from
_BE_U32 = struct.Struct(">I").unpack_from
_LE_U32 = struct.Struct("<I").unpack_from
_pack_be_u64 = struct.Struct(">Q").pack
_pack_be_u32 = struct.Struct(">I").pack
_pack_le_u32 = struct.Struct("<I").pack
EXTENDED = 0xFFFFFF


class TightRechunker:
    """Chunks in, the same messages out, each with a type 0 header at the sender's chunk size."""

    def __init__(self) -> None:
        self.pending = b""
        self.read_size = 128
        self.write_size = 128
        # csid -> [timestamp, length, type_id, stream_id, delta, parts, remaining]
        self.streams: dict[int, list] = {}

    def feed(self, data: bytes) -> list[bytes]:
        if self.pending:
            data = self.pending + data
            self.pending = b""
        out: list[bytes] = []
        streams = self.streams
        pos = 0
        n = len(data)
        while pos < n:
            start = pos
            first = data[pos]
            fmt = first >> 6
            csid = first & 0x3F
            pos += 1
            if csid == 0:
                if pos + 1 > n:
                    break
                csid = 64 + data[pos]
                pos += 1
            elif csid == 1:
                if pos + 2 > n:
                    break
                csid = 64 + data[pos] + 256 * data[pos + 1]
                pos += 2
            st = streams.get(csid)
            if fmt == 0:
                if pos + 11 > n:
                    break
                a, b = _BE_2U32(data, pos)
                field = a >> 8
                length = (a & 0xFF) << 16 | b >> 16
                type_id = (b >> 8) & 0xFF
                stream_id = _LE_U32(data, pos + 7)[0]
                pos += 11
            elif fmt == 1:
                if pos + 7 > n:
                    break
                a, b = _BE_2U32(data, pos - 1)  # from the basic header's last byte: 8 bytes, masked
                field = a & 0xFFFFFF
                length = b >> 8
                type_id = b & 0xFF
                stream_id = st[3]
                pos += 7
            elif fmt == 2:
                if pos + 3 > n:
                    break
                field = _BE_U32(data, pos - 1)[0] & 0xFFFFFF
                length, type_id, stream_id = st[1], st[2], st[3]
                pos += 3
            else:
                field = -1
                length, type_id, stream_id = st[1], st[2], st[3]
            extended = field == EXTENDED if field >= 0 else st[7]
            if extended:
                if pos + 4 > n:
                    break
                if field >= 0:
                    field = _BE_U32(data, pos)[0]
                pos += 4
            in_message = st is not None and st[6] > 0
            size = min(self.read_size, st[6] if in_message else length)
            if pos + size > n:
                break
            if not in_message:
                if st is None:
                    st = streams[csid] = [0, 0, 0, 0, 0, None, 0, False]
                if fmt == 0:
                    timestamp, delta = field, field
                elif fmt == 3:
                    timestamp, delta = st[0] + st[4], st[4]
                else:
                    timestamp, delta = st[0] + field, field
                st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7] = timestamp, length, type_id, stream_id, delta, [], length, extended
            st[5].append(data[pos : pos + size])
            st[6] -= size
            pos += size
            if st[6] == 0:
                parts = st[5]
                payload = parts[0] if len(parts) == 1 else b"".join(parts)
                st[5] = None
                self._write(csid, st[0] & 0xFFFFFFFF, type_id, stream_id, payload, out)
                if type_id == 1:
                    self.read_size = self.write_size = _BE_U32(payload, 0)[0] & 0x7FFFFFFF
        else:
            return out
        self.pending = data[start:]
        return out

    def _write(self, csid: int, timestamp: int, type_id: int, stream_id: int, payload: bytes, out: list[bytes]) -> None:
        length = len(payload)
        basic = bytes((csid,)) if csid < 64 else bytes((0, csid - 64)) if csid < 320 else bytes((1, (csid - 64) & 0xFF, (csid - 64) >> 8))
        extended = timestamp >= EXTENDED
        header = basic + _pack_be_u64((EXTENDED if extended else timestamp) << 32 | length << 8 | type_id)[1:] + _pack_le_u32(stream_id)
        continuation = bytes((0xC0 | basic[0],)) + basic[1:]
        if extended:
            ext = _pack_be_u32(timestamp)
            header += ext
            continuation += ext
        out.append(header)
        size = self.write_size
        if length <= size:
            out.append(payload)
            return
        out.append(payload[:size])
        for offset in range(size, length, size):
            out.append(continuation)
            out.append(payload[offset : offset + size])


class CoreRechunker:
    """The same with rtmprelay's ChunkReader and ChunkWriter."""

    def __init__(self) -> None:
        self.reader = ChunkReader()
        self.writer = ChunkWriter()

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        writer = self.writer
        for message in self.reader.feed(data):
            header, body = writer.write_parts(message)
            out.append(header)
            out.append(body)
            if message.type_id == 1:
                writer.chunk_size = self.reader.chunk_size
        return out


class Passthrough:
    def feed(self, data: bytes) -> list[bytes]:
        return [data]


MODES = {"tcp": Passthrough, "rtmp": TightRechunker, "core": CoreRechunker}


class ToUpstream(protocol.Protocol):
    """The proxy's connection to nginx: what nginx says goes back to the publisher as it is."""

    def __init__(self, publisher: "FromPublisher") -> None:
        self.publisher = publisher

    def connectionMade(self) -> None:
        set_tcp_nodelay(self.transport)
        self.publisher.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:
        send_parts(self.publisher.transport, [data])

    def connectionLost(self, reason) -> None:
        self.publisher.transport.loseConnection()


class FromPublisher(protocol.Protocol):
    def __init__(self, mode: str, upstream_port: int) -> None:
        self.rechunker = MODES[mode]()
        self.upstream_port = upstream_port
        self.upstream: ToUpstream | None = None
        self.waiting: list[bytes] = []
        self.handshake_left = HANDSHAKE_BYTES

    def connectionMade(self) -> None:
        set_tcp_nodelay(self.transport)
        protocol.ClientCreator(reactor, ToUpstream, self).connectTCP("127.0.0.1", self.upstream_port)

    def upstream_ready(self, upstream: ToUpstream) -> None:
        self.upstream = upstream
        if self.waiting:
            send_parts(upstream.transport, self.waiting)
            self.waiting = []

    def dataReceived(self, data: bytes) -> None:
        if self.handshake_left:
            raw = data[: self.handshake_left]
            self.handshake_left -= len(raw)
            parts = [raw]
            if len(raw) < len(data):
                parts += self.rechunker.feed(data[len(raw) :])
        else:
            parts = self.rechunker.feed(data)
        if not parts:
            return
        if self.upstream is None:
            self.waiting += parts
        else:
            send_parts(self.upstream.transport, parts)

    def connectionLost(self, reason) -> None:
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class Proxy(protocol.Factory):
    def __init__(self, mode: str, upstream_port: int) -> None:
        self.mode = mode
        self.upstream_port = upstream_port

    def buildProtocol(self, addr) -> FromPublisher:
        return FromPublisher(self.mode, self.upstream_port)


def main() -> None:
    mode, listen_port, upstream_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    profile_out = sys.argv[4] if len(sys.argv) > 4 else None
    if mode not in MODES:
        raise SystemExit(f"mode {mode!r}: one of {', '.join(MODES)}")
    reactor.listenTCP(listen_port, Proxy(mode, upstream_port), interface="127.0.0.1")
    print(f"listening on {listen_port}", flush=True)
    if profile_out is None:
        reactor.run()
        return
    # Profiled beside rtmprelay's own (--profile-relay), to compare the two call by call.
    from _profiled import run_profiled  # bench/ is this script's folder

    run_profiled(reactor, profile_out)


if __name__ == "__main__":
    main()
