"""One thread per stream that runs its HLS pipeline, fed through a bounded queue.

Encoding a picture takes milliseconds (libx264 at 720p) and writing a segment
touches the disk; neither may happen on the reactor thread, where one slow
stream would delay every other connection. PyAV releases the GIL while it
decodes and encodes, so encoder threads run in parallel with the reactor and
with each other.

The queue is bounded in video frames and in bytes. When an encoder falls
behind and the queue is full, the newest media is dropped, counted, and video
stays dropped until the next keyframe (``media.gate.KeyframeGate``, the rule
every sink follows): a decoder fed an inter frame whose reference was dropped
would only make garbage. Audio is dropped only while the queue is full.
Sequence headers and control calls (restart, finish, removal) are never
dropped: they are few and small.

No Twisted here: results leave the thread through the callbacks the caller
gives, which the Twisted adapter wraps with ``reactor.callFromThread``.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

import attrs

from rtmprelay.errors import MediaError
from rtmprelay.media.gate import KeyframeGate
from rtmprelay.media.message import MediaMessage

__all__ = ["DEFAULT_QUEUE_BYTES", "DEFAULT_QUEUE_FRAMES", "WorkerCounters", "StreamWorker"]

#: Three seconds of 30 fps video: an encoder that is further behind drops.
DEFAULT_QUEUE_FRAMES = 90
#: A byte bound too, for streams of huge frames (3 s at 50 Mbit/s is ~19 MB).
DEFAULT_QUEUE_BYTES = 24 * 1024 * 1024

_STOP = object()


@attrs.define
class WorkerCounters:
    frames_queued: int = 0  # video frames waiting now
    bytes_queued: int = 0
    max_frames_queued: int = 0
    video_dropped: int = 0  # video messages dropped because the queue was full
    audio_dropped: int = 0
    errors: int = 0  # MediaErrors raised by the pipeline


class StreamWorker:
    """Runs ``pipeline.push(type_id, timestamp, payload)`` for each queued ``MediaMessage``, and
    queued calls, in order, on its own thread."""

    def __init__(
        self,
        pipeline: Any,
        *,
        name: str = "hls",
        max_frames: int = DEFAULT_QUEUE_FRAMES,
        max_bytes: int = DEFAULT_QUEUE_BYTES,
        on_media_error: Callable[[MediaError], None] | None = None,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("the queue bounds must be positive")
        self.pipeline = pipeline
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.counters = WorkerCounters()
        self._on_media_error = on_media_error
        self._on_crash = on_crash
        self._items: deque = deque()
        self._ready = threading.Condition()
        self._video_gate = KeyframeGate()  # dropping video until the next keyframe
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"rtmprelay-{name}", daemon=True)
        self._thread.start()

    # -- from the reactor thread --------------------------------------------------

    def push(self, message: MediaMessage) -> bool:
        """Queue one media message; False when it was dropped (queue full, or video
        waiting for its next keyframe)."""
        counters = self.counters
        size = len(message.payload)
        frame = message.is_video and not message.header
        with self._ready:
            if self._stopped:
                return False
            if not message.header:
                full = counters.frames_queued >= self.max_frames or counters.bytes_queued + size > self.max_bytes
                if frame:
                    if not self._video_gate.admit(message, full):
                        counters.video_dropped += 1
                        return False
                    counters.frames_queued += 1
                    counters.max_frames_queued = max(counters.max_frames_queued, counters.frames_queued)
                elif full:
                    counters.audio_dropped += 1
                    return False
            counters.bytes_queued += size
            self._items.append(message)
            self._ready.notify()
        return True

    def call(self, function: Callable[..., Any], *args: Any) -> None:
        """Queue ``function(*args)`` (a pipeline method, say) behind the media already queued."""
        with self._ready:
            if self._stopped:
                return
            self._items.append((function, args))
            self._ready.notify()

    def stop(self) -> None:
        """Finish what is queued, then end the thread (without waiting for it)."""
        with self._ready:
            if not self._stopped:
                self._stopped = True
                self._items.append(_STOP)
                self._ready.notify()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread (tests, shutdown); True when it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- on the worker thread -----------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._items:
                    self._ready.wait()
                item = self._items.popleft()
                if item is _STOP:
                    return
                is_media = type(item) is MediaMessage
                if is_media:
                    self.counters.bytes_queued -= len(item.payload)
                    if item.is_video and not item.header:
                        self.counters.frames_queued -= 1
            try:
                if is_media:
                    self.pipeline.push(item.type_id, item.timestamp, item.payload)
                else:
                    function, args = item
                    function(*args)
            except MediaError as error:
                self.counters.errors += 1
                if self._on_media_error is not None:
                    self._on_media_error(error)
            except BaseException as error:  # a bug must not kill the thread silently
                self.counters.errors += 1
                if self._on_crash is not None:
                    self._on_crash(error)
