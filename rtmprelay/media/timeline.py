"""One track's input timestamps mapped onto a clean output timeline.

The glasses' timestamps jump forward, jump back and restart at zero after a
reconnect. A device sends live, so the wall-clock arrival of each message says
whether a big forward step is real (nothing arrived for that long: frames or
audio are missing) or a discontinuity (the step is far larger than the time
that passed). Discontinuities and every backward step are re-based onto the
expected next timestamp; everything else keeps its input spacing.

Time comes in as an argument (seconds, any monotonic origin); this module
reads no clock.
"""

from __future__ import annotations

import enum
from collections import deque

import attrs

_WRAP = 1 << 32


class Repair(enum.Enum):
    FORWARD_JUMP = "forward_jump"
    BACKWARD_JUMP = "backward_jump"
    RESET = "reset"


@attrs.frozen
class Stamp:
    """Where one input message lands: its output time and what was repaired, if anything."""

    time_ms: float
    repair: Repair | None = None


@attrs.define
class TrackTimeline:
    """Maps one track's input timestamps (ms, 32-bit) to output milliseconds.

    ``nominal_step_ms`` is where a re-based message lands after the previous
    one (a frame or audio frame duration). ``jump_threshold_ms`` is the
    largest unexplained step accepted as real.
    """

    nominal_step_ms: float
    jump_threshold_ms: float = 1000.0
    _last_in: int | None = None
    _last_out: float = 0.0
    _last_arrival: float = 0.0

    def place(self, timestamp: int, arrival: float, anchor_ms: float = 0.0) -> Stamp:
        """Output time of a message stamped ``timestamp`` that arrived at ``arrival`` (s).

        ``anchor_ms`` is where the caller's other clock says this message
        belongs (e.g. the other track's position plus the time since). The
        track's first message goes there, and so does a message after a
        discontinuity, if that is not earlier than the expected next step:
        this keeps audio and video together across jumps.
        """
        if self._last_in is None:
            return self._accept(timestamp, arrival, anchor_ms, None)
        rebased = max(self._last_out + self.nominal_step_ms, anchor_ms)
        delta = (timestamp - self._last_in) % _WRAP
        if delta >= _WRAP // 2:
            delta -= _WRAP  # a step back (or a 32-bit wrap, which the modulo already undid)
        if delta < 0:
            repair = Repair.RESET if timestamp < self.jump_threshold_ms else Repair.BACKWARD_JUMP
            return self._accept(timestamp, arrival, rebased, repair)
        if delta > self.jump_threshold_ms:
            waited_ms = (arrival - self._last_arrival) * 1000.0
            if delta - waited_ms > self.jump_threshold_ms:
                return self._accept(timestamp, arrival, rebased, Repair.FORWARD_JUMP)
        # nearly every message: _accept written out
        out = self._last_out + delta
        self._last_in = timestamp
        self._last_out = out
        self._last_arrival = arrival
        return Stamp(out)

    @property
    def started(self) -> bool:
        return self._last_in is not None

    @property
    def last_in(self) -> int | None:
        return self._last_in

    @property
    def last_out(self) -> float:
        return self._last_out

    @property
    def last_arrival(self) -> float:
        return self._last_arrival

    def _accept(self, timestamp: int, arrival: float, out: float, repair: Repair | None) -> Stamp:
        self._last_in = timestamp
        self._last_out = out
        self._last_arrival = arrival
        return Stamp(out, repair)


#: The first window, whose least offset is the clock's starting point.
_BASE_WINDOW_S = 0.25
#: An offset counts toward the least one only this long after its message arrived: a
#: burst (an encoder flushing its lookahead when it stops, 200 ms of media within a few
#: milliseconds) has by then made the window unsteady, so it is never read as the clock
#: running ahead. Real drift, a few milliseconds a second, is read this much later.
SETTLE_S = 0.2
#: At most this many offsets wait to settle (the oldest settles early beyond it).
_MAX_UNSETTLED = 1024


class ArrivalClock:
    """How a track's own clock (a sample position, in ms) runs against the arrival clock.

    Each message gives ``offset = arrival - position``. Network and encoder delays
    only ever add to it, so the least offset over a short window is the clock's
    own offset plus the least delay: its change since the first steady window
    (``drift_ms``) is how far the track's clock has fallen behind real time
    (positive: it runs slow, fewer samples than seconds) or run ahead (negative),
    measured from the least offset of its first quarter second. Offsets count
    only once ``SETTLE_S`` old.
    The window is steady when it spans most of ``window_s`` and holds no more
    messages than its span at ``step_ms`` each (a burst after a stall, or an
    encoder's flush, is not): only then is the drift read. ``lateness`` is how much later than the best
    case a message arrives for its position: a gap in the track shows there,
    a clock that merely stamps fast does not.
    """

    def __init__(self, step_ms: float, window_s: float = 0.6) -> None:
        self.step_ms = step_ms
        self.window_s = window_s
        self._all: deque = deque()  # arrival times in the window
        self._mins: deque = deque()  # settled (arrival, offset), offsets increasing: the window's minimum first
        self._unsettled: deque = deque()  # (arrival, offset) younger than SETTLE_S
        self._first: float | None = None
        self.base_ms: float | None = None

    def observe(self, arrival: float, position_ms: float) -> None:
        start = arrival - self.window_s
        arrivals = self._all
        while arrivals and arrivals[0] < start:
            arrivals.popleft()
        arrivals.append(arrival)
        unsettled = self._unsettled
        unsettled.append((arrival, arrival * 1000.0 - position_ms))
        settled = arrival - SETTLE_S
        mins = self._mins
        while unsettled and (unsettled[0][0] <= settled or len(unsettled) > _MAX_UNSETTLED):
            item = unsettled.popleft()
            while mins and mins[-1][1] >= item[1]:
                mins.pop()
            mins.append(item)
        while mins and mins[0][0] < start:
            mins.popleft()
        if self._first is None:
            self._first = arrival
        elif self.base_ms is None and mins and settled - self._first >= _BASE_WINDOW_S:
            # A short first window: a clock already off shifts the least offset within it
            # by up to its length times the drift (0.25 s at 3 %: 7.5 ms).
            self.base_ms = mins[0][1]

    @property
    def steady(self) -> bool:
        arrivals = self._all
        if len(arrivals) < 2:
            return False
        span = arrivals[-1] - arrivals[0]
        return span >= 0.8 * self.window_s and (len(arrivals) - 1) * self.step_ms <= 1250.0 * span

    def lateness(self, arrival: float, position_ms: float) -> float | None:
        """How much later than the window's best case a message at ``position_ms`` arrives."""
        if not self._mins:
            return None
        return arrival * 1000.0 - position_ms - self._mins[0][1]

    @property
    def drift_ms(self) -> float | None:
        base = self.base_ms
        if base is None:
            return None
        # ``steady``, written out: read once per message
        arrivals = self._all
        if len(arrivals) < 2:
            return None
        span = arrivals[-1] - arrivals[0]
        if span < 0.8 * self.window_s or (len(arrivals) - 1) * self.step_ms > 1250.0 * span:
            return None
        return self._mins[0][1] - base
