"""Publishing to an upstream RTMP(S) server: a thin protocol around ``ClientSession``.

``UpstreamForwarder`` is the registry sink for one forwarded stream. It queues
what arrives before the upstream accepts the publish (bounded), sends metadata
and sequence headers ahead of any frame, then passes messages straight through.
While the upstream socket is full it pauses the publisher; the bytes written
meanwhile are bounded, past which frames are skipped to the next keyframe.
"""

from __future__ import annotations

from collections import deque

import attrs
from twisted.internet import defer, interfaces
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust
from twisted.logger import Logger
from zope.interface import implementer

from rtmprelay.errors import ProtocolError
from rtmprelay.media import flv
from rtmprelay.rtmp import session as s
from rtmprelay.rtmp.messages import MessageType
from rtmprelay.relay.transport import KeyframeGate, quick_ack, set_tcp_nodelay

#: Media held while the upstream connects, or while its socket is full.
DEFAULT_UPSTREAM_QUEUE_BYTES = 8 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = 10.0


@attrs.frozen
class UpstreamConfig:
    ca_file: str | None = None
    queue_bytes: int = DEFAULT_UPSTREAM_QUEUE_BYTES
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT


def upstream_endpoint(reactor, url: str, config: UpstreamConfig):
    """A client endpoint for an rtmp:// or rtmps:// URL (TLS with SNI and verification)."""
    host, port, _app, _name, tls = s.split_rtmp_url(url)
    endpoint = HostnameEndpoint(reactor, host, port, timeout=config.connect_timeout)
    if not tls:
        return endpoint
    if config.ca_file:
        with open(config.ca_file, "rb") as f:
            trust = Certificate.loadPEM(f.read())
    else:
        trust = platformTrust()
    return wrapClientTLS(optionsForClientTLS(host, trustRoot=trust), endpoint)


@implementer(interfaces.IPushProducer)
class RTMPClientProtocol(Protocol):
    """One publishing connection to an upstream."""

    log = Logger()

    def __init__(self, session: s.ClientSession, forwarder: "UpstreamForwarder") -> None:
        self.session = session
        self.forwarder = forwarder
        self.paused = False
        self.lost = False

    def connectionMade(self) -> None:
        set_tcp_nodelay(self.transport)
        self.transport.registerProducer(self, True)
        self.session.initiate()
        self.flush()

    def dataReceived(self, data: bytes) -> None:
        if not self.session.publishing:
            quick_ack(self.transport)
        try:
            events = self.session.receive_data(data)
        except ProtocolError as error:
            self.log.warn(
                "upstream {url} broke the protocol: {what} (at {where})",
                url=self.forwarder.url,
                what=error.what,
                where=error.where or "?",
            )
            self.transport.abortConnection()
            return
        self.flush()
        for event in events:
            if type(event) is s.PublishStarted:
                self.forwarder.upstream_publishing(self)
            elif type(event) is s.PublishFailed:
                self.forwarder.upstream_failed(f"{event.code}: {event.description}")
                self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        self.lost = True
        self.forwarder.upstream_lost(self, reason)

    def flush(self) -> None:
        data = self.session.data_to_send()
        if data and not self.lost:
            self.transport.write(data)

    # IPushProducer: the upstream transport tells us when its buffer is full.
    def pauseProducing(self) -> None:
        self.paused = True
        self.forwarder.upstream_paused()

    def resumeProducing(self) -> None:
        self.paused = False
        self.forwarder.upstream_resumed()

    def stopProducing(self) -> None:
        self.paused = True


class UpstreamForwarder:
    """Forwards one live stream to one upstream URL (a ``MediaSink``)."""

    log = Logger()

    def __init__(self, reactor, stream, url: str, config: UpstreamConfig = UpstreamConfig()) -> None:
        self.reactor = reactor
        self.stream = stream
        self.url = url
        self.config = config
        self.protocol: RTMPClientProtocol | None = None
        self.publishing = False
        self.closed = False
        self.metadata: dict | None = None
        self.video_header: tuple | None = None
        self.audio_header: tuple | None = None
        self._queue: deque = deque()
        self._queued_bytes = 0
        # Skipping to a keyframe is shared by the queue (before the upstream takes the
        # publish) and the live path (while the upstream socket is full).
        self._gate = KeyframeGate(config.queue_bytes)
        self.sent_messages = 0

    @property
    def dropped(self) -> int:
        return self._gate.dropped

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> defer.Deferred:
        session = s.ClientSession.for_url(self.url)
        endpoint = upstream_endpoint(self.reactor, self.url, self.config)
        factory = Factory.forProtocol(lambda: RTMPClientProtocol(session, self))
        d = endpoint.connect(factory)

        def connected(protocol):
            if self.closed:
                protocol.transport.loseConnection()
                return None
            self.protocol = protocol
            return protocol

        def failed(failure):
            self.log.warn(
                "upstream {url} for {path} failed to connect: {error}",
                url=self.url,
                path=self.stream.path,
                error=failure.getErrorMessage(),
            )
            self.upstream_failed(failure.getErrorMessage())
            return None

        return d.addCallbacks(connected, failed)

    def stop(self) -> None:
        """The publisher went away: unpublish upstream and close."""
        if self.closed:
            return
        self.closed = True
        self.stream.resume_for(self)
        protocol = self.protocol
        if protocol is not None and not protocol.lost:
            protocol.session.close()
            protocol.flush()
            protocol.transport.loseConnection()

    # -- from the upstream protocol -------------------------------------------------

    def upstream_publishing(self, protocol: RTMPClientProtocol) -> None:
        self.protocol = protocol
        self.publishing = True
        self.log.info("forwarding {path} to {url}", path=self.stream.path, url=self.url)
        session = protocol.session
        if self.metadata is not None:
            session.send_metadata(self.metadata)
        for header in (self.video_header, self.audio_header):
            if header is not None:
                session.send_media(*header)
        while self._queue:
            type_id, timestamp, payload = self._queue.popleft()
            session.send_media(type_id, timestamp, payload)
            self.sent_messages += 1
        self._queued_bytes = 0
        protocol.flush()

    def upstream_failed(self, why: str) -> None:
        self.log.warn("upstream {url} for {path} failed: {why}", url=self.url, path=self.stream.path, why=why)
        self._give_up()

    def upstream_lost(self, protocol, reason) -> None:
        if not self.closed:
            self.log.warn(
                "upstream {url} for {path} closed the connection; the ingest stays up",
                url=self.url,
                path=self.stream.path,
            )
        self._give_up()

    def upstream_paused(self) -> None:
        self._gate.pause()
        self.stream.pause_for(self)

    def upstream_resumed(self) -> None:
        self._gate.resume()
        self.stream.resume_for(self)

    # -- MediaSink ----------------------------------------------------------------------

    def on_metadata(self, metadata: dict) -> None:
        self.metadata = metadata
        if self.publishing:
            self.protocol.session.send_metadata(metadata)
            self.protocol.flush()

    def on_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        if self.closed:
            return
        is_header = False
        if type_id == MessageType.VIDEO and flv.is_video_sequence_header(payload):
            self.video_header = (type_id, timestamp, payload)
            is_header = True
        elif type_id == MessageType.AUDIO and flv.is_audio_sequence_header(payload):
            self.audio_header = (type_id, timestamp, payload)
            is_header = True
        if not self.publishing:
            if not is_header:
                self._enqueue(type_id, timestamp, payload)
            return
        was_skipping = self._gate.skipping
        if not self._gate.admit(type_id, payload):
            if not was_skipping:
                self.log.warn(
                    "upstream {url} for {path} is {size} bytes behind; skipping to the next keyframe",
                    url=self.url,
                    path=self.stream.path,
                    size=self._gate.written_while_paused,
                )
            return
        protocol = self.protocol
        protocol.session.send_media(type_id, timestamp, payload)
        protocol.flush()
        self.sent_messages += 1

    def on_stream_end(self) -> None:
        self.stop()

    # -- bounds -------------------------------------------------------------------------

    def _enqueue(self, type_id: int, timestamp: int, payload: bytes) -> None:
        is_key = type_id == MessageType.VIDEO and flv.is_keyframe(payload)
        if self._gate.skipping:
            if not is_key:
                self._gate.dropped += 1
                return
            self._gate.skipping = False
        self._queue.append((type_id, timestamp, payload))
        self._queued_bytes += len(payload)
        if self._queued_bytes > self.config.queue_bytes:
            self._drop_oldest_gops()

    def _drop_oldest_gops(self) -> None:
        """Over the bound before the upstream took the publish: drop whole GOPs from
        the head; if even the newest GOP does not fit, drop it all and wait for a keyframe."""
        queue = self._queue
        while self._queued_bytes > self.config.queue_bytes and queue:
            _t, _ts, old = queue.popleft()
            self._queued_bytes -= len(old)
            self._gate.dropped += 1
            while queue and not (queue[0][0] == MessageType.VIDEO and flv.is_keyframe(queue[0][2])):
                _t, _ts, old = queue.popleft()
                self._queued_bytes -= len(old)
                self._gate.dropped += 1
        if not queue:
            self._queued_bytes = 0
            self._gate.skipping = True

    def _give_up(self) -> None:
        self.publishing = False
        self.closed = True
        self._queue.clear()
        self._queued_bytes = 0
        self.stream.detach(self)
