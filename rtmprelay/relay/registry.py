"""Live streams by path: who publishes each, and the sinks that receive it.

A sink is anything with the ``MediaSink`` methods: a player's connection, an
upstream forwarder, a test's recorder. The stream keeps what a late sink needs
to start cleanly (metadata, sequence headers, the frames since the last
keyframe) so a player starts at a keyframe with the sequence headers first.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from twisted.logger import Logger

from rtmprelay.media import flv
from rtmprelay.media.cleaner import CleanerConfig, LongGop, MediaMessage, StreamCleaner
from rtmprelay.relay.meters import FrameRate, KeyframeIntervals
from rtmprelay.rtmp.messages import MessageType

#: Bound on the frames cached since the last keyframe for late joiners: a GOP
#: of a 14 Mbit/s stream at 10 s is ~17 MB; past the bound we stop caching.
DEFAULT_GOP_CACHE_BYTES = 16 * 1024 * 1024


class MediaSink(Protocol):
    """What a stream delivers to: a player, an upstream, a recorder."""

    def on_metadata(self, metadata: dict) -> None: ...

    def on_media(self, type_id: int, timestamp: int, payload: bytes) -> None: ...

    def on_stream_end(self) -> None: ...


class Publisher(Protocol):
    """What a stream may ask of its publisher: backpressure and eviction."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@attrs.define
class StreamCounters:
    video_messages: int = 0
    audio_messages: int = 0
    bytes_in: int = 0
    keyframes: int = 0


class LiveStream:
    """One published stream: cleaned (when a cleaner is given), cached for late joiners, fanned out."""

    log = Logger()

    def __init__(
        self,
        path: str,
        publisher: Publisher,
        gop_cache_bytes: int = DEFAULT_GOP_CACHE_BYTES,
        cleaner: StreamCleaner | None = None,
        admission: object = None,
    ) -> None:
        self.path = path
        self.publisher = publisher
        self.cleaner = cleaner
        #: What the server's admission hook answered for this publish (Forwarding's: the upstream URL).
        self.admission = admission
        self.metadata: dict | None = None
        self.video_header: MediaMessage | None = None
        self.audio_header: MediaMessage | None = None
        self.counters = StreamCounters()
        #: Unexpected exceptions contained while handling this stream, by where they happened.
        self.faults: dict[str, int] = {}
        # What /metrics shows of the video: keyframe intervals before and after cleaning, the output rate.
        self.input_keyframes = KeyframeIntervals()
        self.output_keyframes = KeyframeIntervals()
        self.output_frame_rate = FrameRate()
        self._sinks: list[MediaSink] = []
        self._gop: list[MediaMessage] = []
        self._gop_bytes = 0
        self._gop_cache_bytes = gop_cache_bytes
        self._gop_overflowed = False
        self._pausers: set[int] = set()

    # -- from the publisher ------------------------------------------------------

    def publish_metadata(self, metadata: dict) -> None:
        if self.cleaner is not None:
            try:
                metadata = self.cleaner.rewrite_metadata(metadata)
            except Exception:
                self._fault("cleaner.rewrite_metadata")
        self.metadata = metadata
        for sink in list(self._sinks):
            try:
                sink.on_metadata(metadata)
            except Exception:
                self._fault(f"{type(sink).__name__}.on_metadata")

    def publish_media(self, type_id: int, timestamp: int, payload: bytes, now: float = 0.0) -> None:
        """A message from the publisher; ``now`` (seconds) is when it arrived."""
        if type_id == MessageType.VIDEO and flv.is_keyframe(payload):
            self.input_keyframes.keyframe(timestamp)
        if self.cleaner is None:
            self._deliver(type_id, timestamp, payload)
            return
        try:
            messages = self.cleaner.push(type_id, timestamp, payload, now)
        except Exception:
            # The cleaner could not place this message: it goes on as it came, the stream goes on.
            self._fault("cleaner.push")
            messages = (MediaMessage(type_id, timestamp, payload),)
        for message in messages:
            self._deliver(message.type_id, message.timestamp, message.payload)
        self._log_cleaner_events()

    def poll(self, now: float) -> None:
        """Release what the cleaner held past its interleave bound."""
        if self.cleaner is not None:
            try:
                messages = self.cleaner.poll(now)
            except Exception:
                self._fault("cleaner.poll")
                return
            for message in messages:
                self._deliver(message.type_id, message.timestamp, message.payload)

    def _fault(self, where: str) -> None:
        """Call from an ``except`` block: count, and log the first of each kind with its traceback."""
        self.faults[where] = self.faults.get(where, 0) + 1
        if self.faults[where] == 1:
            self.log.failure("stream {path}: {where} failed; the stream goes on (logged once, counted)", path=self.path, where=where)

    def _log_cleaner_events(self) -> None:
        for event in self.cleaner.take_events():
            if type(event) is LongGop:
                self.log.warn(
                    "stream {path}: GOP of {seconds:.1f} s is longer than the destination allows; only re-encoding can shorten it",
                    path=self.path,
                    seconds=event.seconds,
                )
            else:
                self.log.info(
                    "stream {path} breaks rule {rule} ({detail}); {outcome}",
                    path=self.path,
                    rule=event.rule,
                    detail=event.detail,
                    outcome="repaired" if event.repaired else "not repaired",
                )

    def _deliver(self, type_id: int, timestamp: int, payload: bytes) -> None:
        message = MediaMessage(type_id, timestamp, payload)
        counters = self.counters
        counters.bytes_in += len(payload)
        if type_id == MessageType.VIDEO:
            counters.video_messages += 1
            if flv.is_video_sequence_header(payload):
                self.video_header = message
            elif flv.is_keyframe(payload):
                counters.keyframes += 1
                self.output_keyframes.keyframe(timestamp)
                self.output_frame_rate.frame(timestamp)
                self._gop = [message]
                self._gop_bytes = len(payload)
                self._gop_overflowed = False
            else:
                self.output_frame_rate.frame(timestamp)
                self._cache(message)
        elif type_id == MessageType.AUDIO:
            counters.audio_messages += 1
            if flv.is_audio_sequence_header(payload):
                self.audio_header = message
            else:
                self._cache(message)
        for sink in list(self._sinks):
            try:
                sink.on_media(type_id, timestamp, payload)
            except Exception:
                self._fault(f"{type(sink).__name__}.on_media")

    def end(self) -> None:
        if self.cleaner is not None:
            try:
                held = self.cleaner.finish()
            except Exception:
                self._fault("cleaner.finish")
                held = []
            for message in held:
                self._deliver(message.type_id, message.timestamp, message.payload)
        for sink in list(self._sinks):
            try:
                sink.on_stream_end()
            except Exception:
                self._fault(f"{type(sink).__name__}.on_stream_end")
        self._sinks.clear()

    # -- sinks -------------------------------------------------------------------

    def attach(self, sink: MediaSink, *, start_at_keyframe: bool = True) -> None:
        """Add a sink, handing it what it needs to start: metadata, sequence headers, GOP."""
        if self.metadata is not None:
            sink.on_metadata(self.metadata)
        for header in (self.video_header, self.audio_header):
            if header is not None:
                sink.on_media(header.type_id, header.timestamp, header.payload)
        if start_at_keyframe:
            for message in self._gop:
                sink.on_media(message.type_id, message.timestamp, message.payload)
        self._sinks.append(sink)

    def detach(self, sink: MediaSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)
        self.resume_for(sink)

    @property
    def sinks(self) -> tuple:
        return tuple(self._sinks)

    def since_keyframe(self) -> tuple[MediaMessage, ...]:
        """The last keyframe and what followed it (empty when too long to keep): where a
        sink that lost its output, such as an upstream that reconnects, starts again."""
        return tuple(self._gop)

    # -- backpressure: a sink that must not lose data pauses the publisher -------

    def pause_for(self, sink: MediaSink) -> None:
        if not self._pausers:
            self.publisher.pause_reading()
        self._pausers.add(id(sink))

    def resume_for(self, sink: MediaSink) -> None:
        if id(sink) in self._pausers:
            self._pausers.discard(id(sink))
            if not self._pausers:
                self.publisher.resume_reading()

    def _cache(self, message: MediaMessage) -> None:
        if not self._gop or self._gop_overflowed:
            return
        self._gop_bytes += len(message.payload)
        if self._gop_bytes > self._gop_cache_bytes:
            # Too long a GOP to keep: late joiners wait for the next keyframe instead.
            self._gop = []
            self._gop_overflowed = True
            return
        self._gop.append(message)


class StreamRegistry:
    """Path -> LiveStream, and players waiting for a path to go live."""

    log = Logger()

    def __init__(self, gop_cache_bytes: int = DEFAULT_GOP_CACHE_BYTES, cleaning: CleanerConfig | None = None) -> None:
        self.cleaning = cleaning
        self._streams: dict[str, LiveStream] = {}
        self._waiting: dict[str, list[MediaSink]] = {}
        self._listeners: list = []
        self.gop_cache_bytes = gop_cache_bytes
        self._stopping = False

    def get(self, path: str) -> LiveStream | None:
        return self._streams.get(path)

    def streams(self) -> list[LiveStream]:
        return list(self._streams.values())

    def add_listener(self, listener) -> None:
        """``listener.stream_started(stream)`` / ``stream_ended(stream)`` (e.g. forwarding)."""
        self._listeners.append(listener)

    def start(self, path: str, publisher: Publisher, admission: object = None) -> LiveStream | None:
        """The new stream, or None when ``path`` is already being published (or the relay stops)."""
        if path in self._streams or self._stopping:
            return None
        cleaner = StreamCleaner(self.cleaning) if self.cleaning is not None else None
        stream = LiveStream(path, publisher, self.gop_cache_bytes, cleaner, admission)
        self._streams[path] = stream
        self.log.info("stream {path} published", path=path)
        for listener in list(self._listeners):
            listener.stream_started(stream)
        for sink in self._waiting.pop(path, []):
            stream.attach(sink)
        return stream

    def stop(self, stream: LiveStream) -> None:
        if self._streams.get(stream.path) is not stream:
            return
        del self._streams[stream.path]
        stream.end()
        self.log.info(
            "stream {path} unpublished after {video} video and {audio} audio messages",
            path=stream.path,
            video=stream.counters.video_messages,
            audio=stream.counters.audio_messages,
        )
        if stream.cleaner is not None:
            self.log.info("stream {path} cleaner counters: {counters}", path=stream.path, counters=stream.cleaner.counters.as_dict())
        for listener in list(self._listeners):
            listener.stream_ended(stream)

    def end_all(self) -> int:
        """End every stream and take no more (the relay is stopping); returns how many ended."""
        self._stopping = True
        streams = list(self._streams.values())
        for stream in streams:
            self.stop(stream)
        return len(streams)

    def subscribe(self, path: str, sink: MediaSink) -> bool:
        """Attach now (True), or when ``path`` goes live (False), as nginx-rtmp does."""
        stream = self._streams.get(path)
        if stream is not None:
            stream.attach(sink)
            return True
        self._waiting.setdefault(path, []).append(sink)
        return False

    def unsubscribe(self, path: str, sink: MediaSink) -> None:
        stream = self._streams.get(path)
        if stream is not None:
            stream.detach(sink)
        waiting = self._waiting.get(path)
        if waiting and sink in waiting:
            waiting.remove(sink)
            if not waiting:
                del self._waiting[path]
