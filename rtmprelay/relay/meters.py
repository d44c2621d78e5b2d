"""What a stream's video looks like as it passes: keyframe intervals and frame rate.

Both are measured in the stream's own timestamps (milliseconds), never by a
clock: a keyframe interval is the time between two keyframes as the stream
states it, so network jitter does not blur it. A timestamp that does not move
forward (a reset, a step back) gives no interval; a forward jump gives one long
interval, as the cleaner's own input measurement does.

The live stream keeps two :class:`KeyframeIntervals`, before and after the
cleaner, and a :class:`FrameRate` of what it delivers; ``/metrics`` reads them.
Memory is fixed: bucket counts, and at most a window's worth of timestamps.
"""

from __future__ import annotations

import bisect
from collections import deque

__all__ = ["KEYFRAME_INTERVAL_BUCKETS_S", "FrameRate", "KeyframeIntervals"]

#: Upper bounds (seconds) of the keyframe-interval histogram: the glasses send
#: keyframes from 0.07 s to many seconds apart; destinations want 2 to 10 s.
KEYFRAME_INTERVAL_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 60.0)


class KeyframeIntervals:
    """A histogram of the intervals between keyframes: counts per bucket, their sum and count."""

    def __init__(self, buckets_s: tuple[float, ...] = KEYFRAME_INTERVAL_BUCKETS_S) -> None:
        self.buckets_s = buckets_s
        self._counts = [0] * (len(buckets_s) + 1)  # the last one is +Inf
        self.sum_s = 0.0
        self.count = 0
        self._last_ms: int | None = None

    def keyframe(self, timestamp_ms: int) -> None:
        last, self._last_ms = self._last_ms, timestamp_ms
        if last is None or timestamp_ms <= last:
            return
        interval = (timestamp_ms - last) / 1000.0
        self._counts[bisect.bisect_left(self.buckets_s, interval)] += 1
        self.sum_s += interval
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``[(upper bound, intervals at most that long), ...]``, ending with ``(inf, count)``."""
        out, total = [], 0
        for bound, count in zip((*self.buckets_s, float("inf")), self._counts):
            total += count
            out.append((bound, total))
        return out


class FrameRate:
    """Frames per second over the last ``window_s`` seconds of timestamps."""

    def __init__(self, window_s: float = 5.0, max_frames: int = 1024) -> None:
        self.window_ms = window_s * 1000.0
        self._times: deque[int] = deque(maxlen=max_frames)

    def frame(self, timestamp_ms: int) -> None:
        times = self._times
        if times and timestamp_ms < times[-1]:
            times.clear()  # the timeline restarted: measure the new one
        times.append(timestamp_ms)
        while len(times) > 2 and times[-1] - times[0] > self.window_ms:
            times.popleft()

    @property
    def fps(self) -> float | None:
        times = self._times
        if len(times) < 2 or times[-1] == times[0]:
            return None
        return (len(times) - 1) * 1000.0 / (times[-1] - times[0])
