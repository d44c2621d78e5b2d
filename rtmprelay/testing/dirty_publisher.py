"""Publishing a dirty stream over RTMP exactly as made: no normalizing, paced like a device.

`DirtyPublisher` sends a `DirtyStream`'s messages with `ClientSession` over
a plain blocking socket, in a thread: each message at its ``send_at`` (the
device's capture time, scaled by ``speed``), with its timestamp and payload
untouched, whatever the timestamps say. ffmpeg ``-c copy`` of the stream's
FLV file is the other way to publish it, but ffmpeg's FLV demuxer and muxer
rewrite timestamps that go back or restart; this one does not.

Every wait is bounded: connecting, the publish handshake, each send, and
the whole run (``timeout``, by default the paced length plus 30 s). What
went wrong (connection refused or reset, ``NetStream.Publish.*`` errors, a
stalled send) ends up in ``error``, ``check()`` and ``describe()``::

    publisher = DirtyPublisher(url, stream, speed=4.0).start()
    assert publisher.wait() == 0, publisher.describe()
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence

import attrs

from rtmprelay.errors import ProtocolError
from rtmprelay.rtmp.session import ClientSession, PublishFailed, PublishStarted, split_rtmp_url
from rtmprelay.testing.dirty import DirtyStream, StreamMessage
from rtmprelay.testing.peers import DEFAULT_SLACK, PeerError, PeerTimeout

__all__ = ["DirtyPublisher", "PublishError", "PublishResult"]


class PublishError(PeerError):
    """The publisher could not connect, was refused, or lost its connection."""


class _Stopped(Exception):
    pass


@attrs.frozen
class PublishResult:
    """How a publish went. ``ok`` when every message was sent and the session closed."""

    ok: bool
    error: str | None
    messages_sent: int
    messages_total: int
    bytes_sent: int
    elapsed: float  # seconds from start() to the end of the last connection
    publish_seconds: float | None  # from the first NetStream.Publish.Start to the last message sent
    max_lateness: float  # seconds the worst message went out after its paced time
    connections: int


class DirtyPublisher:
    """Publish ``stream`` to ``url`` (rtmp:// or rtmps://), paced on each message's ``send_at``.

    ``speed``: 1.0 is real time, 4.0 four times faster, None as fast as the
    socket takes it. ``send_metadata``: send the stream's onMetaData first.
    ``reconnect_at_resets``: open a new connection (and publish again) at
    every `TimestampReset`, as a device that reconnects. ``linger``: after
    the last message and the unpublish, how long to wait for the server to
    close its side. Duck-compatible with `PeerProcess` for the plugin's
    `PeerSet` (start, wait, check, stop, close, describe).
    """

    name = "dirty-publisher"

    def __init__(
        self,
        url: str,
        stream: DirtyStream,
        *,
        speed: float | None = 1.0,
        timeout: float | None = None,
        connect_timeout: float = 10.0,
        send_timeout: float = 10.0,
        send_metadata: bool = True,
        reconnect_at_resets: bool = False,
        linger: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 or None, not {speed!r}")
        self.url = url
        self.stream = stream
        self.speed = speed
        paced = stream.duration_s / speed if speed else 0.0
        self.timeout = float(timeout) if timeout is not None else paced + DEFAULT_SLACK
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.send_metadata = send_metadata
        self.reconnect_at_resets = reconnect_at_resets
        self.linger = linger
        self.ssl_context = ssl_context
        self.host, self.port, self.app, self.stream_name, self.tls = split_rtmp_url(url)

        self.result: PublishResult | None = None
        self.started_at: float | None = None
        #: When the first publish started: send_at 0 (the pacing clock's origin).
        self.origin: float | None = None
        self._log: list[str] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._sent = 0
        self._bytes = 0
        self._lateness = 0.0
        self._connections = 0
        self._last_sent_at: float | None = None

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> DirtyPublisher:
        if self._thread is not None:
            raise PeerError(f"{self.name} already started")
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"{self.name} {self.url}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the publish to end; 0 if it went through, 1 if not (see ``error``).

        Waits at most ``timeout`` (default: what remains of the publisher's
        own), then stops it and raises `PeerTimeout`.
        """
        thread = self._require_started()
        if timeout is None:
            timeout = max(0.0, self.timeout - self.elapsed) + 1.0
        thread.join(timeout)
        if thread.is_alive():
            self.stop()
            raise PeerTimeout(f"{self.name} still publishing after {timeout:g} s; stopped.\n{self.describe()}")
        return self.returncode  # type: ignore[return-value]

    def check(self) -> None:
        """Raise `PublishError` (with the log) unless the publish finished and went through."""
        if self.result is None:
            raise PublishError(f"{self.name} has not finished.\n{self.describe()}")
        if not self.result.ok:
            raise PublishError(f"{self.name} failed: {self.result.error}\n{self.describe()}")

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop sending (the socket is closed, the thread ends); return the returncode."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(min(grace, 0.3))  # every wait in the thread looks at the flag within 0.1 s
            if thread.is_alive():
                self._close_socket()  # unblocks a send or a select
                thread.join(grace)
        return self.returncode

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> DirtyPublisher:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- state ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def returncode(self) -> int | None:
        if self.result is None:
            return None
        return 0 if self.result.ok else 1

    @property
    def error(self) -> str | None:
        return self.result.error if self.result is not None else None

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        if self.result is not None:
            return self.result.elapsed
        return time.monotonic() - self.started_at

    @property
    def log_lines(self) -> list[str]:
        with self._lock:
            return list(self._log)

    def describe(self, tail_lines: int = 25) -> str:
        lines = self.log_lines[-tail_lines:]
        status = f"returncode={self.returncode} elapsed={self.elapsed:.2f}s"
        if self.result is not None:
            r = self.result
            status += f" sent {r.messages_sent}/{r.messages_total} messages, {r.bytes_sent} bytes, max lateness {r.max_lateness * 1000:.0f} ms"
        speed = "unpaced" if not self.speed else f"speed {self.speed:g}"
        return (
            f"{self.name} -> {self.url} ({speed}, {len(self.stream.messages)} messages, "
            f"{self.stream.duration_s:.2f} s)\n{status}\nlog, last {len(lines)} lines:\n  " + "\n  ".join(lines)
        )

    def __repr__(self) -> str:
        return f"<DirtyPublisher {self.url} returncode={self.returncode}>"

    def _require_started(self) -> threading.Thread:
        if self._thread is None:
            raise PeerError(f"{self.name} was not started")
        return self._thread

    # -- the thread ----------------------------------------------------------------

    def _note(self, text: str) -> None:
        offset = time.monotonic() - (self.started_at or time.monotonic())
        with self._lock:
            self._log.append(f"{offset:8.3f} {text}")

    def _run(self) -> None:
        error = None
        try:
            segments = self.stream.segments() if self.reconnect_at_resets else [self.stream.messages]
            for segment in segments:
                self._publish(segment)
            self._note(f"done: {self._sent} messages, {self._bytes} bytes")
        except _Stopped:
            error = "stopped before the end"
        except PublishError as exc:
            error = str(exc)
        except (TimeoutError, socket.timeout) as exc:
            error = f"timed out: {exc or 'socket timeout'}"
        except (ConnectionError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        except ProtocolError as exc:
            error = f"the server broke the protocol: {exc}"
        except Exception as exc:  # reported, never lost in a thread
            error = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            self._close_socket()
        if error is not None:
            where = self._where()
            error = f"{error} ({where})" if where else error
            self._note(f"error: {error}")
        self.result = PublishResult(
            ok=error is None,
            error=error,
            messages_sent=self._sent,
            messages_total=len(self.stream.messages),
            bytes_sent=self._bytes,
            elapsed=time.monotonic() - (self.started_at or 0.0),
            publish_seconds=(self._last_sent_at - self.origin) if self.origin and self._last_sent_at else None,
            max_lateness=self._lateness,
            connections=self._connections,
        )

    def _where(self) -> str:
        total = len(self.stream.messages)
        if self._sent >= total:
            return f"after all {total} messages"
        m = self.stream.messages[self._sent]
        return f"after {self._sent} of {total} messages; next: {m.kind} ts={m.timestamp} send_at={m.send_at:.3f}s"

    def _deadline_left(self) -> float:
        left = self.timeout - (time.monotonic() - (self.started_at or 0.0))
        if left <= 0:
            raise TimeoutError(f"publisher ran past its {self.timeout:g} s")
        return left

    def _connect(self) -> socket.socket:
        self._note(f"connecting to {self.host}:{self.port}")
        try:
            sock = socket.create_connection((self.host, self.port), timeout=min(self.connect_timeout, self._deadline_left()))
        except OSError as exc:
            raise PublishError(f"cannot connect to {self.host}:{self.port}: {type(exc).__name__}: {exc}") from None
        if self.tls:
            context = self.ssl_context or ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=self.host)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.send_timeout)
        with self._lock:
            self._sock = sock
        self._connections += 1
        return sock

    def _close_socket(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _publish(self, messages: Sequence[StreamMessage]) -> None:
        if self._stop.is_set():
            raise _Stopped
        sock = self._connect()
        session = ClientSession.for_url(self.url)
        session.initiate()
        self._send(sock, session.data_to_send())
        handshake_end = time.monotonic() + min(self.connect_timeout, self._deadline_left())
        while not session.publishing:
            if self._stop.is_set():
                raise _Stopped
            left = handshake_end - time.monotonic()
            if left <= 0:
                raise PublishError(f"no NetStream.Publish.Start within {self.connect_timeout:g} s (state {session.state.value})")
            self._pump(sock, session, min(left, 0.1))
        self._note(f"publishing app={self.app!r} stream={self.stream_name!r} (stream id {session.stream_id})")
        if self.origin is None:
            self.origin = time.monotonic()
        if self.send_metadata and self.stream.metadata:
            session.send_metadata(dict(self.stream.metadata))
            self._send(sock, session.data_to_send())

        for message in messages:
            if self.speed:
                due = self.origin + message.send_at / self.speed
                self._wait_until(sock, session, due)
                self._lateness = max(self._lateness, time.monotonic() - due)
            else:
                self._deadline_left()
                if self._stop.is_set():
                    raise _Stopped
                self._pump(sock, session, 0.0)
            session.send_media(message.type_id, message.timestamp, message.payload)
            self._send(sock, session.data_to_send())
            self._sent += 1
            self._last_sent_at = time.monotonic()

        session.close()  # FCUnpublish + deleteStream, as ffmpeg does
        self._send(sock, session.data_to_send())
        self._note(f"unpublished after {self._sent} messages")
        self._drain(sock, session)
        self._close_socket()

    def _wait_until(self, sock: socket.socket, session: ClientSession, due: float) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped
            left = due - time.monotonic()
            if left <= 0:
                return
            self._deadline_left()
            self._pump(sock, session, min(left, 0.1))

    def _pump(self, sock: socket.socket, session: ClientSession, timeout: float) -> None:
        """Read what the server sent within ``timeout`` s; answer it; fail on errors."""
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
        if not pending:
            readable, _, _ = select.select([sock], [], [], max(0.0, timeout))
            if not readable:
                return
        data = sock.recv(65536)
        if not data:
            state = "publishing" if session.publishing else f"in state {session.state.value}"
            raise PublishError(f"the server closed the connection while {state}")
        for event in session.receive_data(data):
            if type(event) is PublishFailed:
                raise PublishError(f"publish refused: {event.code} {event.description}".rstrip())
            if type(event) is PublishStarted:
                self._note("NetStream.Publish.Start")
        self._send(sock, session.data_to_send())  # acknowledgements, ping answers

    def _send(self, sock: socket.socket, data: bytes) -> None:
        if not data:
            return
        try:
            sock.sendall(data)
        except socket.timeout:
            raise TimeoutError(f"the server took no data for {self.send_timeout:g} s (send stalled)") from None
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise PublishError(f"connection reset by the server: {exc}") from None
        self._bytes += len(data)

    def _drain(self, sock: socket.socket, session: ClientSession) -> None:
        """Half-close and read until the server closes too (bounded by ``linger``)."""
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        end = time.monotonic() + self.linger
        while time.monotonic() < end:
            readable, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
            if not readable:
                break
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            try:
                session.receive_data(data)
            except ProtocolError:
                break
