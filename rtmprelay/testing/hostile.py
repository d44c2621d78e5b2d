"""Hostile clients: connections that try to make an RTMP/HTTP server hold resources for ever.

Each :class:`Kind` is a script a connection plays against the server: bytes to
send and pauses between them (a stalled handshake, a connect command a byte a
second, a chunk size of 2**31-1, a 16 MiB message header, 65,000 chunk stream
ids, an AMF bomb, a path-traversal name, an idle publisher, a player that
never reads, an HTTP slowloris, a 2**40-byte body, ...). :class:`Swarm` runs
hundreds of them at once on one thread (``selectors``), and for each
connection records when its script ended and when the server closed it, so a
test can check that every one was closed within the server's limit for its
kind, and read the server's log for the one line that names why.

The bytes are built with rtmprelay's own chunk writer and AMF encoder: the
point is what a server does with them, not how they were made.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence

import attrs

from rtmprelay.rtmp import amf0
from rtmprelay.rtmp.chunks import ChunkWriter, Message

__all__ = ["Kind", "Outcome", "Swarm", "rtmp_kinds", "http_kinds"]

_TCP_CLOSE = 7
_TCP_CLOSE_WAIT = 8
_C0C1 = b"\x03" + bytes(1536)
_C2 = bytes(1536)
_HANDSHAKE = _C0C1 + _C2


@attrs.frozen
class Step:
    """Wait ``delay`` seconds, then send ``data`` (``b""``: only wait)."""

    delay: float
    data: bytes = b""


@attrs.frozen
class Kind:
    """One way to be hostile.

    ``limit`` names the server limit that must close it (``"at once"`` for a
    protocol error); ``close_within`` is how long after connecting the server
    may take (its limit plus its sweep's slack). ``reads`` False makes a
    connection that never reads (its receive buffer shrunk to a minimum).
    """

    name: str
    port_kind: str  # "rtmp" or "http"
    #: The steps of connection number n.
    script: Callable[[int], tuple[Step, ...]]
    limit: str
    close_within: float
    log_reason: str
    reads: bool = True


@attrs.define
class Outcome:
    kind: str
    local_port: int = 0
    connected_at: float | None = None
    script_done_at: float | None = None
    closed_at: float | None = None
    error: str | None = None
    received: int = 0

    @property
    def seconds_to_close(self) -> float | None:
        """From connecting to the server's close."""
        if self.closed_at is None or self.connected_at is None:
            return None
        return self.closed_at - self.connected_at


# -- building the bytes -------------------------------------------------------------------------


def _command(name: str, transaction: float, obj, *args, stream_id: int = 0, writer: ChunkWriter | None = None) -> bytes:
    writer = writer or ChunkWriter()
    return writer.write(Message(20, amf0.encode_values([name, transaction, obj, *args]), 0, stream_id, 3))


def _connect(app: str = "live") -> bytes:
    return _command("connect", 1.0, {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}", "type": "nonprivate"})


def _publish_sequence(name: str, app: str = "live") -> bytes:
    writer = ChunkWriter()
    return (
        writer.write(Message(20, amf0.encode_values(["connect", 1.0, {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}"}]), 0, 0, 3))
        + writer.write(Message(20, amf0.encode_values(["createStream", 2.0, None]), 0, 0, 3))
        + writer.write(Message(20, amf0.encode_values(["publish", 3.0, None, name, "live"]), 0, 1, 8))
    )


def _play_sequence(name: str, app: str = "live") -> bytes:
    writer = ChunkWriter()
    return (
        writer.write(Message(20, amf0.encode_values(["connect", 1.0, {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}"}]), 0, 0, 3))
        + writer.write(Message(20, amf0.encode_values(["createStream", 2.0, None]), 0, 0, 3))
        + writer.write(Message(20, amf0.encode_values(["play", 3.0, None, name]), 0, 1, 8))
    )


def _header(csid: int, length: int, type_id: int, stream_id: int = 0) -> bytes:
    """A type 0 chunk header (one-byte basic header for csid < 64)."""
    return bytes((csid,)) + bytes(3) + length.to_bytes(3, "big") + bytes((type_id,)) + struct.pack("<I", stream_id)


def _many_chunk_streams(count: int) -> bytes:
    out = bytearray()
    for csid in range(3, 3 + count):
        rest = csid - 64
        basic = bytes((csid,)) if csid < 64 else bytes((0, rest)) if csid < 320 else bytes((1, rest & 0xFF, rest >> 8))
        out += basic + bytes(3) + (1).to_bytes(3, "big") + b"\x09" + struct.pack("<I", 1) + b"\x00"
    return bytes(out)


def _tiny_video_messages(count: int) -> bytes:
    """One-byte video messages on stream 1: a type 0 header, then type 3 headers (two bytes a message)."""
    writer = ChunkWriter()
    return b"".join(writer.write(Message(9, b"\x27", i, 1, 6)) for i in range(count))


def _amf_bomb() -> bytes:
    """A connect command of 60,000 nulls: under the size limit, over the value limit."""
    body = amf0.encode_values(["connect", 1.0]) + b"\x0a" + struct.pack(">I", 60_000) + b"\x05" * 60_000
    return _set_chunk_size(65536) + ChunkWriter(chunk_size=65536).write(Message(20, body, 0, 0, 3))


def _set_chunk_size(size: int) -> bytes:
    return ChunkWriter().write(Message(1, struct.pack(">I", size), 0, 0, 2))


def _delete_stream_nan() -> bytes:
    return _command("deleteStream", 0.0, None, float("nan"))


def _same(*steps: Step) -> Callable[[int], tuple[Step, ...]]:
    """A script that is the same for every connection."""
    return lambda n: steps


# -- the kinds ---------------------------------------------------------------------------------


def rtmp_kinds(limits: dict[str, float], *, live_path: str = "live/user1/legit", slack: float = 2.0) -> list[Kind]:
    """Every hostile RTMP connection, given the server's limits in seconds:
    ``handshake``, ``command``, ``idle_publisher``, ``ping_interval``, ``ping_timeout``."""
    at_once = slack
    handshake = limits["handshake"] + slack
    command = limits["command"] + slack
    idle = limits["idle_publisher"] + slack
    ping = limits["ping_interval"] + limits["ping_timeout"] + slack
    app, _, name = live_path.partition("/")
    return [
        Kind("tcp_silent", "rtmp", _same(), "handshake timeout", handshake, "handshake not finished"),
        Kind("partial_handshake", "rtmp", _same(Step(0, _C0C1[:100])), "handshake timeout", handshake, "handshake not finished"),
        Kind("handshake_then_silent", "rtmp", _same(Step(0, _HANDSHAKE)), "command timeout", command, "no publish or play within"),
        Kind(
            "connect_a_byte_a_second",
            "rtmp",
            _same(Step(0, _HANDSHAKE), *(Step(1.0, bytes((byte,))) for byte in _connect()[:8])),
            "command timeout",
            command,
            "no publish or play within",
        ),
        Kind("huge_chunk_size", "rtmp", _same(Step(0, _HANDSHAKE + _set_chunk_size(0x7FFFFFFF))), "at once", at_once, "chunk size 2147483647"),
        Kind("tiny_chunk_size", "rtmp", _same(Step(0, _HANDSHAKE + _set_chunk_size(1))), "at once", at_once, "chunk size 1 is below"),
        Kind(
            "message_flood",
            "rtmp",
            lambda n: (Step(0, _HANDSHAKE + _publish_sequence(f"hostile/flood{n}")), Step(0.2, _tiny_video_messages(50_000))),
            "at once",
            at_once,
            "message budget",
        ),
        Kind("huge_message_header", "rtmp", _same(Step(0, _HANDSHAKE + _header(3, 0xFFFFFF, 20) + bytes(128))), "at once", at_once, "message length"),
        Kind("many_chunk_streams", "rtmp", _same(Step(0, _HANDSHAKE + _many_chunk_streams(65_000))), "at once", at_once, "chunk stream ids"),
        Kind(
            "pinned_bytes",
            "rtmp",
            _same(Step(0, _HANDSHAKE + _set_chunk_size(1 << 20) + _header(4, 4_000_000, 9, 1) + bytes(1 << 20))),
            "command timeout",
            command,
            "no publish or play within",
        ),
        Kind("amf_bomb", "rtmp", _same(Step(0, _HANDSHAKE + _amf_bomb())), "at once", at_once, "more than"),
        Kind("garbage", "rtmp", _same(Step(0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(3000))), "at once", at_once, "C0"),
        Kind(
            "bad_stream_name",
            "rtmp",
            _same(Step(0, _HANDSHAKE + _publish_sequence("../../../etc/victim"))),
            "command timeout",
            command,
            "no publish or play within",
        ),
        Kind(
            "idle_publisher",
            "rtmp",
            lambda n: (Step(0, _HANDSHAKE + _publish_sequence(f"hostile/idle{n}")),),
            "idle publisher timeout",
            idle,
            "published no audio or video",
        ),
        Kind(
            "nan_delete_stream",
            "rtmp",
            lambda n: (Step(0, _HANDSHAKE + _publish_sequence(f"hostile/nan{n}")), Step(0.2, _delete_stream_nan())),
            "idle publisher timeout",
            idle,
            "published no audio or video",
        ),
        Kind(
            "metadata_bomb",
            "rtmp",
            lambda n: (Step(0, _HANDSHAKE + _publish_sequence(f"hostile/meta{n}")), Step(0.2, _header(5, 16_000_000, 18, 1) + bytes(4096))),
            "at once",
            at_once,
            "message length",
        ),
        Kind(
            "player_that_never_reads",
            "rtmp",
            _same(Step(0, _HANDSHAKE + _play_sequence(name, app))),
            "ping timeout",
            ping,
            "no answer to a ping",
            reads=False,
        ),
    ]


def http_kinds(limits: dict[str, float], *, slack: float = 2.0) -> list[Kind]:
    """Hostile HTTP clients given ``request`` (the server's request timeout, seconds)."""
    trickle = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200
    return [
        Kind(
            "http_slowloris",
            "http",
            _same(*(Step(0.5, trickle[i : i + 1]) for i in range(len(trickle)))),  # outlasts any sane limit
            "HTTP request timeout",
            limits["request"] + 0.5 + slack,
            "request not received whole",
        ),
        Kind(
            "http_huge_body",
            "http",
            _same(Step(0, b"POST /api/streams HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n" + bytes(1000))),
            "at once",
            slack,
            "declared a body of",
        ),
    ]


# -- running -----------------------------------------------------------------------------------


class _Conn:
    __slots__ = ("kind", "sock", "outcome", "steps", "next_at", "pending", "index")

    def __init__(self, kind: Kind, sock: socket.socket, outcome: Outcome, steps: Sequence[Step], now: float) -> None:
        self.kind = kind
        self.sock = sock
        self.outcome = outcome
        self.steps = list(steps)
        self.index = 0
        self.pending = b""
        self.next_at = now + (self.steps[0].delay if self.steps else 0.0)


class Swarm:
    """Runs hostile connections on a thread; ``outcomes`` fill in as servers close them."""

    def __init__(self, ports: dict[str, int], host: str = "127.0.0.1") -> None:
        self.ports = ports
        self.host = host
        self.outcomes: list[Outcome] = []
        self._selector = selectors.DefaultSelector()
        self._conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-swarm", daemon=True)

    def launch(self, kinds: Sequence[Kind], count: int, *, spread: float = 0.0) -> None:
        """``count`` connections of every kind, opened now (spread over ``spread`` seconds)."""
        total = len(kinds) * count
        number = 0
        for n in range(count):
            for kind in kinds:
                if spread and total:
                    time.sleep(spread / total)
                self._open(kind, n)
                number += 1

    def start(self) -> "Swarm":
        self._thread.start()
        return self

    def wait(self, timeout: float) -> bool:
        """True when every connection was closed by its server within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(o.closed_at is not None for o in self.outcomes):
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._conns:
            try:
                conn.sock.close()
            except OSError:
                pass

    # -- the loop -------------------------------------------------------------------------

    def _open(self, kind: Kind, n: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if not kind.reads:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        outcome = Outcome(kind.name)
        try:
            sock.connect((self.host, self.ports[kind.port_kind]))
        except OSError as error:
            outcome.error = f"connect: {error}"
            outcome.closed_at = time.monotonic()
            with self._lock:
                self.outcomes.append(outcome)
            sock.close()
            return
        sock.setblocking(False)
        now = time.monotonic()
        outcome.local_port = sock.getsockname()[1]
        outcome.connected_at = now
        steps = kind.script(n)
        conn = _Conn(kind, sock, outcome, steps, now)
        if not steps:
            outcome.script_done_at = now
        with self._lock:
            self.outcomes.append(outcome)
            self._conns.append(conn)
            events = selectors.EVENT_READ if kind.reads else 0
            if events:
                self._selector.register(sock, events, conn)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                conns = list(self._conns)
            for conn in conns:
                if conn.outcome.closed_at is not None:
                    continue
                self._advance(conn, now)
                if not conn.kind.reads:
                    self._probe_closed(conn)
            try:
                ready = self._selector.select(timeout=0.02) if self._selector.get_map() else []
            except (OSError, ValueError):
                ready = []
                time.sleep(0.02)
            for key, _mask in ready:
                self._read(key.data)

    def _advance(self, conn: _Conn, now: float) -> None:
        if conn.pending:
            self._send(conn, now)
            return
        if conn.index >= len(conn.steps) or now < conn.next_at:
            return
        conn.pending = conn.steps[conn.index].data
        conn.index += 1
        if conn.index < len(conn.steps):
            conn.next_at = now + conn.steps[conn.index].delay
        self._send(conn, now)

    def _send(self, conn: _Conn, now: float) -> None:
        try:
            sent = conn.sock.send(conn.pending) if conn.pending else 0
        except BlockingIOError:
            return
        except OSError:
            self._closed(conn)
            return
        conn.pending = conn.pending[sent:]
        if not conn.pending and conn.index >= len(conn.steps) and conn.outcome.script_done_at is None:
            conn.outcome.script_done_at = now

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._closed(conn)
            return
        if not data:
            self._closed(conn)
            return
        conn.outcome.received += len(data)

    def _probe_closed(self, conn: _Conn) -> None:
        """A connection that never reads learns of the close from its TCP state (Linux's
        TCP_INFO: CLOSE after a reset, CLOSE_WAIT after a FIN), or from a pending error."""
        try:
            if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._closed(conn)
                return
            state = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        except OSError:
            self._closed(conn)
            return
        if state in (_TCP_CLOSE, _TCP_CLOSE_WAIT):
            self._closed(conn)

    def _closed(self, conn: _Conn) -> None:
        if conn.outcome.closed_at is not None:
            return
        conn.outcome.closed_at = time.monotonic()
        if conn.outcome.script_done_at is None:
            conn.outcome.script_done_at = conn.outcome.closed_at  # closed before it was done: at once
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass


def summarize(outcomes: Sequence[Outcome]) -> dict[str, dict]:
    """Per kind: count, closed, and seconds to close (median, max)."""
    table: dict[str, dict] = {}
    for outcome in outcomes:
        row = table.setdefault(outcome.kind, {"count": 0, "closed": 0, "times": []})
        row["count"] += 1
        if outcome.closed_at is not None:
            row["closed"] += 1
            if outcome.seconds_to_close is not None:
                row["times"].append(outcome.seconds_to_close)
    for row in table.values():
        times = sorted(row.pop("times"))
        row["median_s"] = round(times[len(times) // 2], 2) if times else None
        row["max_s"] = round(times[-1], 2) if times else None
    return table

