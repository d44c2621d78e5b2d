"""Bridging a publisher outage: the stream goes on while its publisher is away.

Glasses on flaky Wi-Fi drop their connection and come back seconds later. An
ingest such as Cloudflare Stream Live sees a publish end and another begin:
"connected, not started", maybe a new video. So a forwarded stream outlives
its publisher for a grace period; meanwhile :class:`Bridge` fills it at the
output rate with all-skip P-frames that repeat the last picture
(``media.skipframe``) and silent AAC frames (``media.aac``), continuing both
tracks' timelines; every sink (upstreams, HLS, players) sees one stream. A
publisher back on the path within the grace is joined on by :class:`Splice`
at its first keyframe: its timeline is moved to start at the bridge's next
video slot, a changed SPS/PPS goes out as a new sequence header, and the
bridge stops.

Neither reads a clock nor imports Twisted: ``now`` (seconds) is an argument.
The bridge needs nothing from the cleaner: it rebuilds the state a skip frame
needs from the stream's sequence header and the frames since its last keyframe
(``LiveStream.since_keyframe``), so it costs nothing while the publisher is
there. Where the last picture cannot be repeated (B-frames, a non-reference
last picture, a GOP too long to keep) or skip frames run out (several
reference frames: frame_num distances to the old ones must stay below
MaxFrameNum), the run starts over at the stream's last keyframe, sent again,
and repeats that picture (after an IDR there is one reference and no bound,
and what is decoded last is shown last, B-frames or not). Nothing the bridge
or a returning publisher sends is shown within a frame interval of a picture
already sent (a B-frame stream shows its last P-frame after the B-frames
decoded after it), and while no video can be made at all, a returning
publisher is joined where the silence has got to, its sound with its picture.
What cannot be made at all (no keyframe, an unsupported AAC) is left out, and
``why_no_video`` / ``why_no_audio`` say why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from rtmprelay.errors import MediaError
from rtmprelay.media import aac, avcc, flv, tags
from rtmprelay.media.message import MediaMessage
from rtmprelay.media.skipframe import SkipFrameMaker

FRAME_INTER = 2
#: The frame rate assumed when neither the cleaner, the metadata nor the frames say.
DEFAULT_FPS = 30.0
#: While a returning publisher's first keyframe is on its way through the cleaner, the
#: bridge waits this long at most before filling again (the keyframe must follow the
#: last filler, and filling meanwhile would add the wait to the latency).
SPLICE_HOLD_S = 1.0


@attrs.frozen
class BridgeStart:
    """Where the publisher left the stream: its last timestamps and when it last sent."""

    last_video_ms: int | None
    last_audio_ms: int | None
    last_arrival: float


class Bridge:
    """Filler for one stream from ``start`` on; ``fill(now)`` returns what is due."""

    def __init__(
        self,
        start: BridgeStart,
        *,
        video_header: bytes | None,
        audio_header: bytes | None,
        since_keyframe: Iterable[MediaMessage],
        fps: float | None,
        keyframe: bytes | None = None,
    ) -> None:
        """``since_keyframe``: the stream's last keyframe and the frames after it, as sent
        (empty when the GOP was too long to keep); ``keyframe``: that keyframe's payload
        even then, where a run can start over."""
        self.fps = fps or DEFAULT_FPS
        self.period_ms = 1000.0 / self.fps
        self.video_frames = 0
        self.audio_frames = 0
        self.held_until = 0.0
        self.why_no_video = ""
        self.why_no_audio = ""
        ends = [t for t in (start.last_video_ms, start.last_audio_ms) if t is not None]
        self._base_ms = max(ends) if ends else 0
        self._base_wall = start.last_arrival
        # video: slots on the stream's grid after its last frame
        self._maker: SkipFrameMaker | None = None
        self._config: tuple[list, list] = ([], [])
        self._nal_length_size = 4
        self._cts = 0
        self._keyframe = keyframe  # the stream's last keyframe, where a run may start over
        self._pending_keyframe = False
        #: How often the run started over at the last keyframe, and why the last time.
        self.restarts = 0
        self.why_restarted = ""
        self._video_origin = start.last_video_ms
        self._slot = 1  # the next video slot, in periods after the publisher's last frame
        #: The latest presentation time sent (decoding time plus composition time): a B-frame
        #: stream shows its last frames after their decoding times; nothing may be shown at it again.
        self._last_pts_ms: int | None = start.last_video_ms
        self._prepare_video(video_header, since_keyframe)
        # audio: by sample count after the last frame
        self._silence: MediaMessage | None = None
        self._audio_origin = start.last_audio_ms
        self._prepare_audio(audio_header)

    @property
    def can_fill(self) -> bool:
        return self._maker is not None or self._silence is not None

    @property
    def next_video_ms(self) -> int:
        """Where the next video frame goes (one shown with the filler's composition time)."""
        return self.join_ms(self._cts)

    def join_ms(self, composition_time: int) -> int:
        """Where a video frame with ``composition_time`` goes next: a returning publisher's
        first keyframe is put there. The next slot on the stream's grid, but never one that
        would show the frame at or before a picture already sent, and, while no video can
        be made (a stream whose last picture cannot be repeated, or no keyframe), never
        behind the silence already sent: the publisher is joined where the stream has got
        to, its sound with its picture."""
        if self._video_origin is None:
            return self._next_audio_ms() if self._silence is not None else self._base_ms
        origin, period = self._video_origin, self.period_ms
        slot = self._slot
        if self._maker is None and self._silence is not None:
            sent_ms = self._next_audio_ms() - self._frame_samples * 1000.0 / self._rate
            slot = max(slot, math.ceil((sent_ms - origin) / period - 1e-9))
        if self._last_pts_ms is not None:
            # the first slot whose time (rounded, as it goes out), plus the composition time,
            # is a frame interval after the latest shown (less than that, and a player's
            # frame clock puts two pictures in one tick)
            shown_after = self._last_pts_ms + period - 1
            slot = max(slot, math.floor((shown_after - composition_time - origin) / period))
            while round(origin + slot * period) + composition_time < shown_after:
                slot += 1
        return round(origin + slot * period)

    @property
    def next_audio_ms(self) -> int | None:
        return self._next_audio_ms() if self._silence is not None else None

    def hold(self, now: float) -> None:
        """A returning publisher's first keyframe arrived: make nothing until it is spliced in
        (or for ``SPLICE_HOLD_S`` at most)."""
        self.held_until = now + SPLICE_HOLD_S

    def fill(self, now: float) -> list[MediaMessage]:
        """Everything due by ``now``: video and audio filler, in timestamp order."""
        if now < self.held_until:
            return []
        target = self._base_ms + (now - self._base_wall) * 1000.0
        out: list[MediaMessage] = []
        while True:
            video_at = self.next_video_ms if self._maker is not None else None
            audio_at = self._next_audio_ms() if self._silence is not None else None
            due = [t for t in (video_at, audio_at) if t is not None and t <= target]
            if not due:
                return out
            if video_at is not None and video_at == min(due):
                frame = self._video_frame(video_at)
                if frame is not None:
                    out.append(frame)
            else:
                out.append(self._audio_frame(audio_at))

    # -- video --------------------------------------------------------------------------------

    def _prepare_video(self, header: bytes | None, frames: Iterable[MediaMessage]) -> None:
        if header is None or self._video_origin is None:
            self.why_no_video = "the stream has no video"
            return
        frames = [m for m in frames if m.type_id == flv.VIDEO]
        try:
            tag = tags.parse_video_tag(header)
            if tag.codec != flv.CODEC_AVC:
                raise MediaError(f"video codec {tag.codec!r} is not H.264")
            config = avcc.parse_avc_config(tag.data)
            self._config = (list(config.sps), list(config.pps))
            self._nal_length_size = config.nal_length_size
            if self._keyframe is None and frames and frames[0].keyframe:
                self._keyframe = frames[0].payload
            maker = self._new_maker()
            for message in frames:
                self._observe(maker, message.payload)
                self._last_pts_ms = max(self._last_pts_ms, message.timestamp + self._cts)
        except MediaError as error:
            self.why_no_video = str(error)
            return
        if maker.can_repeat:
            self._maker = maker
            return
        # The last picture cannot be repeated (B-frames, a non-reference last picture, ...):
        # the run starts over at the last keyframe, repeated, and its picture is what repeats.
        if self._restart_at_keyframe(f"the last picture cannot be repeated ({maker.why_not})") is None:
            self.why_no_video = maker.why_not

    def _new_maker(self, *, from_idr_only: bool = False) -> SkipFrameMaker:
        maker = SkipFrameMaker(from_idr_only=from_idr_only)
        maker.observe_config(*self._config)
        return maker

    def _observe(self, maker: SkipFrameMaker, payload: bytes) -> None:
        frame = tags.parse_video_tag(payload)
        if frame.packet_type == 1:
            maker.observe_frame(avcc.split_nal_units(frame.data, self._nal_length_size))
            self._cts = frame.composition_time

    def _restart_at_keyframe(self, why: str) -> bytes | None:
        """A fresh run from the stream's last keyframe: the keyframe's payload to send again,
        or None when there is none (or even it cannot be followed by skip frames)."""
        if self._keyframe is None:
            return None
        try:
            # Only the keyframe, then skip frames: what is decoded last is shown last, so a
            # B-frame stream (whose SPS allows reordering) can be bridged from it too.
            maker = self._new_maker(from_idr_only=True)
            self._observe(maker, self._keyframe)
        except MediaError:
            return None
        if not maker.can_repeat:
            return None
        self._maker = maker
        self._pending_keyframe = True
        self.restarts += 1
        self.why_restarted = why
        return self._keyframe

    def _video_frame(self, timestamp: int) -> MediaMessage | None:
        if not self._pending_keyframe and not self._maker.can_repeat:
            # Skip frames can run out: with several reference frames, frame_num distances to
            # the old references must stay below MaxFrameNum (x264 ref=3, MaxFrameNum 16: 12
            # in a row). The run starts over at the last keyframe, sent again: one step back
            # in the picture, then skip frames for as long as the grace lasts (after an IDR
            # there is a single reference, and no bound).
            why = self._maker.why_not
            if self._restart_at_keyframe(f"skip frames ran out ({why})") is None:
                self._maker = None
                self.why_no_video = why
                return None
        self.video_frames += 1
        self._slot = round((timestamp - self._video_origin) / self.period_ms) + 1
        self._last_pts_ms = max(self._last_pts_ms, timestamp + self._cts)  # set: a stream with video
        if self._pending_keyframe:
            self._pending_keyframe = False
            return MediaMessage.of(flv.VIDEO, timestamp, self._keyframe)
        nals = self._maker.make_repeat()
        data = avcc.join_nal_units(nals, self._nal_length_size)
        return MediaMessage.of(flv.VIDEO, timestamp, tags.build_video_tag(FRAME_INTER, 1, data, self._cts))

    # -- audio --------------------------------------------------------------------------------

    def _prepare_audio(self, header: bytes | None) -> None:
        if header is None or self._audio_origin is None:
            self.why_no_audio = "the stream has no audio"
            return
        try:
            config = aac.parse_aac_config(tags.parse_audio_tag(header).data)
            silence = aac.silent_frame(config)
        except MediaError as error:
            self.why_no_audio = str(error)
            return
        self._rate = config.sample_rate
        self._frame_samples = config.frame_length
        self._header_byte = header[0]
        self._silence = MediaMessage.of(flv.AUDIO, 0, bytes((self._header_byte, 1)) + silence)

    def _next_audio_ms(self) -> int:
        samples = (self.audio_frames + 1) * self._frame_samples
        return self._audio_origin + round(samples * 1000.0 / self._rate)

    def _audio_frame(self, timestamp: int) -> MediaMessage:
        self.audio_frames += 1
        return self._silence.retimed(timestamp)


class Splice:
    """Joins a returning publisher to a bridged stream at its first keyframe (at its
    first audio frame when the stream has no video).

    Until then, its frames are dropped and its sequence headers kept. The
    keyframe is moved to ``bridge.next_video_ms`` and everything after it by the
    same offset; its sequence headers go first when they differ from the ones
    the stream had. Audio that would overlap the bridge's silence is dropped.
    ``take`` returns what to deliver; ``done`` says the splice is over.
    """

    def __init__(self, bridge: Bridge, video_header: bytes | None, audio_header: bytes | None) -> None:
        self.bridge = bridge
        self.done = False
        self.offset = 0
        self._old_headers = {flv.VIDEO: video_header, flv.AUDIO: audio_header}
        self._new_headers: dict[int, MediaMessage] = {}
        self._audio_floor: int | None = None
        self._last_audio = -1

    def take(self, message: MediaMessage) -> list[MediaMessage]:
        type_id = message.type_id
        if not self.done:
            if message.header:
                self._new_headers[type_id] = message
                return []
            if message.keyframe:
                return self._join(message)
            if type_id == flv.AUDIO and self._old_headers[flv.VIDEO] is None:
                return self._join(message)  # an audio-only stream: no keyframe to wait for
            return []  # the bridge goes on filling until the keyframe
        shifted = message.timestamp + self.offset
        if type_id == flv.AUDIO and not message.header:
            if (self._audio_floor is not None and shifted < self._audio_floor) or shifted <= self._last_audio:
                return []
            self._last_audio = shifted
        return [message.retimed(max(0, shifted))]

    def _join(self, message: MediaMessage) -> list[MediaMessage]:
        self.done = True
        cts = 0
        if message.type_id == flv.VIDEO:
            try:
                cts = tags.parse_video_tag(message.payload).composition_time
            except MediaError:
                pass
        at = self.bridge.join_ms(cts)  # the next audio slot when the stream has no video
        self.offset = at - message.timestamp
        audio_next = self.bridge.next_audio_ms
        # the bridge's silence ran up to here; the publisher's audio takes over after it
        self._audio_floor = audio_next - 1 if audio_next is not None else None
        out = [
            header.retimed(at)
            for type_id, header in sorted(self._new_headers.items(), reverse=True)  # video first
            if header.payload != self._old_headers.get(type_id)
        ]
        out.append(message.retimed(at))
        if message.type_id == flv.AUDIO:
            self._last_audio = at
        return out
