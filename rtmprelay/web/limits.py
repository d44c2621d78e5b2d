"""HTTP limits: what one client may cost the web server.

twisted.web bounds the request line and headers (16 KiB) but waits for any
body a client declares (a ``Content-Length`` of 2**40 is taken in, to a temp
file) and keeps a connection as long as bytes trickle in, one every minute
(slowloris). :class:`LimitedSite` adds, each counted by reason and logged:

* a request (line, headers and body) must arrive whole within
  ``request_timeout`` of its first byte (nginx's ``client_header_timeout`` /
  ``client_body_timeout``, 60 s each; ours is shorter because every route here
  is a small GET);
* a body over ``max_body_bytes`` is refused with 413 at once;
* a connection idle between requests for ``idle_timeout`` is closed;
* at most ``max_connections`` connections are open.

Time spent answering (an LL-HLS blocking reload) is not limited here: Twisted
switches the idle timer off while a request is being handled.
"""

from __future__ import annotations

from collections import Counter

import attrs
from twisted.logger import Logger
from twisted.web import http, server

from rtmprelay.relay.limits import Throttle

__all__ = ["HttpLimits", "LimitedSite"]


@attrs.frozen
class HttpLimits:
    request_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    max_body_bytes: int = 64 * 1024
    max_connections: int = 1000


class _LimitedChannel(http.HTTPChannel):
    log = Logger()

    def __init__(self, site: "LimitedSite") -> None:
        super().__init__()
        limits = site.http_limits
        self._site = site
        self.totalHeadersSize = limits.max_header_bytes
        self.MAX_LENGTH = limits.max_header_bytes
        self.maxHeaders = limits.max_headers
        self._reading_request = True
        self._deadline = None
        self._body_bytes = 0
        self._refused = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._site.channel_opened(self)

    def connectionLost(self, reason) -> None:
        self._cancel_deadline()
        self._site.channel_closed(self)
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reading_request and self._deadline is None and data:
            self._deadline = self.callLater(self._site.http_limits.request_timeout, self._request_too_slow)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        limit = self._site.http_limits.max_body_bytes
        if self.length is not None and self.length > limit:
            # Refused before Twisted makes room for it (a temp file for anything over 100 kB).
            self._refuse(b"413 Content Too Large", "body_too_large", f"declared a body of {self.length} bytes (at most {limit})")
            return
        super().allHeadersReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reading_request:  # a body (else: a pipelined request buffered while one is answered)
            self._body_bytes += len(data)
            limit = self._site.http_limits.max_body_bytes
            if self._body_bytes > limit + 1024:  # chunk framing is counted too
                self._refuse(b"413 Content Too Large", "body_too_large", f"sent a body of over {limit} bytes")
                return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        self._cancel_deadline()
        self._reading_request = False
        self._body_bytes = 0
        super().allContentReceived()

    def requestDone(self, request) -> None:
        self._reading_request = True
        super().requestDone(request)

    def _request_too_slow(self) -> None:
        self._deadline = None
        if self._reading_request and not self._refused:
            timeout = self._site.http_limits.request_timeout
            self._refuse(b"408 Request Timeout", "request_timeout", f"request not received whole within {timeout:g} s")

    def _refuse(self, status: bytes, reason: str, detail: str) -> None:
        self._refused = True
        self._cancel_deadline()
        self._site.http_counters[reason] += 1
        peer = self.transport.getPeer()
        self.log.warn(
            "closing HTTP connection from {peer}: {detail}",
            peer=f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}",
            detail=detail,
            reason=reason,
        )
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.loseConnection()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None


class LimitedSite(server.Site):
    """A ``Site`` whose connections keep to :class:`HttpLimits`."""

    _logger = Logger()  # not ``log``: Site.log is its access log

    def __init__(self, resource, limits: HttpLimits = HttpLimits(), **kwargs) -> None:
        super().__init__(resource, timeout=limits.idle_timeout, **kwargs)
        self.http_limits = limits
        #: Connections refused or closed by a limit, by reason.
        self.http_counters: Counter[str] = Counter()
        self._open: set = set()
        self._refusal_log = Throttle()

    def protocol(self):  # HTTPFactory calls self.protocol() for each connection
        return _LimitedChannel(self)

    def buildProtocol(self, addr):
        limit = self.http_limits.max_connections
        if len(self._open) >= limit:
            self.http_counters["max_connections"] += 1
            held = self._refusal_log.allow("max_connections", self.reactor.seconds())
            if held is not None:
                self._logger.warn(
                    "refusing an HTTP connection: {count} open (at most {limit}){held}",
                    count=len(self._open),
                    limit=limit,
                    held=f" ({held} more refused since the last line)" if held else "",
                )
            return None  # Twisted closes it before reading a byte
        return super().buildProtocol(addr)

    def channel_opened(self, channel) -> None:
        self._open.add(channel)

    def channel_closed(self, channel) -> None:
        self._open.discard(channel)

    @property
    def open_connections(self) -> int:
        return len(self._open)
