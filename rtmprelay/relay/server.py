"""The RTMP server: a thin Twisted protocol around ``ServerSession``.

It feeds bytes to the session, acts on its events through the stream
registry, and closes only its own connection, with one log line naming what
was wrong and where, when the peer breaks the protocol.

Admission (``rtmprelay.relay.admission``): every publish and play becomes an
``AdmissionRequest`` that the factory's ``AdmissionChain`` (signed URLs, HTTP
hooks, the cloud's upstream lookup) decides on. A publish waits, holding its
path so that a second publisher of it is refused at once
(``NetStream.Publish.BadName``), as nginx-rtmp's ``on_publish`` holds the
publish until its HTTP call answers. Media sent meanwhile is dropped by the
session (real clients wait for ``NetStream.Publish.Start``). On success the
stream starts with the chain's grant (``LiveStream.admission``); on refusal
the client gets an error onStatus whose code follows the refusal's category
(``NetStream.Publish.Unauthorized`` or ``.Rejected``; ``NetStream.Play.Failed``
for a play, which librtmp players close on) and whose description is the
refusal's reason (never a signature or a secret), and the connection stays
open for the client to close, as for a taken name. Each refusal is logged once
with the path and the peer and counted as ``{action}_{kind}`` in the factory's
``counters.requests_refused``. The checks bound their own time (the hooks'
timeout, the cloud client's retries). A client that goes away while waiting
frees its path at once; the chain's Deferred is cancelled and its late answer
ignored. Plays with no check to pass start at once.
"""

from __future__ import annotations

import itertools
from collections import Counter

import attrs
from twisted.internet import interfaces
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from rtmprelay.errors import ProtocolError
from rtmprelay.media.gate import KeyframeGate
from rtmprelay.media.message import MediaMessage
from rtmprelay.names import printable
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp import session as s
from rtmprelay.rtmp.amf0 import ECMAArray
from rtmprelay.rtmp.connection import ConnectionConfig, HandshakeCompleted, MessageDropped
from rtmprelay.relay.admission import (
    PLAY,
    PUBLISH,
    AdmissionChain,
    AdmissionRefused,
    AdmissionRequest,
    Admissions,
    PathHookCheck,
    PendingAdmission,
    Refusal,
)
from rtmprelay.relay.limits import LimitCounters, ServerLimits, Throttle
from rtmprelay.relay.registry import LiveStream, StreamRegistry
from rtmprelay.relay.transport import TURN, reset_connection, set_tcp_nodelay

DEFAULT_HANDSHAKE_TIMEOUT = ServerLimits().handshake_timeout
CLOSE_GRACE_SECONDS = 5.0
#: How often the factory checks every connection's timeouts (they fire up to this late).
SWEEP_INTERVAL = 1.0
#: How often held media is checked for release when nothing arrives.
POLL_INTERVAL = 0.05
#: The message budget is refilled at most this often (a read is not worth the sums): a
#: tenth of a second earns 100 of the default burst's 4,000 messages, so a connection
#: runs out only in a flood, as before.
REFILL_INTERVAL = 0.1
#: A player whose socket is this far behind loses frames up to the next keyframe
#: instead of growing our memory (nginx-rtmp drops on slow clients likewise).
DEFAULT_PLAYER_BUFFER_BYTES = 8 * 1024 * 1024


@attrs.frozen
class ServerConfig:
    connection: ConnectionConfig = ConnectionConfig()
    limits: ServerLimits = ServerLimits()
    player_buffer_bytes: int = DEFAULT_PLAYER_BUFFER_BYTES


#: What a refused publish or play is told, by action and refusal category.
_REFUSAL_STATUS = {
    (PUBLISH, Refusal.UNAUTHORIZED): s.Status.PUBLISH_UNAUTHORIZED,
    (PUBLISH, Refusal.REJECTED): s.Status.PUBLISH_REJECTED,
    (PLAY, Refusal.UNAUTHORIZED): s.Status.PLAY_FAILED,
    (PLAY, Refusal.REJECTED): s.Status.PLAY_FAILED,
}
_CLIENT_IDS = itertools.count(1)


class RTMPServerProtocol(Protocol):
    log = Logger()

    def __init__(self, registry: StreamRegistry, config: ServerConfig, clock, admissions: Admissions | None = None) -> None:
        self.registry = registry
        self.config = config
        self.clock = clock
        self.admissions = admissions if admissions is not None else Admissions(AdmissionChain())
        self.session = s.ServerSession(config.connection)
        self._published: dict[int, LiveStream] = {}
        self._admitting: dict[int, PendingAdmission] = {}
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
        if self.config.limits.max_messages_per_second:
            # A full bucket from the start (refills come at most every REFILL_INTERVAL).
            self.session.connection.message_budget = self.config.limits.message_burst
        self._faults_logged: set = set()
        self._drops_logged = 0
        self.client_id = str(next(_CLIENT_IDS))
        self._connect_object: dict = {}

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
        # One turn: what these bytes make every connection send (players, upstreams) leaves in one send each.
        with TURN:
            self._data_received(data)

    def _data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self.last_received = now = self.clock.seconds()
        self._ping_sent_at = None
        if now - self._tokens_at >= REFILL_INTERVAL:
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
        published = self._published
        for event in events:
            try:
                if type(event) is s.MediaReceived:  # nearly every event, handled here: no dispatch
                    stream = published.get(event.stream_id)
                    if stream is not None:
                        self.last_media = now  # when these bytes were read: one clock call per read
                        if stream.publish_media(event.message, now) and self._poller is None:
                            self._start_polling()
                    continue
                handler = _EVENT_HANDLERS.get(type(event))
                if handler is None:
                    continue
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
            self.registry.stop(stream, self, unpublished=True)
        self._published.clear()
        for player in list(self._players.values()):
            self.registry.unsubscribe(player.path, player)
        self._players.clear()

    # -- Publisher interface for the registry's backpressure ------------------------

    def drop_publisher(self, stream: LiveStream) -> None:
        """A new publisher took ``stream`` over from this silent connection: close it."""
        for stream_id, published in list(self._published.items()):
            if published is stream:
                del self._published[stream_id]
        self.log.warn("dropping {peer}, publisher of {path}: a new publisher took the path over", peer=self.peer, path=stream.path)
        if self.transport is not None:
            self.transport.abortConnection()

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
        # The app's query string may hold a signature: it stays out of the log.
        self.log.debug("connect from {peer} app={app}", peer=self.peer, app=printable(event.app.partition("?")[0]))
        self._connect_object = event.command_object if isinstance(event.command_object, dict) else {}
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
        if not self.session.publish_pending(event.stream_id):
            return  # withdrawn later in the same read: nothing to decide or refuse
        if self._over_publish_limit(event):
            return
        if self.admissions.waiting(event.path) or not self.registry.takes_publish(event.path):
            self._reject_taken(event.stream_id, event.path)
            return
        self._wait_for_admission(PendingAdmission(event.stream_id, self._request(PUBLISH, event, event.publish_type)))

    def _on_play(self, event: s.PlayRequested) -> None:
        self._drop_admission(event.stream_id)
        if not self.session.play_pending(event.stream_id):
            return
        self._wait_for_admission(PendingAdmission(event.stream_id, self._request(PLAY, event, "")))

    def publishes_admitting(self) -> int:
        return sum(1 for pending in self._admitting.values() if pending.request.action == PUBLISH)

    def _request(self, action: str, event, publish_type: str) -> AdmissionRequest:
        connect = self._connect_object
        return AdmissionRequest(
            action=action,
            path=event.path,
            query=event.query,
            peer_host=self.host,
            app=(self.session.app or "").partition("?")[0],
            name=event.name.partition("?")[0],
            tc_url=self.session.tc_url,
            client_id=self.client_id,
            publish_type=publish_type,
            flash_version=_connect_string(connect, "flashVer"),
            swf_url=_connect_string(connect, "swfUrl"),
            page_url=_connect_string(connect, "pageUrl"),
        )

    def _start_publish(self, stream_id: int, path: str, admission: object) -> None:
        if not self.session.publish_pending(stream_id):
            # closeStream/deleteStream while waiting: the client gave up on this publish.
            self.log.info("publish {path} from {peer} was withdrawn while waiting for admission", path=path, peer=self.peer)
            return
        if not self.registry.takes_publish(path):
            self._reject_taken(stream_id, path)
            return
        self.session.accept_publish(stream_id)
        stream = self.registry.start(path, self, admission)
        self._published[stream_id] = stream
        self._start_polling()
        self.log.info("publish {path} from {peer}", path=path, peer=self.peer)

    def _start_play(self, stream_id: int, path: str) -> None:
        if not self.session.play_pending(stream_id):
            self.log.info("play {path} to {peer} was withdrawn while waiting for admission", path=path, peer=self.peer)
            return
        self.session.accept_play(stream_id)
        player = _PlayerSink(self, stream_id, path, self.config.player_buffer_bytes)
        self._players[stream_id] = player
        live = self.registry.subscribe(path, player)
        self.log.info("play {path} to {peer}{waiting}", path=path, peer=self.peer, waiting="" if live else " (waiting for publisher)")

    def _reject_taken(self, stream_id: int, path: str) -> None:
        self._count_request_refused("publish_taken")
        self.log.warn("rejecting publish of {path} from {peer}: already being published", path=path, peer=self.peer)
        self.session.reject_publish(stream_id, s.Status.PUBLISH_BAD_NAME, f"{path} is already being published.")

    # -- admission -------------------------------------------------------------------

    def _wait_for_admission(self, pending: PendingAdmission) -> None:
        self._admitting[pending.stream_id] = pending
        d = self.admissions.request(pending)
        pending.deferred = d
        d.addCallbacks(self._admitted, self._refused, callbackArgs=(pending,), errbackArgs=(pending,))
        d.addErrback(
            lambda failure: self.log.failure(
                "admission of {action} {path} from {peer} went wrong", failure, action=pending.request.action, path=pending.path, peer=self.peer
            )
        )
        if self._admitting.get(pending.stream_id) is pending:
            self.log.info("{action} {path} from {peer} waits for admission", action=pending.request.action, path=pending.path, peer=self.peer)

    def _settle(self, pending: PendingAdmission) -> bool:
        """Forget a finished wait; False when nobody waits for it any more."""
        if self._admitting.get(pending.stream_id) is not pending:
            return False
        del self._admitting[pending.stream_id]
        self.admissions.release(pending)
        return not self._closed

    def _admitted(self, admission: object, pending: PendingAdmission) -> None:
        if not self._settle(pending):
            return
        if pending.request.action == PUBLISH:
            self._start_publish(pending.stream_id, pending.path, admission)
        else:
            self._start_play(pending.stream_id, pending.path)
        self._flush()

    def _refused(self, failure, pending: PendingAdmission) -> None:
        if not self._settle(pending):
            return  # cancelled, or its client is gone: nothing to tell
        action = pending.request.action
        refusal = failure.value
        if not isinstance(refusal, AdmissionRefused):
            refusal = AdmissionRefused(f"{action} admission failed", kind="error", failure=failure)
        self._count_request_refused(f"{action}_{refusal.kind}")
        if refusal.failure is not None:
            self.log.failure(
                "rejecting {action} of {path} from {peer}: admission hook failed",
                refusal.failure,
                action=action,
                path=pending.path,
                peer=self.peer,
            )
        else:
            self.log.warn(
                "rejecting {action} of {path} from {peer}: {why} ({kind})",
                action=action,
                path=pending.path,
                peer=self.peer,
                why=refusal.reason,
                kind=refusal.kind,
            )
        if action == PUBLISH:
            pending_now, reject = self.session.publish_pending, self.session.reject_publish
        else:
            pending_now, reject = self.session.play_pending, self.session.reject_play
        if not pending_now(pending.stream_id):
            return  # withdrawn meanwhile
        reject(pending.stream_id, _REFUSAL_STATUS[(action, refusal.category)], refusal.reason)
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

    def _on_publish_ended(self, event: s.PublishEnded) -> None:
        stream = self._published.pop(event.stream_id, None)
        if stream is not None:
            self.registry.stop(stream, self)

    def _on_play_ended(self, event: s.PlayEnded) -> None:
        player = self._players.pop(event.stream_id, None)
        if player is not None:
            self.registry.unsubscribe(player.path, player)

    # -- helpers ---------------------------------------------------------------------

    def _start_polling(self) -> None:
        """A cleaner holds messages for interleaving; release them even when input pauses.

        Only while one holds something: a message that arrives releases what it can
        itself, and the fillers (silence, skip frames) run on the other track's
        arrivals, so a timer that fired every 50 ms for every publisher found nothing
        to do nearly always (6 of 4,617 messages of the forwarding bench's input left
        anything held) and cost a reactor wake-up each time."""
        if self._poller is None and self.registry.cleaning is not None:
            self._poller = self.clock.callLater(POLL_INTERVAL, self._poll)

    def _poll(self) -> None:
        self._poller = None
        if self._closed or not self._published:
            return
        now = self.clock.seconds()
        streams = list(self._published.values())
        with TURN:  # what the cleaners release leaves in one send per connection
            for stream in streams:
                stream.poll(now)
        if any(stream.holding for stream in streams):
            self._poller = self.clock.callLater(POLL_INTERVAL, self._poll)

    def _flush(self) -> None:
        parts = self.session.connection.parts_to_send()
        if parts and not self._closed:
            TURN.write(self.transport, parts)

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
        rate = limits.max_messages_per_second
        earned = int((self.last_received - self._tokens_at) * rate)
        if left + earned >= limits.message_burst:
            connection.message_budget = limits.message_burst
            self._tokens_at = self.last_received
        elif earned:
            # Only the whole tokens' time is spent: the fraction carries over, or reads
            # closer together than 1/rate would never earn one.
            connection.message_budget = left + earned
            self._tokens_at += earned / rate

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


def _connect_string(command_object: dict, key: str) -> str:
    value = command_object.get(key)
    return value if isinstance(value, str) else ""


_EVENT_HANDLERS = {
    HandshakeCompleted: RTMPServerProtocol._on_handshake_completed,
    s.ConnectRequested: RTMPServerProtocol._on_connect,
    s.PublishRequested: RTMPServerProtocol._on_publish,
    s.MetadataReceived: RTMPServerProtocol._on_metadata,
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

    def on_media(self, message: MediaMessage) -> None:
        if not self.gate.admit(message):
            return
        self.protocol.session.send_media(self.stream_id, message.type_id, message.timestamp, message.payload)
        self.protocol._flush()

    def on_stream_end(self) -> None:
        self.protocol.session.end_play(self.stream_id)
        self.protocol._flush()
        # The player stays subscribed (waiting) should the publisher come back, as nginx-rtmp does.
        self.protocol.registry.subscribe(self.path, self)


class RTMPServerFactory(Factory):
    """``admission``: the chain every publish and play waits for (see the module doc);
    ``admit(path) -> Deferred``, the older form, is a chain of that one publish check.

    The factory enforces the count limits (connections in all and per address)
    and sweeps its connections every ``SWEEP_INTERVAL`` for their time limits.
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        registry: StreamRegistry,
        config: ServerConfig = ServerConfig(),
        clock=None,
        admit=None,
        admission: AdmissionChain | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.registry = registry
        self.config = config
        self.clock = clock
        if admission is None:
            admission = AdmissionChain([PathHookCheck(admit)] if admit is not None else [])
        elif admit is not None:
            raise ValueError("give admit or admission, not both")
        self.admissions = Admissions(admission)
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
        return sum(len(p._published) + p.publishes_admitting() for p in self.connections if p.host == host)

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
