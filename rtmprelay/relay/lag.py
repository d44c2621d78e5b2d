"""How late the reactor runs its timers: the relay's responsiveness, measured.

A timer asks to run every ``interval`` seconds; how much later than asked it
actually runs is the time every socket event waited too. HLS encoders run on
threads so that this stays near zero; /health reports it so that an operator
(and bench/hls_transcode.py) can see whether it does.
"""

from __future__ import annotations

from collections import deque

from twisted.application import service
from twisted.internet.interfaces import IReactorTime

__all__ = ["ReactorLagMonitor"]


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class ReactorLagMonitor(service.Service):
    """Samples timer lateness every ``interval`` s, keeping the last ``window_s`` seconds."""

    def __init__(self, clock: IReactorTime, *, interval: float = 0.05, window_s: float = 60.0) -> None:
        self.clock = clock
        self.interval = interval
        self._samples: deque[float] = deque(maxlen=max(1, round(window_s / interval)))
        self._call = None
        self._due = 0.0
        self.worst_ms = 0.0

    def startService(self) -> None:
        super().startService()
        if self._call is None:
            self._schedule()

    def stopService(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return super().stopService()

    def _schedule(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        late_ms = max(0.0, (self.clock.seconds() - self._due) * 1000)
        self._samples.append(late_ms)
        self.worst_ms = max(self.worst_ms, late_ms)
        self._schedule()

    def summary(self) -> dict[str, float]:
        """Milliseconds late over the window: p50, p99, max; and the worst since start."""
        ordered = sorted(self._samples)
        return {
            "p50_ms": round(_percentile(ordered, 0.50), 2),
            "p99_ms": round(_percentile(ordered, 0.99), 2),
            "max_ms": round(ordered[-1] if ordered else 0.0, 2),
            "worst_ms": round(self.worst_ms, 2),
            "samples": len(ordered),
        }
