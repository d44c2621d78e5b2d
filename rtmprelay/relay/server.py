"""The RTMP server: a thin Twisted protocol around ``ServerSession``.

It feeds bytes to the session, acts on its events through the stream
registry, and closes only its own connection, with one log line naming what
was wrong and where, when the peer breaks the protocol.

Publish admission: the factory may take an ``admit(path) -> Deferred`` hook
(the cloud's upstream lookup). A publish then waits, holding its path so that a
second publisher of it is refused at once (``NetStream.Publish.BadName``), as
nginx-rtmp's ``on_publish`` holds the publish until its HTTP call answers.
Media sent meanwhile is dropped by the session (real clients wait for
``NetStream.Publish.Start``). On success the stream starts with the hook's
answer (``LiveStream.admission``); on failure the publisher gets
``NetStream.Publish.Rejected`` whose description is the error's message (a
``RelayError``'s; anything else reads "publish admission failed") and the
connection stays open for the client to close, as for a taken name. The hook
bounds its own time (the cloud client's retries). A publisher that goes away
while waiting frees its path at once; the hook's Deferred is cancelled and its
late answer ignored.
"""

from __future__ import annotations

from collections import Counter

import attrs
from twisted.internet import defer, interfaces
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from rtmprelay.errors import ProtocolError, RelayError, SessionError
from rtmprelay.names import printable
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp import session as s
from rtmprelay.rtmp.amf0 import ECMAArray
from rtmprelay.rtmp.connection import ConnectionConfig, HandshakeCompleted, MessageDropped
from rtmprelay.relay.limits import LimitCounters, ServerLimits, Throttle
from rtmprelay.relay.registry import LiveStream, StreamRegistry
from rtmprelay.relay.transport import KeyframeGate, reset_connection, set_tcp_nodelay

DEFAULT_HANDSHAKE_TIMEOUT = ServerLimits().handshake_timeout
CLOSE_GRACE_SECONDS = 5.0
#: How often the factory checks every connection's timeouts (they fire up to this late).
SWEEP_INTERVAL = 1.0
#: How often held media is checked for release when nothing arrives.
POLL_INTERVAL = 0.05
#: A player whose socket is this far behind loses frames up to the next keyframe
#: instead of growing our memory (nginx-rtmp drops on slow clients likewise).
DEFAULT_PLAYER_BUFFER_BYTES = 8 * 1024 * 1024


@attrs.frozen
class ServerConfig:
    connection: ConnectionConfig = ConnectionConfig()
    limits: ServerLimits = ServerLimits()
    player_buffer_bytes: int = DEFAULT_PLAYER_BUFFER_BYTES


@attrs.define(eq=False)
class _PendingPublish:
    """A publish waiting for the admission hook."""

    stream_id: int
    path: str
    deferred: defer.Deferred | None = None


class Admissions:
    """The admission hook, and the paths whose publish waits on it (across connections)."""

    def __init__(self, hook) -> None:
        self.hook = hook
        self._waiting: dict[str, _PendingPublish] = {}

    def waiting(self, path: str) -> bool:
        return path in self._waiting

    def request(self, pending: _PendingPublish) -> defer.Deferred:
        self._waiting[pending.path] = pending
        return defer.maybeDeferred(self.hook, pending.path)

    def release(self, pending: _PendingPublish) -> None:
        if self._waiting.get(pending.path) is pending:
            del self._waiting[pending.path]


class RTMPServerProtocol(Protocol):
    log = Logger()

    def __init__(self, registry: StreamRegistry, config: ServerConfig, clock, admissions: Admissions | None = None) -> None:
        self.registry = registry
        self.config = config
        self.clock = clock
        self.admissions = admissions
        self.session = s.ServerSession(config.connection)
        self._published: dict[int, LiveStream] = {}
        self._admitting: dict[int, _PendingPublish] = {}
        self._players: dict[int, _PlayerSink] = {}
        self._handshake_timer = None
        self._poller = None
        self._closed = False
        self._lost = False
        self.peer = "?"
        self.host = "?"
        self.factory: RTMPServerFactory | None = None
        now = clock.seconds()
        self.connected_at = now
        self.last_received = now
        self.last_media = now
        #: Since when the connection has had nothing to do (no publish, play or admission).
        self._aimless_since: float | None = None
        self._ping_sent_at: float | None = None
        self._publishing_since: float | None = None
        self._tokens_at = now
        self._faults_logged: set = set()
        self._drops_logged = 0

    # -- Twisted -----------------------------------------------------------------

    def connectionMade(self) -> None:
        set_tcp_nodelay(self.transport)
        peer = self.transport.getPeer()
        self.host = str(getattr(peer, "host", "?"))
        self.peer = f"{self.host}:{getattr(peer, 'port', '?')}"
        self._handshake_timer = self.clock.callLater(self.config.limits.handshake_timeout, self._handshake_timed_out)
        if self.factory is not None:
            self.factory.connection_opened(self)

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        self.last_received = self.clock.seconds()
        self._ping_sent_at = None
        self._refill_message_budget()
        try:
            events = self.session.receive_data(data)
        except ProtocolError as error:
            self._close_for(type(error).__name__, f"{error.what} (at {error.where or '?'})")
            return
        except Exception:
            # Our reading of this peer's bytes failed: its state is unknown, so it goes, alone.
            self.log.failure("closing RTMP connection from {peer}: its data could not be read", peer=self.peer)
            self._count_closed("internal_error")
            self._flush()
            self._close()
            return
        for event in events:
            handler = _EVENT_HANDLERS.get(type(event))
            if handler is None:
                continue
            try:
                handler(self, event)
            except ProtocolError as error:
                self._close_for(type(error).__name__, f"{error.what} (at {error.where or '?'})")
                return
            except Exception:
                # One message's handling broke (a bug, or media we could not process): the
                # connection and every stream go on; logged once per kind, counted always.
                self._fault(type(event).__name__)
        self._flush()

    def connectionLost(self, reason=None) -> None:
        self._closed = True
        self._lost = True
        if self.factory is not None:
            self.factory.connection_closed(self)
        self._cancel_handshake_timer()
        if self._poller is not None and self._poller.active():
            self._poller.cancel()
        self._poller = None
        for stream_id in list(self._admitting):
            self._drop_admission(stream_id)
        for stream in list(self._published.values()):
            self.registry.stop(stream)
        self._published.clear()
        for player in list(self._players.values()):
            self.registry.unsubscribe(player.path, player)
        self._players.clear()

    # -- Publisher interface for the registry's backpressure ------------------------

    def pause_reading(self) -> None:
        self.transport.pauseProducing()

    def resume_reading(self) -> None:
        if not self._closed:
            self.transport.resumeProducing()

    # -- session events --------------------------------------------------------------

    def _on_handshake_completed(self, event) -> None:
        self._cancel_handshake_timer()
        self._aimless_since = self.clock.seconds()

    def _on_connect(self, event: s.ConnectRequested) -> None:
        self.log.debug("connect from {peer} app={app}", peer=self.peer, app=printable(event.app))
        self.session.accept_connect()

    def _on_request_refused(self, event: s.RequestRefused) -> None:
        self._count_request_refused(f"{event.action}_bad_name")
        self.log.warn("refusing {action} from {peer}: {reason}", action=event.action, peer=self.peer, reason=event.reason)

    def _on_message_dropped(self, event: MessageDropped) -> None:
        if self.factory is not None:
            self.factory.counters.messages_dropped["unreadable_data"] += 1
        self._drops_logged += 1
        if self._drops_logged <= 3:  # the first few name the problem; the counter has the rest
            self.log.warn(
                "dropping a data message from {peer}: {reason}{more}",
                peer=self.peer,
                reason=event.reason,
                more="; further ones are only counted" if self._drops_logged == 3 else "",
            )

    def _on_publish(self, event: s.PublishRequested) -> None:
        self._drop_admission(event.stream_id)  # the client re-published on this stream while waiting
        if self._over_publish_limit(event):
            return
        if self.admissions is None:
            self._start_publish(event.stream_id, event.path, None)
            return
        if self.admissions.waiting(event.path) or self.registry.get(event.path) is not None:
            self._reject_taken(event.stream_id, event.path)
            return
        pending = _PendingPublish(event.stream_id, event.path)
        self._admitting[event.stream_id] = pending
        d = self.admissions.request(pending)
        pending.deferred = d
        d.addCallbacks(self._admitted, self._refused, callbackArgs=(pending,), errbackArgs=(pending,))
        d.addErrback(lambda failure: self.log.failure("admission of {path} from {peer} went wrong", failure, path=event.path, peer=self.peer))
        if self._admitting.get(event.stream_id) is pending:
            self.log.info("publish {path} from {peer} waits for admission", path=event.path, peer=self.peer)

    def _start_publish(self, stream_id: int, path: str, admission: object) -> None:
        stream = self.registry.start(path, self, admission)
        if stream is None:
            self._reject_taken(stream_id, path)
            return
        self._published[stream_id] = stream
        self._start_polling()
        self.session.accept_publish(stream_id)
        self.log.info("publish {path} from {peer}", path=path, peer=self.peer)

    def _reject_taken(self, stream_id: int, path: str) -> None:
        self.log.warn("rejecting publish of {path} from {peer}: already being published", path=path, peer=self.peer)
        self.session.reject_publish(stream_id, s.Status.PUBLISH_BAD_NAME, f"{path} is already being published.")

    # -- admission -------------------------------------------------------------------

    def _settle(self, pending: _PendingPublish) -> bool:
        """Forget a finished wait; False when nobody waits for it any more."""
        if self._admitting.get(pending.stream_id) is not pending:
            return False
        del self._admitting[pending.stream_id]
        self.admissions.release(pending)
        return not self._closed

    def _admitted(self, admission: object, pending: _PendingPublish) -> None:
        if not self._settle(pending):
            return
        if self.registry.get(pending.path) is not None:
            self._reject_taken(pending.stream_id, pending.path)
        else:
            try:
                self.session.accept_publish(pending.stream_id)
            except SessionError:
                # closeStream/deleteStream while waiting: the client gave up on this publish.
                self.log.info("publish {path} from {peer} was withdrawn while waiting for admission", path=pending.path, peer=self.peer)
                return
            stream = self.registry.start(pending.path, self, admission)
            self._published[pending.stream_id] = stream
            self._start_polling()
            self.log.info("publish {path} from {peer}", path=pending.path, peer=self.peer)
        self._flush()

    def _refused(self, failure, pending: _PendingPublish) -> None:
        if not self._settle(pending):
            return  # cancelled, or its publisher is gone: nothing to tell
        error = failure.value
        if isinstance(error, RelayError):
            description = str(error)
            self.log.warn("rejecting publish of {path} from {peer}: {why}", path=pending.path, peer=self.peer, why=description)
        else:
            description = "publish admission failed"
            self.log.failure("rejecting publish of {path} from {peer}: admission hook failed", failure, path=pending.path, peer=self.peer)
        try:
            self.session.reject_publish(pending.stream_id, s.Status.PUBLISH_REJECTED, description)
        except SessionError:
            return  # withdrawn meanwhile
        self._flush()

    def _drop_admission(self, stream_id: int) -> None:
        pending = self._admitting.pop(stream_id, None)
        if pending is None:
            return
        self.admissions.release(pending)
        if pending.deferred is not None:
            pending.deferred.cancel()  # errbacks into _refused, which ignores it

    def _on_metadata(self, event: s.MetadataReceived) -> None:
        stream = self._published.get(event.stream_id)
        if stream is None:
            return
        if event.altered:
            if self.factory is not None:
                self.factory.counters.messages_dropped["metadata_values"] += event.altered
            self.log.info(
                "onMetaData of {path} from {peer}: {count} values left out or cut (unsupported types or over the bounds)",
                path=stream.path,
                peer=self.peer,
                count=event.altered,
            )
        stream.publish_metadata(event.metadata)

    def _on_media(self, event: s.MediaReceived) -> None:
        stream = self._published.get(event.stream_id)
        if stream is not None:
            now = self.clock.seconds()
            self.last_media = now
            stream.publish_media(event.type_id, event.timestamp, event.payload, now)

    def _on_publish_ended(self, event: s.PublishEnded) -> None:
        stream = self._published.pop(event.stream_id, None)
        if stream is not None:
            self.registry.stop(stream)

    def _on_play(self, event: s.PlayRequested) -> None:
        self.session.accept_play(event.stream_id)
        player = _PlayerSink(self, event.stream_id, event.path, self.config.player_buffer_bytes)
        self._players[event.stream_id] = player
        live = self.registry.subscribe(event.path, player)
        self.log.info("play {path} to {peer}{waiting}", path=event.path, peer=self.peer, waiting="" if live else " (waiting for publisher)")

    def _on_play_ended(self, event: s.PlayEnded) -> None:
        player = self._players.pop(event.stream_id, None)
        if player is not None:
            self.registry.unsubscribe(player.path, player)

    # -- helpers ---------------------------------------------------------------------

    def _start_polling(self) -> None:
        """A cleaner holds messages for interleaving; release them even when input pauses."""
        if self._poller is None and self.registry.cleaning is not None:
            self._poller = self.clock.callLater(POLL_INTERVAL, self._poll)

    def _poll(self) -> None:
        self._poller = None
        if self._closed or not self._published:
            return
        now = self.clock.seconds()
        for stream in list(self._published.values()):
            stream.poll(now)
        self._poller = self.clock.callLater(POLL_INTERVAL, self._poll)

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and not self._closed:
            self.transport.write(data)

    def _close(self) -> None:
        # loseConnection, not abort: what we queued (an onStatus error) goes out first.
        if self._closed:
            return
        self._closed = True
        self.transport.loseConnection()
        # A peer that stops reading would keep a half-closed socket forever.
        self.clock.callLater(CLOSE_GRACE_SECONDS, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self._lost:
            reset_connection(self.transport)

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if not self.session.connection.handshake_done:
            self._close_for(
                "handshake_timeout", f"handshake not finished within {self.config.limits.handshake_timeout:g} s (at handshake)", reset=True
            )

    # -- limits ------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """handshake, connected (nothing to do yet), admitting, publishing, playing or closing."""
        if self._closed:
            return "closing"
        if not self.session.connection.handshake_done:
            return "handshake"
        if self._published:
            return "publishing"
        if self._players:
            return "playing"
        if self._admitting:
            return "admitting"
        return "connected"

    def check_limits(self, now: float) -> None:
        """The factory's sweep: close this connection if one of its time limits passed."""
        if self._closed or not self.session.connection.handshake_done:
            return  # the handshake has its own timer
        limits = self.config.limits
        if self._published or self._players or self._admitting:
            self._aimless_since = None
        elif self._aimless_since is None:
            self._aimless_since = now
        elif now - self._aimless_since >= limits.command_timeout:
            self._close_for("command_timeout", f"no publish or play within {limits.command_timeout:g} s", reset=True)
            return
        if not self._published:
            self._publishing_since = None
        elif self._publishing_since is None:
            self._publishing_since = now  # an admission may have taken long: idle counts from here
        elif now - max(self.last_media, self._publishing_since) >= limits.idle_publisher_timeout:
            self._close_for("idle_publisher", f"published no audio or video for {limits.idle_publisher_timeout:g} s", reset=True)
            return
        if self._ping_sent_at is None:
            if now - self.last_received >= limits.ping_interval:
                self._ping_sent_at = now
                self.session.connection.send(m.PingRequest(int((now - self.connected_at) * 1000) & 0xFFFFFFFF))
                self._flush()
        elif now - self._ping_sent_at >= limits.ping_timeout:
            self._close_for(
                "ping_timeout",
                f"silent for {now - self.last_received:.0f} s, no answer to a ping within {limits.ping_timeout:g} s",
                reset=True,
            )

    def _refill_message_budget(self) -> None:
        """A token bucket of messages (``max_messages_per_second``, up to ``message_burst``):
        the chunk reader refuses the message that finds it empty."""
        limits = self.config.limits
        if not limits.max_messages_per_second:
            return
        connection = self.session.connection
        left = connection.message_budget if connection.message_budget is not None else limits.message_burst
        elapsed = self.last_received - self._tokens_at
        self._tokens_at = self.last_received
        connection.message_budget = min(limits.message_burst, left + int(elapsed * limits.max_messages_per_second))

    def _over_publish_limit(self, event: s.PublishRequested) -> bool:
        limit = self.config.limits.max_publishes_per_address
        if not limit or self.factory is None or self.factory.publishes_from(self.host) < limit:
            return False
        self._count_request_refused("max_publishes_per_address")
        why = f"{limit} streams are already published from {self.host}"
        self.log.warn("refusing publish of {path} from {peer}: {why}", path=event.path, peer=self.peer, why=why)
        self.session.reject_publish(event.stream_id, s.Status.PUBLISH_REJECTED, f"Too many streams: {why}.")
        return True

    def _close_for(self, reason: str, detail: str, *, reset: bool = False) -> None:
        """Close with the one log line that names why.

        A protocol error is closed politely, so that the error we queued goes out
        first. A peer that ran out of time is reset: it may not be reading at all,
        and a polite close would leave its socket (and the data queued for it) in
        the kernel for minutes.
        """
        self.log.warn("closing RTMP connection from {peer}: {detail}", peer=self.peer, detail=detail, reason=reason)
        self._count_closed(reason)
        if reset:
            self._closed = True
            reset_connection(self.transport)
            return
        self._flush()
        self._close()

    def _count_closed(self, reason: str) -> None:
        if self.factory is not None:
            self.factory.counters.connections_closed[reason] += 1

    def _count_request_refused(self, reason: str) -> None:
        if self.factory is not None:
            self.factory.counters.requests_refused[reason] += 1

    def _fault(self, where: str) -> None:
        if self.factory is not None:
            self.factory.counters.faults[where] += 1
        if where not in self._faults_logged:
            self._faults_logged.add(where)
            self.log.failure("handling {where} from {peer} failed; the connection goes on (logged once per kind)", where=where, peer=self.peer)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None


_EVENT_HANDLERS = {
    HandshakeCompleted: RTMPServerProtocol._on_handshake_completed,
    s.ConnectRequested: RTMPServerProtocol._on_connect,
    s.PublishRequested: RTMPServerProtocol._on_publish,
    s.MetadataReceived: RTMPServerProtocol._on_metadata,
    s.MediaReceived: RTMPServerProtocol._on_media,
    s.PublishEnded: RTMPServerProtocol._on_publish_ended,
    s.PlayRequested: RTMPServerProtocol._on_play,
    s.PlayEnded: RTMPServerProtocol._on_play_ended,
    s.RequestRefused: RTMPServerProtocol._on_request_refused,
    MessageDropped: RTMPServerProtocol._on_message_dropped,
}


@implementer(interfaces.IPushProducer)
class _PlayerSink:
    """A playing NetStream as a registry sink; drops to the next keyframe when behind.

    It registers as the producer on its connection's transport so Twisted tells
    it when the socket's buffer is full; while paused it counts what it writes
    and, past its bound, skips frames until the next keyframe.
    """

    def __init__(self, protocol: RTMPServerProtocol, stream_id: int, path: str, buffer_bytes: int) -> None:
        self.protocol = protocol
        self.stream_id = stream_id
        self.path = path
        self.gate = KeyframeGate(buffer_bytes)
        transport = protocol.transport
        if getattr(transport, "producer", None) is None and hasattr(transport, "registerProducer"):
            transport.registerProducer(self, True)

    @property
    def dropped(self) -> int:
        return self.gate.dropped

    # IPushProducer (the transport calls these)
    def pauseProducing(self) -> None:
        self.gate.pause()

    def resumeProducing(self) -> None:
        self.gate.resume()

    def stopProducing(self) -> None:
        self.gate.pause()

    # MediaSink
    def on_metadata(self, metadata: dict) -> None:
        self.protocol.session.connection.send(
            m.Data(("onMetaData", ECMAArray(metadata))), stream_id=self.stream_id, chunk_stream_id=s.CSID_DATA
        )
        self.protocol._flush()

    def on_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        if not self.gate.admit(type_id, payload):
            return
        self.protocol.session.send_media(self.stream_id, type_id, timestamp, payload)
        self.protocol._flush()

    def on_stream_end(self) -> None:
        self.protocol.session.end_play(self.stream_id)
        self.protocol._flush()
        # The player stays subscribed (waiting) should the publisher come back, as nginx-rtmp does.
        self.protocol.registry.subscribe(self.path, self)


class RTMPServerFactory(Factory):
    """``admit(path) -> Deferred``: optional admission hook every publish waits for (see the module doc).

    The factory enforces the count limits (connections in all and per address)
    and sweeps its connections every ``SWEEP_INTERVAL`` for their time limits.
    """

    log = Logger()
    noisy = False

    def __init__(self, registry: StreamRegistry, config: ServerConfig = ServerConfig(), clock=None, admit=None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.registry = registry
        self.config = config
        self.clock = clock
        self.admissions = Admissions(admit) if admit is not None else None
        self.connections: set[RTMPServerProtocol] = set()
        self.counters = LimitCounters()
        self._by_address: Counter[str] = Counter()
        self._refusal_log = Throttle()
        self._sweep_call = None

    def buildProtocol(self, addr):
        host = str(getattr(addr, "host", None) or "?")
        limits = self.config.limits
        if limits.max_connections and len(self.connections) >= limits.max_connections:
            return self._refuse(host, "max_connections", f"{len(self.connections)} connections open (at most {limits.max_connections})")
        if limits.max_connections_per_address and self._by_address[host] >= limits.max_connections_per_address:
            return self._refuse(
                host,
                "max_connections_per_address",
                f"{self._by_address[host]} connections open from {host} (at most {limits.max_connections_per_address})",
            )
        protocol = RTMPServerProtocol(self.registry, self.config, self.clock, self.admissions)
        protocol.factory = self
        return protocol

    def _refuse(self, host: str, reason: str, detail: str) -> None:
        """Twisted closes a connection whose factory builds no protocol, before reading a byte."""
        self.counters.connections_refused[reason] += 1
        held = self._refusal_log.allow((reason, host), self.clock.seconds())
        if held is not None:
            self.log.warn(
                "refusing an RTMP connection from {host}: {detail}{held}",
                host=host,
                detail=detail,
                held=f" ({held} more refused since the last line)" if held else "",
                reason=reason,
            )
        return None

    # -- what the limits count -------------------------------------------------------

    def connection_opened(self, protocol: RTMPServerProtocol) -> None:
        self.connections.add(protocol)
        self._by_address[protocol.host] += 1
        if self._sweep_call is None:
            self._sweep_call = self.clock.callLater(SWEEP_INTERVAL, self._sweep)

    def connection_closed(self, protocol: RTMPServerProtocol) -> None:
        if protocol in self.connections:
            self.connections.discard(protocol)
            left = self._by_address[protocol.host] - 1
            if left > 0:
                self._by_address[protocol.host] = left
            else:
                del self._by_address[protocol.host]

    def publishes_from(self, host: str) -> int:
        return sum(len(p._published) + len(p._admitting) for p in self.connections if p.host == host)

    def connections_by_state(self) -> Counter[str]:
        return Counter(protocol.state for protocol in self.connections)

    def _sweep(self) -> None:
        self._sweep_call = None
        now = self.clock.seconds()
        for protocol in list(self.connections):
            protocol.check_limits(now)
        if self.connections:
            self._sweep_call = self.clock.callLater(SWEEP_INTERVAL, self._sweep)

    def stopFactory(self) -> None:
        if self._sweep_call is not None and self._sweep_call.active():
            self._sweep_call.cancel()
        self._sweep_call = None
