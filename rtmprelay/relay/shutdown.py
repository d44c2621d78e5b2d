"""A graceful stop: what SIGTERM does to a running relay.

twistd stops its services when the reactor is asked to stop; the listening
ports stop accepting then. :class:`GracefulStop` is the service, stopped first
(it is added last), that ends everything else cleanly within a bound:

* every live stream ends, bridged ones too (no grace at shutdown): each
  forwarder unpublishes upstream (``FCUnpublish``, ``deleteStream``) and closes,
  HLS playlists get ``#EXT-X-ENDLIST`` (``HlsOutput`` writes them out on its own
  stop), the ``stream-ended`` webhooks are posted;
* it waits until the upstream connections have closed and the webhooks have
  gone out, at most ``bound_s`` seconds, then lets the reactor stop.

twistd makes a process stopped by SIGTERM exit by that signal; a relay that
stopped cleanly exits 0 instead, so it takes SIGTERM itself once running.
"""

from __future__ import annotations

import signal
import threading

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

#: Seconds the relay waits for upstreams to take their unpublish and for webhooks.
DEFAULT_STOP_BOUND_S = 5.0


class GracefulStop(service.Service):
    log = Logger()

    def __init__(self, reactor, registry, *, forwarding=None, announcer=None, bound_s: float = DEFAULT_STOP_BOUND_S) -> None:
        self.reactor = reactor
        self.registry = registry
        self.forwarding = forwarding
        self.announcer = announcer
        self.bound_s = bound_s

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._take_sigterm)

    def _take_sigterm(self) -> None:
        # Only where the reactor itself took the signal (twistd, the console script).
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
            return
        signal.signal(signal.SIGTERM, self._sigterm)

    def _sigterm(self, number, frame) -> None:
        self.log.info("SIGTERM: stopping gracefully (ending upstream publishes, playlists and webhooks)")
        self.reactor.callFromThread(self.reactor.stop)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        streams = self.registry.end_all()
        waits = []
        if self.forwarding is not None:
            waits.append(self.forwarding.wait_closed())
        if self.announcer is not None:
            waits.append(self.announcer.when_idle())
        d = defer.DeferredList(waits, consumeErrors=True)
        d.addTimeout(self.bound_s, self.reactor)
        d.addCallbacks(
            lambda _: self.log.info("stopped: {streams} stream(s) ended cleanly", streams=streams),
            lambda failure: self.log.warn(
                "stopped: upstreams or webhooks not done after {bound} s; closing anyway", bound=self.bound_s
            ),
        )
        return d
