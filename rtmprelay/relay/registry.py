"""Live streams by path: who publishes each, and the sinks that receive it.

A sink is anything with the ``MediaSink`` methods: a player's connection, an
upstream forwarder, the HLS worker, a test's recorder. Every sink gets the same
``MediaMessage`` values, classified once where the session made them; none
looks at tag bytes again. The stream keeps what a late sink needs to start
cleanly (metadata, sequence headers, the frames since the last keyframe) so a
player starts at a keyframe with the sequence headers first: that is the one
header cache, which an upstream that reconnects asks too (``sequence_headers``).

A stream may outlive its publisher: with a bridge grace (forwarding), a
stream whose publisher goes away is filled by a ``bridge.Bridge`` (the last
picture repeated, silence) for up to that many seconds, every sink seeing one
continuous stream, and a publisher back on the path within it is joined on at
its first keyframe (``bridge.Splice``) with a fresh cleaner. Only after the
grace does the stream end and its listeners hear of it.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from twisted.logger import Logger

from rtmprelay.media.cleaner import CleanerConfig, LongGop, StreamCleaner
from rtmprelay.media.flv import AUDIO, VIDEO
from rtmprelay.media.gate import KeyframeGate
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.bridge import Bridge, BridgeStart, Splice
from rtmprelay.relay.meters import FrameRate, KeyframeIntervals

#: Bound on the frames cached since the last keyframe for late joiners: a GOP
#: of a 14 Mbit/s stream at 10 s is ~17 MB; past the bound we stop caching.
DEFAULT_GOP_CACHE_BYTES = 16 * 1024 * 1024
#: Seconds a forwarded stream outlives its publisher, bridged, waiting for it to come back.
DEFAULT_BRIDGE_GRACE_S = 10.0
#: A publish of a bridged path whose publisher has sent nothing for this long takes the
#: path over: a phone that changed networks leaves a half-open connection behind, which
#: the server would drop only after its idle timeout (10 s) and meanwhile refuse the new one.
TAKEOVER_SILENCE_S = 2.0


class MediaSink(Protocol):
    """What a stream delivers to: a player, an upstream, the HLS worker, a recorder."""

    def on_metadata(self, metadata: dict) -> None: ...

    def on_media(self, message: MediaMessage) -> None: ...

    def on_stream_end(self) -> None: ...


class Publisher(Protocol):
    """What a stream may ask of its publisher: backpressure and eviction."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def drop_publisher(self, stream: "LiveStream") -> None:
        """A new publisher took ``stream`` over: send it nothing more and close."""


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
        #: A tuple, replaced (never changed) on attach and detach: the fan-out iterates it
        #: without a copy per message, and a sink that attaches or detaches another meanwhile
        #: changes only the next message's fan-out.
        self._sinks: tuple[MediaSink, ...] = ()
        self._gop: list[MediaMessage] = []
        self._gop_bytes = 0
        self._gop_cache_bytes = gop_cache_bytes
        self._pausers: set[int] = set()
        #: Whether the stream outlives its publisher, bridged (the registry's grace is set).
        self.bridgeable = False
        #: While the publisher is away: what fills the stream (see the module doc).
        self.bridge: Bridge | None = None
        self.bridged_at: float | None = None
        self._splice: Splice | None = None
        self.last_arrival: float | None = None
        self._last_video_ms: int | None = None
        self._last_keyframe: bytes | None = None  # kept even when the GOP is too long to cache
        self._last_audio_ms: int | None = None

    # -- from the publisher ------------------------------------------------------

    def publish_metadata(self, metadata: dict) -> None:
        if self.cleaner is not None:
            try:
                metadata = self.cleaner.rewrite_metadata(metadata)
            except Exception:
                self._fault("cleaner.rewrite_metadata")
        self.metadata = metadata
        for sink in self._sinks:
            try:
                sink.on_metadata(metadata)
            except Exception:
                self._fault(f"{type(sink).__name__}.on_metadata")

    def publish_media(self, message: MediaMessage, now: float = 0.0) -> bool:
        """A message from the publisher; ``now`` (seconds) is when it arrived. True when
        the cleaner holds messages afterwards (``poll`` must be called)."""
        self.last_arrival = now
        if message.keyframe:
            self.input_keyframes.keyframe(message.timestamp)
            if self._splice is not None and self.bridge is not None:
                self.bridge.hold(now)  # the keyframe the publisher is joined on is on its way
        cleaner = self.cleaner
        if cleaner is None:
            self._deliver(message)
            return False
        try:
            messages = cleaner.push(message, now)
        except Exception:
            # The cleaner could not place this message: it goes on as it came, the stream goes on.
            self._fault("cleaner.push")
            messages = (message,)
        for out in messages:
            self._deliver(out)
        events = cleaner.take_events()
        if events:
            self._log_cleaner_events(events)
        return cleaner.holding

    @property
    def holding(self) -> bool:
        """Whether the cleaner holds messages that only ``poll`` will release."""
        return self.cleaner is not None and self.cleaner.holding

    def poll(self, now: float) -> None:
        """Release what the cleaner held past its interleave bound."""
        if self.cleaner is not None:
            try:
                messages = self.cleaner.poll(now)
            except Exception:
                self._fault("cleaner.poll")
                return
            for message in messages:
                self._deliver(message)

    def _fault(self, where: str) -> None:
        """Call from an ``except`` block: count, and log the first of each kind with its traceback."""
        self.faults[where] = self.faults.get(where, 0) + 1
        if self.faults[where] == 1:
            self.log.failure("stream {path}: {where} failed; the stream goes on (logged once, counted)", path=self.path, where=where)

    def _log_cleaner_events(self, events: list) -> None:
        for event in events:
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

    def _deliver(self, message: MediaMessage) -> None:
        if message.end and self.bridgeable and message.type_id == VIDEO:
            return  # a stream that may be bridged must not tell decoders it ended (skip frames follow)
        if self._splice is not None:
            self._join(message)
            return
        self._fan_out(message)

    def _fan_out(self, message: MediaMessage) -> None:
        """Cache what late joiners need, count, and hand ``message`` itself to every sink."""
        counters = self.counters
        size = len(message.payload)
        counters.bytes_in += size
        timestamp = message.timestamp
        type_id = message.type_id
        gop = None  # the GOP this message joins, when one is kept
        if type_id == VIDEO:
            counters.video_messages += 1
            self._last_video_ms = timestamp
            if message.header:
                self.video_header = message
            elif message.keyframe:
                counters.keyframes += 1
                self.output_keyframes.keyframe(timestamp)
                self.output_frame_rate.frame(timestamp)
                self._gop = [message]
                self._last_keyframe = message.payload
                self._gop_bytes = size
            else:
                self.output_frame_rate.frame(timestamp)
                gop = self._gop
        elif type_id == AUDIO:
            counters.audio_messages += 1
            self._last_audio_ms = timestamp
            if message.header:
                self.audio_header = message
            else:
                gop = self._gop
        if gop:
            # Kept after the GOP's keyframe, within the bound; past it late joiners wait for
            # the next keyframe instead (an empty ``_gop`` until then is what says so).
            self._gop_bytes += size
            if self._gop_bytes > self._gop_cache_bytes:
                self._gop = []
            else:
                gop.append(message)
        for sink in self._sinks:
            try:
                sink.on_media(message)
            except Exception:
                self._fault(f"{type(sink).__name__}.on_media")

    def end(self) -> None:
        self.bridge = self._splice = None
        if self.cleaner is not None:
            try:
                held = self.cleaner.finish()
            except Exception:
                self._fault("cleaner.finish")
                held = []
            for message in held:
                self._deliver(message)
        for sink in self._sinks:
            try:
                sink.on_stream_end()
            except Exception:
                self._fault(f"{type(sink).__name__}.on_stream_end")
        self._sinks = ()

    # -- sinks -------------------------------------------------------------------

    def attach(self, sink: MediaSink, *, start_at_keyframe: bool = True) -> None:
        """Add a sink, handing it what it needs to start: metadata, sequence headers, GOP.

        A sink that joins a running stream gets a timeline of its own, starting at 0
        where its first frame starts (sequence headers at 0 too), as nginx-rtmp gives
        each player: not headers at 0 and then media from wherever the stream is.
        """
        if self._gop or self.video_header is not None or self.audio_header is not None:
            # a stream with video but no GOP kept (too long for the cache, or the cache off)
            wait = start_at_keyframe and not self._gop and self.video_header is not None
            sink = _Rebased(sink, wait_for_keyframe=wait)
        if self.metadata is not None:
            sink.on_metadata(self.metadata)
        for header in self.sequence_headers():
            sink.on_media(header)
        if start_at_keyframe:
            for message in self._gop:
                sink.on_media(message)
        self._sinks = (*self._sinks, sink)

    def detach(self, sink: MediaSink) -> None:
        for i, target in enumerate(self._sinks):
            if target is sink or (type(target) is _Rebased and target.sink is sink):
                self._sinks = self._sinks[:i] + self._sinks[i + 1 :]
                break
        self.resume_for(sink)

    @property
    def sinks(self) -> tuple:
        return tuple(target.sink if type(target) is _Rebased else target for target in self._sinks)

    def sequence_headers(self) -> tuple[MediaMessage, ...]:
        """The latest video and audio sequence headers (video first): what any sink
        needs before a frame, whenever it (re)starts."""
        return tuple(header for header in (self.video_header, self.audio_header) if header is not None)

    def since_keyframe(self) -> tuple[MediaMessage, ...]:
        """The last keyframe and what followed it (empty when too long to keep): where a
        sink that lost its output, such as an upstream that reconnects, starts again."""
        return tuple(self._gop)

    # -- backpressure: a sink that must not lose data pauses the publisher -------

    @property
    def paused(self) -> bool:
        return bool(self._pausers)

    def pause_for(self, sink: MediaSink) -> None:
        if not self._pausers and self.publisher is not None:
            self.publisher.pause_reading()
        self._pausers.add(id(sink))

    def resume_for(self, sink: MediaSink) -> None:
        if id(sink) in self._pausers:
            self._pausers.discard(id(sink))
            if not self._pausers and self.publisher is not None:
                self.publisher.resume_reading()

    # -- bridging: the publisher away (see the module doc) ------------------------

    @property
    def bridging(self) -> bool:
        return self.bridge is not None

    def start_bridge(self, now: float) -> Bridge | None:
        """The publisher left: fill from here on. None when there is nothing to fill with."""
        if self.bridge is not None:  # left again before its keyframe was joined on: go on filling
            self.publisher, self._splice = None, None
            return self.bridge
        if self.cleaner is not None:
            try:
                held = self.cleaner.finish()  # the bridge continues after what the cleaner held
            except Exception:
                self._fault("cleaner.finish")
                held = []
            for message in held:
                self._deliver(message)
        start = BridgeStart(self._last_video_ms, self._last_audio_ms, self.last_arrival if self.last_arrival is not None else now)
        bridge = Bridge(
            start,
            video_header=self.video_header.payload if self.video_header is not None else None,
            audio_header=self.audio_header.payload if self.audio_header is not None else None,
            since_keyframe=self._gop,
            keyframe=self._last_keyframe,
            fps=self._output_fps(),
        )
        if not bridge.can_fill:
            return None
        self.publisher, self._splice = None, None
        self.bridge, self.bridged_at = bridge, now
        return bridge

    def bridge_info(self) -> dict | None:
        """While the publisher is away (None otherwise): when it left (``since``, the
        registry clock's seconds) and what the bridge made so far."""
        bridge = self.bridge
        if bridge is None:
            return None
        return {
            "since": self.bridged_at,
            "publisher_back": self.publisher is not None,
            "video_frames": bridge.video_frames,
            "audio_frames": bridge.audio_frames,
            "keyframe_restarts": bridge.restarts,
            "no_video": bridge.why_no_video or None,
            "no_audio": bridge.why_no_audio or None,
        }

    def fill_bridge(self, now: float) -> None:
        bridge = self.bridge
        if bridge is None:
            return
        restarts, had_video = bridge.restarts, not bridge.why_no_video
        for message in bridge.fill(now):
            self._fan_out(message)
        if bridge.restarts != restarts:
            self.log.info(
                "stream {path}: bridge sends the last keyframe again and repeats it: {why}",
                path=self.path,
                why=bridge.why_restarted,
            )
        if had_video and bridge.why_no_video:
            self.log.warn("stream {path}: bridge makes no more video: {why}", path=self.path, why=bridge.why_no_video)

    def resume(self, publisher: Publisher, cleaner: StreamCleaner | None) -> None:
        """A publisher is back: it is joined on at its first keyframe (with a cleaner of its own)."""
        self.publisher = publisher
        if self.cleaner is not None:
            self.cleaner = cleaner
        self._splice = Splice(
            self.bridge,
            self.video_header.payload if self.video_header is not None else None,
            self.audio_header.payload if self.audio_header is not None else None,
        )
        if self._pausers:
            publisher.pause_reading()

    def _join(self, message: MediaMessage) -> None:
        splice = self._splice
        for out in splice.take(message):
            self._fan_out(out)
        if splice.done and self.bridge is not None:
            self.log.info(
                "stream {path}: publisher joined on at its first keyframe, {offset:+d} ms onto its timeline "
                "after {video} repeated pictures and {audio} silent audio frames",
                path=self.path,
                offset=splice.offset,
                video=self.bridge.video_frames,
                audio=self.bridge.audio_frames,
            )
            self.bridge = None

    def _output_fps(self) -> float | None:
        """The output frame rate: the cleaner's, the metadata's, or measured on the last GOP."""
        if self.cleaner is not None and self.cleaner.output_fps:
            return float(self.cleaner.output_fps)  # raised for a faster publisher, if it was
        declared = (self.metadata or {}).get("framerate")
        if isinstance(declared, (int, float)) and 1 <= declared <= 240:
            return float(declared)
        times = [m.timestamp for m in self._gop if m.type_id == VIDEO and not m.end]
        if len(times) >= 2 and times[-1] > times[0]:
            return min(240.0, max(1.0, (len(times) - 1) * 1000.0 / (times[-1] - times[0])))
        return None


class _Rebased:
    """A sink that joined a running stream, on a timeline that starts with its first frame."""

    __slots__ = ("sink", "offset", "gate")

    def __init__(self, sink: MediaSink, wait_for_keyframe: bool = False) -> None:
        """``wait_for_keyframe``: nothing but sequence headers before the stream's next
        keyframe (no GOP was kept to start it with), as nginx-rtmp's players wait: the
        keyframe gate every sink sheds load with, closed from the start."""
        self.sink = sink
        self.offset: int | None = None
        self.gate: KeyframeGate | None = None
        if wait_for_keyframe:
            self.gate = KeyframeGate()
            self.gate.skip_to_keyframe()

    def on_metadata(self, metadata: dict) -> None:
        self.sink.on_metadata(metadata)

    def on_media(self, message: MediaMessage) -> None:
        if self.offset is None:
            if message.header:
                self.sink.on_media(message.retimed(0))
                return
            if self.gate is not None and not self.gate.admit(message):
                return  # frames that refer to pictures this sink never had: a decoder makes garbage of them
            self.offset = message.timestamp
        since = (message.timestamp - self.offset) & 0xFFFFFFFF
        self.sink.on_media(message.retimed(0 if since >= 0x80000000 else since))  # before the start: at 0

    def on_stream_end(self) -> None:
        self.sink.on_stream_end()


class StreamRegistry:
    """Path -> LiveStream, and players waiting for a path to go live."""

    log = Logger()

    def __init__(
        self,
        gop_cache_bytes: int = DEFAULT_GOP_CACHE_BYTES,
        cleaning: CleanerConfig | None = None,
        *,
        clock=None,
        bridge_grace_s: float = 0.0,
        bridge_unpublished: bool = True,
    ) -> None:
        """``bridge_grace_s`` > 0 (with a ``clock``): streams outlive their publisher that long, bridged.
        ``bridge_unpublished``: a publisher that unpublishes is bridged too, not only one whose
        connection drops (Android SDKs unpublish before they reconnect; see ``stop``)."""
        self.cleaning = cleaning
        self.clock = clock
        self.bridge_grace_s = bridge_grace_s if clock is not None else 0.0
        self.bridge_unpublished = bridge_unpublished
        self._grace_timers: dict[str, object] = {}
        self._tickers: dict[str, object] = {}
        self._streams: dict[str, LiveStream] = {}
        self._waiting: dict[str, list[MediaSink]] = {}
        self._listeners: list = []
        self.gop_cache_bytes = gop_cache_bytes
        self._stopping = False

    def get(self, path: str) -> LiveStream | None:
        return self._streams.get(path)

    def takes_publish(self, path: str) -> bool:
        """Whether a publish of ``path`` would start (or resume a bridged stream): nobody
        publishes it now, or its publisher has been silent for ``TAKEOVER_SILENCE_S`` on a
        path that is bridged; and the relay is not stopping."""
        stream = self._streams.get(path)
        return not self._stopping and (stream is None or stream.publisher is None or self._silent(stream))

    def _silent(self, stream: LiveStream) -> bool:
        """Its publisher sent nothing for a while, and not because the relay paused it."""
        return (
            stream.bridgeable
            and stream.publisher is not None
            and stream.last_arrival is not None
            and not stream.paused
            and self.clock.seconds() - stream.last_arrival >= TAKEOVER_SILENCE_S
        )

    def _take_over(self, stream: LiveStream) -> LiveStream | None:
        """Bridge ``stream`` from its silent publisher (or end it), and close that publisher."""
        old = stream.publisher
        self.log.warn(
            "stream {path}: its publisher sent nothing for {seconds:.1f} s and a new one publishes; "
            "dropping the silent one",
            path=stream.path,
            seconds=self.clock.seconds() - stream.last_arrival,
        )
        self.stop(stream, old)
        try:
            old.drop_publisher(stream)
        except Exception:
            stream._fault("publisher.drop_publisher")
        return self._streams.get(stream.path)

    def streams(self) -> list[LiveStream]:
        return list(self._streams.values())

    def add_listener(self, listener) -> None:
        """``listener.stream_started(stream)`` / ``stream_ended(stream)`` (e.g. forwarding)."""
        self._listeners.append(listener)

    def start(self, path: str, publisher: Publisher, admission: object = None) -> LiveStream | None:
        """The new stream, or the bridged one the publisher is back on; None when ``path`` is
        already being published (or the relay stops)."""
        existing = self._streams.get(path)
        if existing is not None and existing.publisher is not None and self._silent(existing) and not self._stopping:
            existing = self._take_over(existing)
        if existing is not None and existing.publisher is None and existing.bridging and not self._stopping:
            return self._resume(existing, publisher)
        if existing is not None or self._stopping:
            return None
        cleaner = StreamCleaner(self.cleaning) if self.cleaning is not None else None
        stream = LiveStream(path, publisher, self.gop_cache_bytes, cleaner, admission)
        stream.bridgeable = self.bridge_grace_s > 0
        self._streams[path] = stream
        self.log.info("stream {path} published", path=path)
        for listener in list(self._listeners):
            listener.stream_started(stream)
        for sink in self._waiting.pop(path, []):
            stream.attach(sink)
        return stream

    def stop(self, stream: LiveStream, publisher: Publisher | None = None, *, unpublished: bool = False) -> None:
        """The publisher of ``stream`` went away: bridge it for the grace, or end it.

        ``unpublished``: it said so (deleteStream, closeStream, FCUnpublish) rather than
        dropping. That is bridged too unless ``bridge_unpublished`` is off: from the
        publisher's side an unpublish is not always the end (Android streaming SDKs send
        one from their reconnect path, ffmpeg on SIGTERM), and a publish that really ended
        costs only the grace's held picture before the upstream ends it.
        With ``publisher``: only if that is still the stream's publisher (not one taken over)."""
        if self._streams.get(stream.path) is not stream:
            return
        if publisher is not None and stream.publisher is not publisher:
            return
        if unpublished and not self.bridge_unpublished:
            self._end(stream)
            return
        if not self._stopping and self._bridge(stream):
            return
        self._end(stream)

    def _end(self, stream: LiveStream) -> None:
        self._cancel_bridge_timers(stream.path)
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

    # -- bridging ------------------------------------------------------------------

    def _bridge(self, stream: LiveStream) -> bool:
        if self.bridge_grace_s <= 0:
            return False
        if stream.publisher is None:
            return True  # already bridged
        now = self.clock.seconds()
        bridge = stream.start_bridge(now)
        if bridge is None:
            return False
        self._cancel_bridge_timers(stream.path)
        self._grace_timers[stream.path] = self.clock.callLater(self.bridge_grace_s, self._grace_over, stream)
        what = [f"the last picture repeated at {bridge.fps:g} fps" if not bridge.why_no_video else f"no video ({bridge.why_no_video})"]
        what.append("silence" if not bridge.why_no_audio else f"no audio ({bridge.why_no_audio})")
        self.log.info(
            "stream {path}: publisher gone; bridged for up to {grace:g} s with {what}",
            path=stream.path,
            grace=self.bridge_grace_s,
            what=" and ".join(what),
        )
        self._tick(stream)
        return True

    def _tick(self, stream: LiveStream) -> None:
        self._tickers.pop(stream.path, None)
        if stream.bridge is None or self._streams.get(stream.path) is not stream:
            return
        stream.fill_bridge(self.clock.seconds())
        self._tickers[stream.path] = self.clock.callLater(stream.bridge.period_ms / 1000.0, self._tick, stream)

    def _resume(self, stream: LiveStream, publisher: Publisher) -> LiveStream:
        self._cancel_grace(stream.path)
        cleaner = StreamCleaner(self.cleaning) if self.cleaning is not None else None
        stream.resume(publisher, cleaner)
        self.log.info(
            "stream {path}: publisher back after {seconds:.1f} s; joining it on at its first keyframe",
            path=stream.path,
            seconds=self.clock.seconds() - (stream.bridged_at or 0.0),
        )
        return stream

    def _grace_over(self, stream: LiveStream) -> None:
        self._grace_timers.pop(stream.path, None)
        if self._streams.get(stream.path) is not stream or stream.publisher is not None:
            return
        self.log.info(
            "stream {path}: no publisher back within {grace:g} s; ending it", path=stream.path, grace=self.bridge_grace_s
        )
        self._end(stream)

    def _cancel_grace(self, path: str) -> None:
        timer = self._grace_timers.pop(path, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _cancel_bridge_timers(self, path: str) -> None:
        self._cancel_grace(path)
        ticker = self._tickers.pop(path, None)
        if ticker is not None and ticker.active():
            ticker.cancel()

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

