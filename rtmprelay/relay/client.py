"""Publishing to an upstream RTMP(S) server, and staying published.

``RTMPClientProtocol`` is one connection: a thin protocol around
``ClientSession`` that reports what happens to its forwarder.

``UpstreamForwarder`` is the registry sink for one stream and one destination.
It owns the destination's connection, queue, reconnection and state:

* **Connecting.** Media that arrives before the upstream accepts the publish is
  queued, bounded by ``queue_bytes`` (whole GOPs are dropped from the head, so
  the queue always starts at a keyframe).
* **Live.** Metadata and sequence headers go first, then the queue, then every
  message as it comes. While the upstream socket is full, what is written is
  bounded too: past ``queue_bytes``, frames are skipped to the next keyframe.
  The publisher is never paused for an upstream: one slow destination must not
  hold back the ingest, the players or the other destinations.
* **Lost.** A close, an error, a refused publish (``onStatus`` error), a publish
  not accepted within ``connect_timeout``, or a socket that took nothing for
  ``connect_timeout`` while full: the connection is dropped and made again
  after a backoff (at once, then growing to 10 s; a refused TCP connection
  within a second, see ``upstream.Backoff``), for as long as the stream lives.
  Meanwhile media is queued again from the stream's last keyframe, so the new
  publish starts at a keyframe with metadata and headers re-sent and the
  stream's own timestamps: the upstream's timeline goes on, never back to 0.

Each failure is named (``upstream.UpstreamError``), counted by kind, and logged
once per change of state or of error, with the stream path and the URL with its
stream key masked.
"""

from __future__ import annotations

import functools
from collections import deque

import attrs
from OpenSSL import SSL
from twisted.internet import defer, interfaces
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust, trustRootFromCertificates
from twisted.logger import Logger
from zope.interface import implementer

from rtmprelay.errors import ConfigError, ProtocolError
from rtmprelay.media.flv import AUDIO, VIDEO
from rtmprelay.media.gate import KeyframeGate
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.transport import TURN, quick_ack, set_tcp_nodelay
from rtmprelay.relay.upstream import (
    STABLE_AFTER_S,
    Backoff,
    Destination,
    KeyframeSpacing,
    TlsVerification,
    UpstreamError,
    UpstreamState,
    UpstreamStatus,
    UpstreamTarget,
    describe_connect_failure,
    describe_loss,
    scrub,
)
from rtmprelay.rtmp import session as s

#: Media held while the upstream connects, or while its socket is full.
DEFAULT_UPSTREAM_QUEUE_BYTES = 8 * 1024 * 1024
#: Seconds for a TCP/TLS connection, for the publish to be accepted, and for a full socket to move.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds a closed connection has to flush and go away before it is aborted: a TLS
#: terminator may never answer our close_notify (nginx's stream proxy does not).
CLOSE_GRACE_S = 3.0


@attrs.frozen
class UpstreamConfig:
    ca_file: str | None = None
    queue_bytes: int = DEFAULT_UPSTREAM_QUEUE_BYTES
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT


@functools.cache
def load_trust(ca_file: str | None):
    """The trust root for upstream certificates: every certificate in ``ca_file``, or the system's."""
    if ca_file is None:
        return platformTrust()
    try:
        with open(ca_file, "rb") as f:
            text = f.read()
    except OSError as error:
        raise ConfigError(f"cannot read --upstream-ca {ca_file}: {error.strerror}") from None
    blocks = [b"-----BEGIN CERTIFICATE-----" + part.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
              for part in text.split(b"-----BEGIN CERTIFICATE-----")[1:]]
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except Exception as error:  # pyOpenSSL's errors are not one type
        raise ConfigError(f"--upstream-ca {ca_file}: unreadable certificate ({error})") from None
    if not certificates:
        raise ConfigError(f"--upstream-ca {ca_file} holds no PEM certificate")
    return trustRootFromCertificates(certificates)


@implementer(IOpenSSLClientConnectionCreator)
class _RecordingVerification:
    """Twisted's client TLS options, with a verify callback that remembers why a certificate failed."""

    def __init__(self, options, verification: TlsVerification) -> None:
        self._options = options
        self._verification = verification

    def clientConnectionForTLS(self, tlsProtocol):
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verification.verify)
        return connection


def upstream_endpoint(reactor, target: UpstreamTarget, config: UpstreamConfig, verification: TlsVerification | None = None):
    """A client endpoint for an upstream (TLS with SNI, verification and hostname check for rtmps)."""
    endpoint = HostnameEndpoint(reactor, target.host, target.port, timeout=config.connect_timeout)
    if not target.tls:
        return endpoint
    options = optionsForClientTLS(target.host, trustRoot=load_trust(config.ca_file))
    if verification is not None:
        options = _RecordingVerification(options, verification)
    return wrapClientTLS(options, endpoint)


@implementer(interfaces.IPushProducer)
class RTMPClientProtocol(Protocol):
    """One publishing connection to an upstream; its forwarder decides what happens."""

    def __init__(self, session: s.ClientSession, forwarder: "UpstreamForwarder", verification: TlsVerification | None = None) -> None:
        self.session = session
        self.forwarder = forwarder
        self.verification = verification
        self.paused = False
        self.lost = False

    def connectionMade(self) -> None:
        set_tcp_nodelay(self.transport)
        self.transport.registerProducer(self, True)
        self.session.initiate()
        self.flush()
        self.forwarder.upstream_connected(self)

    def dataReceived(self, data: bytes) -> None:
        if self.lost:
            return
        if not self.session.publishing:
            quick_ack(self.transport)
        try:
            events = self.session.receive_data(data)
        except ProtocolError as error:
            self.forwarder.upstream_failed(self, UpstreamError("protocol", f"broke the protocol: {error.what} (at {error.where or '?'})"))
            return
        self.flush()
        for event in events:
            if type(event) is s.PublishStarted:
                # Not when a refusal came in the same read: the session already failed,
                # and its PublishFailed follows.
                if self.session.publishing:
                    self.forwarder.upstream_publishing(self)
            elif type(event) is s.PublishFailed:
                description = scrub(event.description, self.session.stream_name)
                self.forwarder.upstream_failed(self, UpstreamError("rejected", f"refused the publish: {event.code}: {description}"))
                return

    def connectionLost(self, reason=None) -> None:
        self.lost = True
        self.forwarder.upstream_lost(self, reason)

    def flush(self) -> int:
        """Write what the session has to send; return how many bytes."""
        connection = self.session.connection
        before = connection.bytes_sent
        parts = connection.parts_to_send()
        if parts and not self.lost:
            TURN.write(self.transport, parts)
            return connection.bytes_sent - before
        return 0

    # IPushProducer: the upstream transport tells us when its buffer is full.
    def pauseProducing(self) -> None:
        self.paused = True
        self.forwarder.upstream_paused(self)

    def resumeProducing(self) -> None:
        self.paused = False
        self.forwarder.upstream_resumed(self)

    def stopProducing(self) -> None:
        self.paused = True


class UpstreamForwarder:
    """Forwards one live stream to one destination (a ``MediaSink``); see the module doc.

    ``min_keyframe_interval_s``: keyframes closer than this are relabelled as
    inter frames for this destination only (its profile is stricter than the
    stream's cleaning); None relabels nothing. ``connect(target, factory,
    verification) -> Deferred[protocol]`` makes one connection (default: a
    TCP or TLS endpoint for the target); tests hand in their own.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        stream,
        destination: Destination | str,
        config: UpstreamConfig = UpstreamConfig(),
        *,
        min_keyframe_interval_s: float | None = None,
        connect=None,
    ) -> None:
        self.reactor = reactor
        self._connect_to = connect or self._connect_endpoint
        self.stream = stream
        self.destination = destination if isinstance(destination, Destination) else Destination(destination)
        self.target = self.destination.target
        self.url = self.destination.url
        self.masked_url = self.destination.masked
        self.config = config
        self.state = UpstreamState.CONNECTING
        self.protocol: RTMPClientProtocol | None = None
        self.publishing = False
        self.closed = False
        self.metadata: dict | None = None
        self._queue: deque[MediaMessage] = deque()
        self._queued_bytes = 0
        # Skipping to a keyframe is shared by the queue (before the upstream takes the
        # publish) and the live path (while the upstream socket is full).
        self._gate = KeyframeGate(config.queue_bytes)
        self._spacing = KeyframeSpacing(min_keyframe_interval_s) if min_keyframe_interval_s else None
        self._backoff = Backoff()
        self._connecting: defer.Deferred | None = None
        self._retry = None
        self._publish_timer = None
        self._stall_timer = None
        self._connections: set[RTMPClientProtocol] = set()
        self._close_waiters: list[defer.Deferred] = []
        self._logged_error: UpstreamError | None = None
        self._live_since: float | None = None
        self._last_timestamp = 0
        self._down_since: float | None = None
        # what /api/streams shows
        self.attempts = 0
        self.errors: dict[str, int] = {}
        self.last_error: UpstreamError | None = None
        self.last_error_at: float | None = None
        self.bytes_sent = 0
        self.frames_sent = 0
        self.audio_frames_sent = 0
        self.sent_messages = 0
        self._queue_dropped = 0

    @property
    def dropped(self) -> int:
        return self._gate.dropped + self._queue_dropped

    @property
    def path(self) -> str:
        return self.stream.path

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._connect()

    def stop(self) -> None:
        """The stream ended: unpublish upstream (FCUnpublish, deleteStream), close, never reconnect."""
        if self.closed:
            return
        self.closed = True
        self._cancel_timers()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        protocol, self.protocol = self.protocol, None
        if protocol is not None and not protocol.lost:
            if self.publishing:
                protocol.session.close()
                self.bytes_sent += protocol.flush()
            self._close(protocol)
        self.publishing = False
        self._queue.clear()
        self._queued_bytes = 0
        self._set_state(UpstreamState.STOPPED)

    def wait_closed(self) -> defer.Deferred:
        """Fires when no connection of this forwarder is open any more."""
        if not self._connections:
            return defer.succeed(None)
        d = defer.Deferred()
        self._close_waiters.append(d)
        return d

    # -- attempts -----------------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if self.closed:
            return
        self.attempts += 1
        self._set_state(UpstreamState.CONNECTING)
        target = self.target
        session = s.ClientSession(target.app, target.stream_name, target.tc_url)
        verification = TlsVerification() if target.tls else None
        factory = Factory.forProtocol(lambda: RTMPClientProtocol(session, self, verification))
        d = self._connecting = defer.maybeDeferred(self._connect_to, target, factory, verification)
        d.addCallbacks(self._connected, self._connect_failed)

    def _connect_endpoint(self, target: UpstreamTarget, factory, verification: TlsVerification | None) -> defer.Deferred:
        return upstream_endpoint(self.reactor, target, self.config, verification).connect(factory)

    def _connected(self, protocol: RTMPClientProtocol) -> None:
        self._connecting = None
        if self.closed and not protocol.lost:
            self._close(protocol)

    def _connect_failed(self, failure) -> None:
        self._connecting = None
        if self.closed or failure.check(defer.CancelledError):
            return
        self._failed(describe_connect_failure(failure))

    def _failed(self, error: UpstreamError) -> None:
        """This attempt is over: count it, queue from the last keyframe, try again after the backoff."""
        if self.closed:
            return
        now = self.reactor.seconds()
        was_live = self.publishing
        self.protocol = None
        self.publishing = False
        self._cancel_timers()
        self._gate.resume()
        self.errors[error.kind] = self.errors.get(error.kind, 0) + 1
        self.last_error, self.last_error_at = error, now
        if was_live:
            self._down_since = now
            if now - self._live_since >= STABLE_AFTER_S:
                self._backoff.reset()
            self._queue_from_last_keyframe()
        elif self._down_since is None:
            self._down_since = now
        delay = self._backoff.next_delay(error)
        self._set_state(UpstreamState.BACKING_OFF, error=error, delay=delay)
        self._retry = self.reactor.callLater(delay, self._connect)

    # -- from the upstream protocol -------------------------------------------------

    def upstream_connected(self, protocol: RTMPClientProtocol) -> None:
        self._connections.add(protocol)
        if self.closed:
            self._close(protocol)
            return
        self.protocol = protocol
        self._publish_timer = self.reactor.callLater(self.config.connect_timeout, self._publish_timed_out, protocol)

    def upstream_publishing(self, protocol: RTMPClientProtocol) -> None:
        if protocol is not self.protocol:
            return
        self._cancel_timers()
        self.publishing = True
        now = self.reactor.seconds()
        self._live_since = now
        down_for = None if self._down_since is None else now - self._down_since
        self._down_since = None
        self._set_state(UpstreamState.LIVE, down_for=down_for)
        if self._spacing is not None:
            self._spacing.reset()
        session = protocol.session
        # A resumed publish starts where the queue does: metadata and headers carry its
        # first timestamp, so the upstream's timeline never steps back (nor jumps from 0).
        # The sequence headers are the stream's (one cache: LiveStream's), whenever they came.
        start = self._queue[0].timestamp if self._queue else self._last_timestamp
        if self.metadata is not None:
            session.send_metadata(self.metadata, timestamp=start)
        for header in self.stream.sequence_headers():
            session.send_media(header.type_id, start, header.payload)
        queue, self._queue, self._queued_bytes = self._queue, deque(), 0
        for message in queue:
            self._send(session, message)
        self.bytes_sent += protocol.flush()

    def upstream_failed(self, protocol: RTMPClientProtocol, error: UpstreamError) -> None:
        """The upstream refused the publish or broke the protocol: drop this connection."""
        if protocol is not self.protocol:
            return
        self._failed(error)
        if error.kind == "protocol":
            protocol.transport.abortConnection()
        else:
            self._close(protocol)

    def _close(self, protocol: RTMPClientProtocol) -> None:
        """Close after what is written has gone out, but not wait for ever."""
        protocol.transport.loseConnection()

        def abort_if_open():
            if not protocol.lost:
                protocol.transport.abortConnection()

        self.reactor.callLater(CLOSE_GRACE_S, abort_if_open)

    def upstream_lost(self, protocol: RTMPClientProtocol, reason) -> None:
        self._connections.discard(protocol)
        if protocol is self.protocol:
            phase = "publish" if self.publishing else "connect"
            self._failed(describe_loss(reason, phase=phase, target=self.target, tls=protocol.verification))
        if not self._connections:
            waiters, self._close_waiters = self._close_waiters, []
            for d in waiters:
                if not d.called:  # a bounded wait may have given up on it
                    d.callback(None)

    def upstream_paused(self, protocol: RTMPClientProtocol) -> None:
        if protocol is not self.protocol:
            return
        self._gate.pause()
        if self._stall_timer is None:
            self._stall_timer = self.reactor.callLater(self.config.connect_timeout, self._stalled, protocol)

    def upstream_resumed(self, protocol: RTMPClientProtocol) -> None:
        if protocol is not self.protocol:
            return
        self._gate.resume()
        if self._stall_timer is not None and self._stall_timer.active():
            self._stall_timer.cancel()
        self._stall_timer = None

    def _publish_timed_out(self, protocol: RTMPClientProtocol) -> None:
        self._publish_timer = None
        if protocol is self.protocol and not self.publishing:
            self._failed(UpstreamError("timeout", f"publish not accepted within {self.config.connect_timeout:g} s"))
            protocol.transport.abortConnection()

    def _stalled(self, protocol: RTMPClientProtocol) -> None:
        self._stall_timer = None
        if protocol is self.protocol:
            self._failed(UpstreamError("timeout", f"took nothing for {self.config.connect_timeout:g} s (socket full)"))
            protocol.transport.abortConnection()

    # -- MediaSink ----------------------------------------------------------------------

    def on_metadata(self, metadata: dict) -> None:
        self.metadata = metadata
        if self.publishing:
            self.protocol.session.send_metadata(metadata)
            self.bytes_sent += self.protocol.flush()

    def on_media(self, message: MediaMessage) -> None:
        if self.closed:
            return
        self._last_timestamp = message.timestamp
        if not self.publishing:
            if not message.header:  # the stream keeps the headers; they go first on publish
                self._enqueue(message)
            return
        gate = self._gate
        # While the socket takes everything (neither paused nor skipping) the gate admits
        # every message: it is asked only otherwise.
        if gate.paused or gate.skipping:
            was_skipping = gate.skipping
            if not gate.admit(message):
                if not was_skipping:
                    self.log.warn(
                        "upstream {url} for {path} is {size} bytes behind; skipping to the next keyframe",
                        url=self.masked_url,
                        path=self.path,
                        size=gate.written_while_paused,
                    )
                return
        protocol = self.protocol
        self._send(protocol.session, message)
        self.bytes_sent += protocol.flush()

    def on_stream_end(self) -> None:
        self.stop()

    def _send(self, session: s.ClientSession, message: MediaMessage) -> None:
        type_id = message.type_id
        if type_id == VIDEO:
            if self._spacing is not None:
                message = self._spacing.label(message)
            if not message.header:
                self.frames_sent += 1
        elif type_id == AUDIO and not message.header:
            self.audio_frames_sent += 1
        session.send_media(type_id, message.timestamp, message.payload)
        self.sent_messages += 1

    # -- state ----------------------------------------------------------------------------

    def _set_state(self, state: UpstreamState, *, error: UpstreamError | None = None, delay: float = 0.0, down_for=None) -> None:
        """Log once per change: a new state, or a failure unlike the last one logged."""
        previous, self.state = self.state, state
        if state is UpstreamState.LIVE:
            self._logged_error = None
            after = "" if down_for is None else f" (again, after {down_for:.1f} s and {self.attempts} attempt(s) in all)"
            self.log.info("forwarding {path} to {url}{after}", path=self.path, url=self.masked_url, after=after)
        elif state is UpstreamState.BACKING_OFF:
            if error != self._logged_error or previous is UpstreamState.LIVE:
                self._logged_error = error
                self.log.warn(
                    "upstream {url} for {path}: {error}; trying again in {delay:g} s (attempt {attempt}, "
                    "retrying while the stream lives)",
                    url=self.masked_url,
                    path=self.path,
                    error=error.message,
                    kind=error.kind,
                    delay=delay,
                    attempt=self.attempts,
                )
        elif state is UpstreamState.STOPPED and previous is not UpstreamState.STOPPED:
            self.log.info("ended the upstream publish of {path} to {url}", path=self.path, url=self.masked_url)

    def status(self) -> UpstreamStatus:
        """This destination now (see ``UpstreamStatus`` for the fields)."""
        state = self.state
        if state is UpstreamState.LIVE and getattr(self.stream, "bridging", False):
            state = UpstreamState.BRIDGING
        age = None
        if self.last_error_at is not None and self.reactor is not None:
            age = self.reactor.seconds() - self.last_error_at
        return UpstreamStatus(
            url=self.masked_url,
            app=self.target.app,
            profile=self.destination.profile,
            state=state,
            attempts=self.attempts,
            errors=tuple(sorted(self.errors.items())),
            last_error=self.last_error,
            last_error_age_s=age,
            bytes_sent=self.bytes_sent,
            frames_sent=self.frames_sent,
            audio_frames_sent=self.audio_frames_sent,
            dropped=self.dropped,
            queue_bytes=self._queued_bytes,
            queue_messages=len(self._queue),
            queue_limit=self.config.queue_bytes,
        )

    def info(self) -> dict:
        """This destination as ``/api/streams`` shows it."""
        return self.status().as_dict()

    # -- bounds -------------------------------------------------------------------------

    def _enqueue(self, message: MediaMessage) -> None:
        if not self._gate.admit(message):  # after a whole queue was dropped: from the next keyframe on
            return
        self._queue.append(message)
        self._queued_bytes += len(message.payload)
        if self._queued_bytes > self.config.queue_bytes:
            self._drop_oldest_gops()

    def _drop_oldest_gops(self) -> None:
        """Over the bound before the upstream took the publish: drop whole GOPs from
        the head; if even the newest GOP does not fit, drop it all and wait for a keyframe."""
        queue = self._queue
        while self._queued_bytes > self.config.queue_bytes and queue:
            self._queued_bytes -= len(queue.popleft().payload)
            self._queue_dropped += 1
            while queue and not queue[0].keyframe:
                self._queued_bytes -= len(queue.popleft().payload)
                self._queue_dropped += 1
        if not queue:
            self._queued_bytes = 0
            self._gate.skip_to_keyframe()

    def _queue_from_last_keyframe(self) -> None:
        """After a loss: what the upstream may not have got, from the stream's last keyframe on."""
        self._queue.clear()
        self._queued_bytes = 0
        since = getattr(self.stream, "since_keyframe", None)
        messages = since() if since is not None else ()
        if not messages:
            self._gate.skip_to_keyframe()  # wait for the next keyframe
            return
        self._gate.skipping = False
        for message in messages:
            self._enqueue(message)

    def _cancel_timers(self) -> None:
        for name in ("_publish_timer", "_stall_timer"):
            timer = getattr(self, name)
            if timer is not None and timer.active():
                timer.cancel()
            setattr(self, name, None)
