"""The server's limits on time and numbers, and what hitting them cost whom.

Every limit has a production default that a real publisher or player never
reaches (the anchors: nginx-rtmp's ``timeout``/``ping``/``drop_idle_publisher``,
MediaMTX's read timeout of 10 s, SRS's ``max_connections`` of 1000), and each
one, when hit, closes or refuses one connection with one log line naming it and
is counted here by reason, for ``/api``, ``/metrics`` and the tests.

The byte-level limits (message and chunk sizes, chunk streams, AMF work) are
the sans-IO core's: ``rtmprelay.rtmp.connection.ConnectionConfig``.
"""

from __future__ import annotations

from collections import Counter

import attrs

__all__ = ["LimitCounters", "ServerLimits", "Throttle"]


@attrs.frozen
class ServerLimits:
    """Time and count limits of the RTMP server (seconds; 0 switches a count limit off)."""

    #: TCP connection to the end of the handshake.
    handshake_timeout: float = 10.0
    #: A connection that is not publishing, playing or waiting for admission (from the
    #: end of the handshake, or since its last stream ended) is closed after this.
    command_timeout: float = 10.0
    #: A publisher that sent no audio or video for this long is closed (nginx-rtmp's
    #: ``drop_idle_publisher``; MediaMTX's read timeout is 10 s), freeing its path.
    idle_publisher_timeout: float = 10.0
    #: A peer silent this long is sent a ping (nginx-rtmp: ``ping 60s``) ...
    ping_interval: float = 30.0
    #: ... and closed if it stays silent this much longer (nginx-rtmp: ``ping_timeout 30s``).
    ping_timeout: float = 15.0
    #: Open RTMP connections in all (SRS's ``max_connections``).
    max_connections: int = 1000
    #: Open RTMP connections from one address (phones behind one carrier NAT share one).
    max_connections_per_address: int = 500
    #: Streams published at once from one address.
    max_publishes_per_address: int = 100
    #: Messages a connection may send a second, on average (a 60 fps stream with
    #: 48 kHz AAC sends ~110), ...
    max_messages_per_second: int = 1000
    #: ... and at once (a publisher flushing half a minute it buffered through a
    #: Wi-Fi stall sends ~3000). A flood of tiny messages is closed here, before
    #: each one costs the cleaner's time.
    message_burst: int = 4000


class LimitCounters:
    """What the limits refused or closed, by reason (``Counter``s keyed by a short reason)."""

    def __init__(self) -> None:
        #: Connections refused before any byte was read (too many in all, or from one address).
        self.connections_refused: Counter[str] = Counter()
        #: Connections closed by a limit or by a protocol error of their own.
        self.connections_closed: Counter[str] = Counter()
        #: Publishes and plays refused by the server itself (bad name, too many per address).
        self.requests_refused: Counter[str] = Counter()
        #: Data messages dropped (unreadable or over their bounds), and metadata values cut.
        self.messages_dropped: Counter[str] = Counter()
        #: Unexpected exceptions while handling one message: logged, contained, counted.
        self.faults: Counter[str] = Counter()

    def as_dict(self) -> dict:
        return {
            "connections_refused": dict(self.connections_refused),
            "connections_closed": dict(self.connections_closed),
            "requests_refused": dict(self.requests_refused),
            "messages_dropped": dict(self.messages_dropped),
            "faults": dict(self.faults),
        }


class Throttle:
    """Allows one log line per key every ``interval`` seconds and says how many were held back.

    A flood of refused connections must cost a counter each, not a log line each.
    """

    def __init__(self, interval: float = 10.0, max_keys: int = 1024) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[object, float] = {}
        self._held: Counter = Counter()

    def allow(self, key: object, now: float) -> int | None:
        """None to stay quiet; else how many were held back since the last line for ``key``."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] += 1
            return None
        if len(self._last) >= self.max_keys:
            self._forget_old(now)
        self._last[key] = now
        return self._held.pop(key, 0)

    def _forget_old(self, now: float) -> None:
        for key in [key for key, last in self._last.items() if now - last >= self.interval]:
            del self._last[key]
        if len(self._last) >= self.max_keys:
            self._last.clear()
