"""The stream cleaner: a dirty H.264 + AAC stream in, a strict one out, at packet level.

For each stream it

* puts both tracks on one output timeline, monotonic, re-basing jumps and
  resets (``timeline.TrackTimeline``);
* times audio by its sample count (1024 samples per AAC frame), so the audio
  clock is exact, fills gaps with silent AAC frames, and follows an audio
  clock that drifts against the video's by whole frames in or out, at most
  one in ``DRIFT_FRAMES_PER_STEP``;
* lays video on a fixed frame-rate grid with hysteresis: a frame takes the
  slot after the previous one unless it is more than ``SLOT_TOLERANCE``
  periods early (dropped when nothing references it, else retimed) or late
  (the slots between are filled with generated skip P-frames that repeat the
  last picture, where the stream allows it, else left empty). The grid's
  phase is the first frame's and follows the input's by at most
  ``PHASE_STEP_MS`` per frame, so a clean constant-rate stream comes out
  frame for frame whatever its phase against the audio or the arrival clock
  (a slot that audio already sent has passed re-phases the grid, a whole
  number of periods after the last slot: ``_rephase``);
  a frame decoded at the same input time as the one before (its muxer squashed
  the decoding times, as GStreamer's flvmux does at the start of a B-frame
  stream) is squeezed into that frame's slot with its presentation time kept
  (``_squeeze_to``), up to the stream's reorder depth;
* raises the grid's rate to the input's when the input runs steadily faster
  (50 or 60 fps to a 30 fps profile: ``_raise_rate``), so that every frame is
  kept: frames that are all references cannot be dropped, and retiming them
  onto a slower grid would put the picture ever further behind the sound;
* relabels keyframes closer together (on the input timeline) than the
  destination's minimum as inter frames (the IDR itself stays), and reports
  GOPs longer than its maximum;
* releases audio and video in timestamp order as soon as neither track can
  still produce an earlier message: each track's next timestamp is known (the
  next grid slot, the next sample position), so a message waits only until
  the other track's next message is due, and never longer than the
  interleave bound.

What it generates (skip frames, silence) is bounded per track: at most
``GENERATED_BURST_S`` seconds of it in one call, refilled at
``GENERATED_RATE`` seconds per second of arrival time; a longer gap stays a
gap. Frame rates from the publisher are clamped to ``MIN_FPS..MAX_FPS``; AAC
sample rates outside ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE`` are not timed by
sample count. Malformed media is counted (rule ``well_formed_media``, logged
by the registry) and passed on untouched, or skipped when it holds no
picture: ``push`` raises nothing for any input. Time comes in as an argument
(``now``, in seconds); the cleaner reads no clock. It never imports Twisted.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque

import attrs

from rtmprelay.errors import MediaError
from rtmprelay.media import aac, avcc, tags
from rtmprelay.media.flv import AUDIO, VIDEO
from rtmprelay.media.message import MediaMessage
from rtmprelay.media.profiles import DestinationProfile, get_profile
from rtmprelay.media.skipframe import SkipFrameMaker
from rtmprelay.media.tags import AAC_PACKET_RAW, SOUND_AAC
from rtmprelay.media.timeline import ArrivalClock, Repair, Stamp, TrackTimeline


FRAME_KEY = 1
FRAME_INTER = 2

#: Input frame rate and keyframe interval are measured over this much input.
_MEASURE_WINDOW_S = 5.0
#: Input bytes are counted per this much arrival time: the windows move, and the bitrate
#: is read, once per bucket, not per message (a 50 ms step of a 5 s window is 1 %).
_BYTES_BUCKET_S = 0.05
#: The bitrate rule is judged over this much input (several GOPs), not before, and
#: not counting the first seconds (an encoder ramping up).
BITRATE_WINDOW_S = 10.0
BITRATE_WARMUP_S = 2.0

#: Frame rates a publisher declares (onMetaData, SPS timing) are clamped to this range.
MIN_FPS, MAX_FPS = 1.0, 120.0
#: AAC sample rates outside this range are passed on without sample-count timing.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 7350, 96000
#: A frame within this many periods of the slot after the previous one takes that slot.
SLOT_TOLERANCE = 0.75
#: Frames after one with the same input decoding time (a muxer squashed them: GStreamer's
#: flvmux clamps x264's negative DTS to 0) are spread within its slot, at most this many
#: after it where the SPS does not say how many frames it reorders.
DEFAULT_MAX_SQUEEZED = 2
#: The grid's phase follows the input's by at most this much per frame (output steps stay within 1 ms).
PHASE_STEP_MS = 0.3
_PHASE_GAIN = 1 / 16
#: Video that starts behind audio already sent is shifted to start after it, by at most this
#: many frames, and the shift worked off this much a frame: 15 ms over a 2 s GOP at 30 fps,
#: so output keyframes stay within half a frame of their input spacing; A/V offset under
#: 40 ms within 20 frames.
MAX_START_SHIFT_FRAMES = 2
START_SHIFT_DECAY_MS = 0.25
#: For this long after the stream's first message, audio waits for the first video frame
#: (so both start together); then a track that has not started holds nothing.
START_HOLD_S = 0.045
#: A track starts (or is re-based) where the publisher's timestamps put it against the
#: other track when that is within this of where arrival puts it; else where arrival does.
STAMP_AGREEMENT_MS = 50.0
_WRAP = 1 << 32
#: The audio clock is corrected (a frame in or out) once it is this many AAC frames off the arrival clock.
DRIFT_STEP = 0.6
#: ... by at most one frame in this many: a clock drifts by a few per cent (10 % here), and
#: the correction stays smooth whatever the timestamps do (hostile re-basing once dropped
#: 32 frames in a row: 740 ms of sound cut, the audio stalled behind video that had to leave).
DRIFT_FRAMES_PER_STEP = 10
#: A publisher steadily faster than the output rate (50 or 60 fps to a 30 fps profile)
#: raises the grid's rate to its own, once its frame intervals show a rate this much above
#: the output's: its frames cannot all be dropped (x264 baseline or zerolatency makes every
#: frame a reference), and none need be ...
RATE_RISE = 1.15
#: ... snapped to the nearest of these, up to the highest (what common ingests take).
RAISED_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0)
#: A frame this many periods early is asked whether the input runs faster (``_raise_rate``).
RAISE_WHEN_EARLY = 0.25
#: Frame intervals that must agree before the rate is raised (one where the publisher
#: declared that rate).
RATE_EVIDENCE = 6
#: Generated media per track: at most this many seconds of it in one call ...
GENERATED_BURST_S = 2.0
#: ... and on average this many seconds of it per second of arrival time.
GENERATED_RATE = 2.0


@attrs.frozen
class CleanerConfig:
    """How one stream is cleaned. ``fps=None`` takes the rate the stream declares."""

    fps: float | None = 30.0
    min_keyframe_interval_s: float = 2.0
    max_keyframe_interval_s: float | None = 10.0
    jump_threshold_ms: float = 1000.0
    interleave_delay_ms: float = 500.0
    #: Video further behind its clock than this is dropped up to the next keyframe.
    max_video_lag_ms: float = 1000.0
    #: A gap longer than this is not filled frame by frame (the publisher stalled).
    max_fill_s: float = 10.0
    wallclock: bool = False
    min_bitrate: int | None = None
    max_bitrate: int | None = None
    #: The destination profile the rules come from (named in verdicts).
    profile: str = "custom"

    @classmethod
    def from_profile(cls, profile: DestinationProfile | str, **overrides) -> "CleanerConfig":
        if isinstance(profile, str):
            profile = get_profile(profile)
        values = {
            "fps": profile.fps,
            "min_keyframe_interval_s": profile.min_keyframe_interval_s,
            "max_keyframe_interval_s": profile.max_keyframe_interval_s,
            "min_bitrate": profile.min_bitrate,
            "max_bitrate": profile.max_bitrate,
            "profile": profile.name,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@attrs.frozen
class Verdict:
    """One destination rule: whether the input broke it, and whether the cleaner repaired it."""

    rule: str
    broken: bool
    repaired: bool
    detail: str = ""


@attrs.frozen
class RuleBroken:
    """Event: the input broke ``rule`` for the first time (``repaired`` says if we fix it)."""

    rule: str
    repaired: bool
    detail: str


@attrs.frozen
class LongGop:
    """Event: a GOP longer than the destination allows (needs re-encoding to fix)."""

    seconds: float


@attrs.define
class CleanerCounters:
    video_in: int = 0
    video_out: int = 0
    audio_in: int = 0
    audio_out: int = 0
    dropped: int = 0
    duplicated: int = 0
    retimed: int = 0
    #: Frames that shared their input decoding time with the one before (squashed by the
    #: muxer), given their own within its slot, presentation time kept.
    squeezed: int = 0
    dropped_for_lag: int = 0
    dropped_before_keyframe: int = 0
    keyframes_in: int = 0
    keyframes_relabelled: int = 0
    long_gops: int = 0
    silence_inserted: int = 0
    #: The audio clock against arrival: ms it has fallen behind (+) or run ahead (-), as a rate,
    #: and the whole AAC frames put in or taken out to follow it.
    audio_drift_ms: float | None = None
    audio_drift_ppm: int | None = None
    audio_drift_inserted: int = 0
    audio_dropped: int = 0
    malformed: int = 0
    repairs: dict = attrs.field(factory=lambda: {"video": {}, "audio": {}})
    input_fps: float | None = None
    input_keyframe_interval_s: float | None = None
    max_input_keyframe_interval_s: float | None = None
    input_bitrate: float | None = None

    def as_dict(self) -> dict:
        return attrs.asdict(self)


class _Budget:
    """A token bucket bounding generated media: ``burst`` items at most in one call,
    ``rate`` items per second of arrival time on average."""

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.last = rate, burst, burst, None

    def take(self, wanted: int, now: float) -> int:
        """How many of ``wanted`` items may be made now (taken from the bucket)."""
        if self.last is None or now < self.last:
            self.last = now
        elif now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        granted = max(0, min(wanted, int(self.tokens)))
        self.tokens -= granted
        return granted

    def give_back(self, unused: int) -> None:
        self.tokens = min(self.burst, self.tokens + unused)


def _standard_rate(fps: float) -> float:
    """The one of ``RAISED_RATES`` nearest ``fps``."""
    return min(RAISED_RATES, key=lambda standard: abs(standard - fps))


def clamp_fps(fps: float | None) -> float | None:
    """A publisher's frame rate in ``MIN_FPS..MAX_FPS``; None for nothing usable (NaN, <= 0)."""
    if fps is None or not fps > 0:  # NaN fails too
        return None
    return min(MAX_FPS, max(MIN_FPS, float(fps)))


class StreamCleaner:
    """Feed it media messages with ``push``; send on what it returns."""

    def __init__(self, config: CleanerConfig = CleanerConfig()) -> None:
        self.config = config
        self._bound_s = config.interleave_delay_ms / 1000.0
        self.counters = CleanerCounters()
        self._events: list = []
        self._verdicts: dict[str, Verdict] = {}
        self._queue: list = []  # heap of (timestamp, seq, arrival, MediaMessage)
        self._input: MediaMessage | None = None  # the message push is placing
        self._seq = itertools.count()
        self._origin: float | None = None
        #: Timestamp of the last message released: nothing later may go below it.
        self._released_ms = 0
        # video
        self._fps = clamp_fps(config.fps)
        self._video_timeline: TrackTimeline | None = None
        self._avc: avcc.AVCConfig | None = None
        self._video_passthrough = False
        self._skip = SkipFrameMaker()
        self._skip_budget: _Budget | None = None
        self._grid_origin = 0.0
        self._start_shift_ms = 0.0
        self._raise_shift_ms = 0.0  # how far a rise of the output rate left the video behind its input, for good
        self._last_slot: int | None = None
        self._slot_ms = 0  # the last slot's output timestamp
        self._last_cts = 0
        # the run of frames sharing one input decoding time: its input time, the output time of
        # the frame that took its slot (None once it may squeeze no more), frames squeezed after it
        self._run_in_ms: float | None = None
        self._run_anchor_ms: int | None = None
        self._run_squeezed = 0
        self._max_reorder: int | None = None  # the SPS's max_num_reorder_frames
        self._sps_said: dict[bytes, bytes] = {}  # SPS NAL units as sent -> with the output's rate
        self._seen_keyframe = False
        self._skipping_to_keyframe = False
        self._last_key_time_ms: float | None = None
        self._last_key_in_ms: float | None = None
        self._long_gop_reported = False
        self._video_out_ms = 0
        self._video_floor: float | None = None  # the next video frame's timestamp is at least this
        self._video_last_arrival: float | None = None
        self._declared_fps: float | None = None
        self._width: int | None = None
        self._height: int | None = None
        # audio
        self._audio_timeline: TrackTimeline | None = None
        self._aac: aac.AacConfig | None = None
        self._silence: bytes | None = None
        self._silence_budget: _Budget | None = None
        self._samples: int | None = None  # sample position of the next AAC frame out
        self._audio_out_ms = 0
        self._audio_floor: float | None = None
        self._audio_last_arrival: float | None = None
        self._audio_header_byte = 0xAF
        self._audio_clock: ArrivalClock | None = None
        self._drift_applied_ms = 0.0  # silence in minus frames out for drift, in ms
        self._drift_wait = 0  # audio frames before the next drift correction may be made
        self._video_arrivals: ArrivalClock | None = None  # the video timeline against arrival
        self._video_drift_ms = 0.0
        # input measurements
        self._video_times: deque = deque()
        # [first arrival, bytes] per _BYTES_BUCKET_S, over BITRATE_WINDOW_S and over
        # _MEASURE_WINDOW_S (the same lists in both), the one filling, and the sums
        self._bytes: deque = deque()
        self._bytes_recent: deque = deque()
        self._bytes_bucket: list | None = None
        self._bytes_in_window = 0
        self._bytes_in_recent = 0

    # -- public --------------------------------------------------------------------------

    def push(self, message: MediaMessage, now: float) -> list[MediaMessage]:
        """Take one message that arrived at ``now`` (s); return what may leave now. Raises nothing.

        What leaves unchanged is ``message`` itself, or the same message retimed
        (``MediaMessage.retimed``, the classification kept); only payloads the cleaner
        changed or made are classified again."""
        if self._origin is None:
            self._origin = now
        type_id, timestamp, payload = message.type_id, message.timestamp, message.payload
        self._input = message
        try:
            if type_id == VIDEO:
                self._push_video(timestamp, payload, now)
            elif type_id == AUDIO:
                self._push_audio(timestamp, payload, now)
            else:
                self._enqueue(type_id, max(self._video_out_ms, self._audio_out_ms), payload, now)
        except MediaError as error:
            # A frame the skip-frame maker or a parser could not follow: it goes on as it came.
            self._malformed(str(error))
            self._enqueue(type_id, self._side_ms(type_id), payload, now)
        self._input = None
        self._measure_bytes(len(payload), now)
        return self.poll(now)

    def poll(self, now: float) -> list[MediaMessage]:
        """What may leave now: what no track can still precede, and what was held past the bound."""
        bound = self._bound_s
        # Each filler acts only after its track has been quiet a while: asked only then
        # (the per-message case is a track that just arrived).
        audio_arrival = self._audio_last_arrival
        if audio_arrival is not None and now - audio_arrival >= bound:
            self._keep_audio_flowing(now)
        video_arrival = self._video_last_arrival
        if video_arrival is not None and (self._fps is None or now - video_arrival >= 3.0 / self._fps):
            self._keep_video_flowing(now)
        limit = self._release_limit(now)
        held_since = now - bound
        out = []
        queue = self._queue
        while queue and (queue[0][0] <= limit or queue[0][2] <= held_since):
            item = heapq.heappop(queue)
            if item[0] > self._released_ms:
                self._released_ms = item[0]
            out.append(item[3])
        return out

    @property
    def holding(self) -> bool:
        """Whether messages wait for ``poll``: only then must the adapter poll, since a
        message pushed releases what its arrival allows and runs the fillers itself."""
        return bool(self._queue)

    def finish(self) -> list[MediaMessage]:
        out = [item[3] for item in sorted(self._queue)]
        self._queue.clear()
        return out

    def take_events(self) -> list | tuple:
        """The events since the last call (asked once per message: nothing is made while there are none)."""
        events = self._events
        if not events:
            return ()
        self._events = []
        return events

    def verdicts(self) -> list[Verdict]:
        """The preflight: every rule checked so far, broken or not, repaired or not."""
        return list(self._verdicts.values())

    def rewrite_metadata(self, metadata: dict) -> dict:
        """onMetaData describing the output: frame rate, size and codec ids."""
        out = dict(metadata)
        declared = metadata.get("framerate") or metadata.get("videoframerate")
        if isinstance(declared, (int, float)) and not isinstance(declared, bool):
            fps = clamp_fps(declared)
            if fps is not None:
                self._declared_fps = fps
        fps = self._announced_fps()
        if fps:
            out["framerate"] = float(fps)
            out.pop("videoframerate", None)
        if self._width and self._height:
            out["width"], out["height"] = float(self._width), float(self._height)
        if self._avc is not None:
            out["videocodecid"] = 7.0
        if self._aac is not None:
            out["audiocodecid"] = 10.0
            out["audiosamplerate"] = float(self._aac.sample_rate)
            out["stereo"] = self._aac.channel_configuration >= 2
        for stale in ("duration", "filesize", "videodatarate", "audiodatarate"):
            out.pop(stale, None)
        return out

    # -- video ---------------------------------------------------------------------------

    def _push_video(self, timestamp: int, payload: bytes, now: float) -> None:
        self._video_last_arrival = now
        try:
            tag = tags.parse_video_tag(payload)
        except MediaError as error:
            self._malformed(f"video tag: {error}")
            self._enqueue(VIDEO, self._side_ms(VIDEO), payload, now)
            return
        if tag.packet_type == 0:
            self._on_video_config(tag, payload, now)
            return
        if tag.packet_type != 1 or tag.frame_type == 5:
            self._enqueue(VIDEO, self._side_ms(VIDEO), payload, now)  # end of sequence, command frames
            return
        self.counters.video_in += 1
        self._measure_video(timestamp, tag.frame_type == FRAME_KEY)
        stamp = self._place(self._video_clock(), timestamp, now, self._audio_timeline)
        self._note_repair("video", stamp.repair)
        if self._video_arrivals is None:
            self._video_arrivals = ArrivalClock(1000.0 / self._output_fps())
        self._video_arrivals.observe(now, stamp.time_ms)
        if self._video_passthrough or self._avc is None:
            self._video_passthrough_frame(stamp.time_ms, payload, now)
            return
        try:
            nals = [nal for nal in avcc.split_nal_units(tag.data, self._avc.nal_length_size) if nal]
        except MediaError as error:
            self._malformed(f"video frame: {error}")
            self._video_passthrough_frame(stamp.time_ms, payload, now)
            return
        if not any(avcc.nal_unit_type(nal) in (1, 5) for nal in nals):
            self._malformed("a video frame without a slice")
            return  # no picture: nothing to place on the grid
        is_key = tag.frame_type == FRAME_KEY
        if not self._seen_keyframe and not is_key:
            self.counters.dropped_before_keyframe += 1
            return
        if self._skipping_to_keyframe:
            if not is_key:
                self.counters.dropped_for_lag += 1
                return
            self._skipping_to_keyframe = False
        if is_key and self._sps_said:
            payload, nals = self._say_rate_in_band(tag, payload, nals)
        self._place_frame(tag, payload, nals, stamp.time_ms, now)

    def _say_rate_in_band(self, tag, payload: bytes, nals: list[bytes]) -> tuple[bytes, list[bytes]]:
        """A keyframe that carries its SPS in band (GStreamer's x264enc) gets the rewritten
        SPS too (``_announce_rate``): a decoder takes the SPS it meets last."""
        said = self._sps_said
        replaced = [said.get(nal, nal) for nal in nals]  # only SPS NAL units are keys
        if replaced == nals:
            return payload, nals
        data = avcc.join_nal_units(replaced, self._avc.nal_length_size)
        return tags.build_video_tag(tag.frame_type, 1, data, tag.composition_time), replaced

    def _place_frame(self, tag, original: bytes, nals: list[bytes], time_ms: float, now: float) -> None:
        """Put one frame on the grid: the slot after the last one unless it is far early or late."""
        period = 1000.0 / self._output_fps()
        is_key = tag.frame_type == FRAME_KEY
        last = self._last_slot
        if last is None:
            # The grid's phase is the first frame's: a constant-rate input sits on it exactly.
            # Audio may already have left past it (the video came after the start hold): then,
            # up to MAX_START_SHIFT_FRAMES, every frame is shifted alike to start at what left
            # and the shift is worked off START_SHIFT_DECAY_MS a frame, rather than frames
            # dropped to catch up (a B-frame early by the shift would pass for a too-fast
            # input). Further behind, the first frames are retimed or dropped as before.
            shift = max(0.0, self._released_ms - time_ms)
            self._start_shift_ms = shift if shift <= MAX_START_SHIFT_FRAMES * period else 0.0
            self._grid_origin = max(time_ms + self._start_shift_ms, float(self._released_ms))
            slot = 0
        else:
            grid_ms = time_ms + self._start_shift_ms + self._raise_shift_ms
            # Never below what already left (a track that was idle past the interleave bound).
            # (the first slot whose timestamp, rounded, is not below it: equal stamps may follow)
            floor_slot = math.ceil((self._released_ms - 0.5 - self._grid_origin) / period - 1e-9)
            slot = last + 1
            error = (grid_ms - self._grid_origin) / period - slot
            ahead = min(round(error), self._run_squeezed)
            if ahead > 0 and abs(error - ahead) <= SLOT_TOLERANCE:
                # The muxer repeated a decoding time in place of the next ones: the frames
                # squeezed after the last slot are these slots' pictures (their presentation
                # times say so), not a gap to fill; this frame takes its own slot.
                slot += ahead
                error -= ahead
            if error < -RAISE_WHEN_EARLY and self._fps < RAISED_RATES[-1]:
                # Early by a good part of a period: a faster input, before it falls behind
                # (at 60 fps into 30 the second frame is already half a period early).
                raised = self._raise_rate(period)
                if raised is not None:
                    slot = self._slot_after_raise(last, period, raised, grid_ms, now)
                    self._emit_frame(tag, original, nals, slot, raised, time_ms, now)
                    return
            if error < -SLOT_TOLERANCE:
                if not is_key and time_ms == self._run_in_ms:
                    squeezed_to = self._squeeze_to(tag.composition_time, period)
                    if squeezed_to is not None:
                        self._emit_frame(tag, original, nals, None, period, time_ms, now, squeezed_to)
                        return
                if not is_key and all(avcc.nal_ref_idc(n) == 0 for n in nals if avcc.nal_unit_type(n) in (1, 5)):
                    self.counters.dropped += 1
                    self._verdict("constant_frame_rate", True, True, "frames faster than the output rate")
                    return
                if -error * period > self.config.max_video_lag_ms and not is_key:
                    self.counters.dropped_for_lag += 1
                    self._skipping_to_keyframe = True
                    self._verdict("constant_frame_rate", True, True, "video ran ahead of its clock; skipped to a keyframe")
                    return
                self.counters.retimed += 1
            elif error > SLOT_TOLERANCE:
                slot = self._fill_gap(max(last, floor_slot - 1), max(slot + round(error), floor_slot), now)
            else:
                # on time: the grid follows the input's phase, slowly enough to stay a grid
                step = error * period * _PHASE_GAIN
                self._grid_origin += max(-PHASE_STEP_MS, min(PHASE_STEP_MS, step))
                if self._start_shift_ms:
                    self._start_shift_ms = max(0.0, self._start_shift_ms - START_SHIFT_DECAY_MS)
            if slot < floor_slot:
                slot = floor_slot
                self.counters.retimed += 1
        self._emit_frame(tag, original, nals, slot, period, time_ms, now)

    def _raise_rate(self, period: float) -> float | None:
        """The new, shorter period when the input runs steadily faster than the output,
        else None. Called for a frame that came early and cannot be dropped: without a
        faster grid each such frame would take a later slot, the video would fall behind
        its audio by a frame interval every two frames, and after ``max_video_lag_ms``
        whole GOPs would be dropped to catch up.

        The evidence is the last ``RATE_EVIDENCE`` frame intervals (input timestamps, as
        ``_measure_video`` keeps them for the input frame rate), or the
        last two where the publisher declared the rate they show: all within a quarter
        of their mean, so a burst of frames after a stall (intervals near 0) or jitter
        is no rate. The rate is snapped to ``RAISED_RATES`` and never lowered again."""
        fps = self._output_fps()
        times = self._video_times
        declared = self._declared_fps
        for count in ((2, RATE_EVIDENCE) if declared else (RATE_EVIDENCE,)):
            if len(times) <= count:
                return None
            steps = [times[i] - times[i - 1] for i in range(-count, 0)]
            mean = sum(steps) / count
            if mean <= 0 or max(steps) > 1.25 * mean or min(steps) < 0.75 * mean:
                return None
            rate = 1000.0 / mean
            if count == RATE_EVIDENCE:
                break
            if abs(rate / declared - 1.0) <= 0.25:
                rate = declared  # two intervals bear it out; one may be an encoder's odd first one
                break
        if rate < fps * RATE_RISE:
            return None
        new_fps = _standard_rate(rate)
        if new_fps <= fps or abs(rate / new_fps - 1.0) > 0.25:
            return None
        self._fps = new_fps
        self._skip_budget = None  # refilled at the new rate
        # what a frame is, where a re-based frame lands and how many a steady second holds
        self._video_clock().nominal_step_ms = 1000.0 / new_fps
        if self._video_arrivals is not None:
            self._video_arrivals.step_ms = 1000.0 / new_fps
        self._verdict(
            "constant_frame_rate", True, True,
            f"frames at {rate:.1f} fps, faster than {fps:g}: the output rate is raised to {new_fps:g} fps",
        )
        return 1000.0 / new_fps

    def _slot_after_raise(self, last: int, old_period: float, period: float, grid_ms: float, now: float) -> int:
        """The grid continued at the raised rate from the last frame out; this frame's slot.

        The frames retimed before the rise left the video behind its input by up to
        ``RATE_EVIDENCE`` intervals, and no frame can be dropped to win that back: the
        video keeps the delay (its grid follows the input's phase from there, as before),
        and the audio is moved on as far, in whole silent AAC frames, so the two stay in
        sync."""
        self._grid_origin += last * (old_period - period)  # the last slot's time kept
        slot = last + 1
        lag_ms = self._grid_origin + slot * period - grid_ms
        if lag_ms > 0:
            self._raise_shift_ms += lag_ms
            if self._silence is not None:
                wanted = round(lag_ms / self._audio_frame_ms())
                if wanted:
                    self._fill_silence(wanted, now)
        return slot

    def _squeeze_to(self, composition_time: int, period: float) -> int | None:
        """Where a frame with the same input decoding time as the one before goes, or None
        for the old way (retimed or dropped).

        A muxer squashed its decoding time onto the previous frame's: it keeps the
        presentation time it would have had in that frame's slot (the slot's output time
        plus its own composition time) and gets a decoding time of its own, a step after
        the previous frame's, strictly below the next slot (which stays as it was) and not
        above its presentation time. At most the SPS's reorder depth (at least 1) such
        frames after one slot, spread ``period / (bound + 1)`` apart: a stuck clock is not
        hidden, its frames go the old way once the bound is reached.
        """
        anchor = self._run_anchor_ms
        bound = max(1, DEFAULT_MAX_SQUEEZED if self._max_reorder is None else self._max_reorder)
        if anchor is None or self._run_squeezed >= bound or self._video_floor is None:
            self._run_anchor_ms = None
            return None
        step = max(1, int(period // (bound + 1)))
        low = max(self._video_out_ms + 1, self._released_ms)
        # Below the next slot by more than a millisecond of rounding: a squeezed frame is never a
        # whole period (33 or 34 ms at 30 fps) after its slot, so what reads decoding times alone
        # can tell it from the next slot's frame (a squeeze to 47 after a slot at 14 read as a slot).
        high = min(self._video_floor - 1, anchor + composition_time, anchor + math.floor(period) - 1)
        if low > high:
            self._run_anchor_ms = None  # the rest of the run goes the old way, in order
            return None
        return min(max(self._video_out_ms + step, low), high)

    def _fill_gap(self, last: int, target: int, now: float) -> int:
        """Slots after ``last`` up to ``target`` are empty; fill what may be filled; return the frame's slot."""
        fps = self._output_fps()
        missing = target - last - 1
        if missing <= 0:
            return target
        if missing > self.config.max_fill_s * fps:
            # A stall this long is not a frame rate problem: leave the gap.
            self._verdict("continuous_video", True, False, f"no video for {missing / fps:.1f} s")
            return target
        if self._skip_budget is None:
            self._skip_budget = _Budget(GENERATED_RATE * fps, GENERATED_BURST_S * fps)
        made = self._make_skip_frames(last + 1, missing, now)
        if made == missing:
            self._verdict("constant_frame_rate", True, True, "frames slower than the output rate")
            return target
        # B-frames, a reference structure a skip frame cannot repeat, or the bound: leave a gap.
        self.counters.retimed += 1
        why = self._skip.why_not or f"at most {GENERATED_BURST_S:g} s of generated frames at once"
        self._verdict("constant_frame_rate", True, False, f"frames slower than the output rate; {why}")
        return target

    def _make_skip_frames(self, first_slot: int, count: int, now: float) -> int:
        """Skip frames in ``count`` slots from ``first_slot``, as many as the stream and
        the bound allow; how many were made."""
        if self._skip_budget is None:
            fps = self._output_fps()
            self._skip_budget = _Budget(GENERATED_RATE * fps, GENERATED_BURST_S * fps)
        allowed = self._skip_budget.take(count, now) if self._skip.can_repeat else 0
        period = 1000.0 / self._output_fps()
        made = 0
        while made < allowed and self._skip.can_repeat:
            self._emit_skip_frame(max(first_slot + made, self._last_slot + 1), period, now)
            made += 1
        self._skip_budget.give_back(allowed - made)
        self.counters.duplicated += made
        return made

    def _keep_video_flowing(self, now: float) -> None:
        """While audio runs and video has paused (the device's camera, not the network:
        audio still arrives), repeat the last picture up to the audio, as time passes.

        Filling only when video resumes would come too late: past the interleave bound
        the audio has gone on without it.
        """
        last = self._last_slot
        if last is None or self._audio_last_arrival is None or self._avc is None:
            return
        period = 1000.0 / self._output_fps()
        idle = now - self._video_last_arrival
        audio_idle = now - self._audio_last_arrival
        if idle < 3 * period / 1000.0 or idle > self.config.max_fill_s or audio_idle > 3 * period / 1000.0:
            return  # video not paused, paused too long, or the audio has stopped too
        count = math.floor((self._audio_out_ms - (self._grid_origin + (last + 1) * period)) / period) + 1
        if count <= 0:
            return
        if self._make_skip_frames(last + 1, count, now):
            self._verdict("constant_frame_rate", True, True, "video paused while audio ran")
        why = self._skip.why_not
        if why:
            self._verdict("constant_frame_rate", True, False, f"video paused while audio ran; {why}")

    def _emit_frame(self, tag, original: bytes, nals: list[bytes], slot: int | None, period: float, time_ms: float,
                    now: float, squeezed_to: int | None = None) -> None:
        """Send one input frame: in ``slot``, or, ``squeezed_to`` that time within the
        current run's slot, its composition time lowered by as much as its decoding time
        rose, so that its presentation time is the one it had."""
        send_nals = self._skip.observe_frame(nals)
        frame_type = tag.frame_type
        if frame_type == FRAME_KEY:
            self._seen_keyframe = True
            frame_type = self._keyframe_label(time_ms + tag.composition_time)
        cts = tag.composition_time
        if squeezed_to is not None:
            cts -= squeezed_to - self._run_anchor_ms
        self._last_cts = cts
        if send_nals is nals:
            payload = original  # the common case: not a byte changed
            if frame_type != tag.frame_type:
                payload = tags.with_frame_type(payload, frame_type)
            if cts != tag.composition_time:
                payload = tags.with_composition_time(payload, cts)
        else:
            data = avcc.join_nal_units(send_nals, self._avc.nal_length_size)
            payload = tags.build_video_tag(frame_type, 1, data, cts)
        if squeezed_to is not None:
            self._run_squeezed += 1
            self.counters.squeezed += 1
            self._verdict("monotonic_timestamps", True, True, "video decoding times squashed by the muxer; spread within one frame")
            # not a slot: the next slot, the video floor and the release limit stay as they were
            self._video_out_ms = squeezed_to
            self.counters.video_out += 1
            self._enqueue(VIDEO, squeezed_to, payload, now)
            return
        out_ms = self._emit_video(slot, period, payload, now)
        self._run_squeezed = 0
        if time_ms == self._run_in_ms:
            self._run_anchor_ms = None  # the run went on past its squeezes: no more in it
        else:
            self._run_in_ms, self._run_anchor_ms = time_ms, out_ms

    def _emit_skip_frame(self, slot: int, period: float, now: float) -> None:
        nals = self._skip.make_repeat()
        payload = tags.build_video_tag(FRAME_INTER, 1, avcc.join_nal_units(nals, self._avc.nal_length_size), self._last_cts)
        self._emit_video(slot, period, payload, now)
        self._run_anchor_ms, self._run_squeezed = None, 0  # a frame after this one is not in the same slot as its input predecessor

    def _emit_video(self, slot: int, period: float, payload: bytes, now: float) -> int:
        out_ms = round(self._grid_origin + slot * period)
        if out_ms < self._released_ms:
            slot = self._rephase(slot, period)
            out_ms = round(self._grid_origin + slot * period)
        self._last_slot = slot
        self._slot_ms = out_ms
        self._video_out_ms = out_ms
        # the next slot's timestamp, less what the phase may still move, rounded as it will be
        self._video_floor = math.ceil(self._grid_origin + (slot + 1) * period - PHASE_STEP_MS - 0.5)
        self.counters.video_out += 1
        self._enqueue(VIDEO, out_ms, payload, now)
        return out_ms

    def _rephase(self, slot: int, period: float) -> int:
        """The slot a frame takes when ``slot`` would go out below what already left (audio
        held past the interleave bound went out first, or the phase step moved the slot
        under it); the grid is re-phased to put it there.

        The frame goes to the first millisecond not below what left that is a whole number
        of periods after the last slot out, as a rounded grid puts it (floor or ceiling: at
        most 1 ms off), and the grid is re-anchored on it, so every step stays whole
        periods. Clamping the one frame up to what left put it off the grid and made the
        step after it short (32 ms at 30 fps: rounding, the phase step and the clamp)."""
        released = self._released_ms
        last = self._last_slot
        if last is None:  # the first frame's grid starts at what left: not reached
            self._grid_origin = max(self._grid_origin, float(released) - slot * period)
            return slot
        base = self._slot_ms
        k = max(slot - last, 1, math.floor((released - base) / period))
        while True:
            x = base + k * period
            t = math.floor(x)
            if t < released:
                t = math.ceil(x)
            if t >= released:
                break
            k += 1
        self._grid_origin = t - (last + k) * period
        return last + k

    def _keyframe_label(self, time_ms: float) -> int:
        """Keep the key label only where the destination wants a keyframe, judged on the
        input's presentation times: keyframes the input already spaced far enough apart
        stay keyframes, whatever the grid did to their decoding times (an encoder whose
        muxer squashed its first decoding times, as GStreamer's flvmux does with B-frames,
        has its first GOP a frame or two short in DTS and exact in PTS)."""
        last = self._last_key_time_ms
        min_gap = self.config.min_keyframe_interval_s * 1000.0
        # Half a frame of slack: a 2 s GOP on a 30 fps grid lands on 1999.8 or 2000.1 ms.
        if last is not None and time_ms - last < min_gap - 500.0 / self._output_fps():
            self.counters.keyframes_relabelled += 1
            self._verdict("min_keyframe_interval", True, True, f"keyframes {(time_ms - last) / 1000:.2f} s apart")
            return FRAME_INTER
        self._last_key_time_ms = time_ms
        self._long_gop_reported = False
        return FRAME_KEY

    def _video_passthrough_frame(self, time_ms: float, payload: bytes, now: float) -> None:
        out_ms = max(int(round(time_ms)), self._video_out_ms + (1 if self.counters.video_out else 0), self._released_ms)
        self._video_out_ms = out_ms
        self._video_floor = out_ms
        self.counters.video_out += 1
        self._enqueue(VIDEO, out_ms, payload, now)

    def _on_video_config(self, tag, payload: bytes, now: float) -> None:
        if tag.codec != 7:
            self._video_passthrough = True
            self._verdict("video_codec", True, False, f"video codec {tag.codec!r} is not H.264")
        else:
            try:
                config = avcc.parse_avc_config(tag.data)
            except MediaError as error:
                self._malformed(f"AVC configuration: {error}")
                self._video_passthrough = True
                self._verdict("video_codec", True, False, f"unreadable AVC configuration: {error}")
            else:
                self._avc = config
                self._skip.observe_config(list(config.sps), list(config.pps))
                self._read_sps(config)
                payload = self._announce_rate(tag, config, payload)
        self._enqueue(VIDEO, self._side_ms(VIDEO), payload, now)

    def _announce_rate(self, tag, config, payload: bytes) -> bytes:
        """The sequence header with its SPS's timing saying the output's frame rate, where
        the SPS says another: ffmpeg takes a stream's frame rate from it, and a stream
        cleaned from 15 or 25 fps to 30 that still said 15 made ffmpeg's players and muxers
        put two frames in one tick ("non monotonically increasing dts", 165 times in 8 s
        at 15 fps). An SPS without timing info says nothing and stays as it is."""
        from rtmprelay.media import avc

        fps = self._announced_fps()
        try:
            sps = tuple(avc.sps_with_frame_rate(nal, fps) for nal in config.sps)
        except MediaError:
            return payload
        self._sps_said = {old: new for old, new in zip(config.sps, sps) if old != new}
        if sps == config.sps:
            return payload
        record = avcc.build_avc_config(attrs.evolve(config, sps=sps))
        return tags.build_video_tag(tag.frame_type, 0, record, tag.composition_time)

    def _read_sps(self, config) -> None:
        from rtmprelay.media import avc

        if not config.sps:
            return
        try:
            sps = avc.parse_sps(config.sps[0])
        except MediaError:
            return
        self._width, self._height = sps.width, sps.height
        self._max_reorder = sps.max_num_reorder_frames
        if sps.frame_rate:
            self._declared_fps = self._declared_fps or clamp_fps(float(sps.frame_rate))

    def _announced_fps(self) -> float:
        """The rate the output is said to have before its frames show it (onMetaData, the
        SPS): the grid's, or the one it rises to once the frames bear a faster declared
        rate out."""
        fps = self._output_fps()
        if self._declared_fps and self._declared_fps >= fps * RATE_RISE:
            fps = max(fps, _standard_rate(self._declared_fps))
        return fps

    @property
    def output_fps(self) -> float | None:
        """The output grid's rate now (the profile's, the declared one, or a raised one);
        None before it is chosen, when ``fps`` is None and nothing was declared yet."""
        return self._fps

    def _output_fps(self) -> float:
        if self._fps is None:
            # The declared rate, fixed once chosen so the grid never moves.
            self._fps = self._declared_fps or 30.0
        return self._fps

    def _video_clock(self) -> TrackTimeline:
        if self._video_timeline is None:
            self._video_timeline = TrackTimeline(1000.0 / self._output_fps(), self.config.jump_threshold_ms)
        return self._video_timeline

    # -- audio ---------------------------------------------------------------------------

    def _push_audio(self, timestamp: int, payload: bytes, now: float) -> None:
        self._audio_last_arrival = now
        if len(payload) >= 2 and payload[0] >> 4 == SOUND_AAC and payload[1] == AAC_PACKET_RAW:
            aac_packet_type = AAC_PACKET_RAW  # a legacy AAC frame, nearly every audio message: nothing to parse
        else:
            try:
                tag = tags.parse_audio_tag(payload)
            except MediaError as error:
                self._malformed(f"audio tag: {error}")
                self._enqueue(AUDIO, self._side_ms(AUDIO), payload, now)
                return
            if tag.aac_packet_type == 0:
                self._on_audio_config(tag, payload, now)
                return
            aac_packet_type = tag.aac_packet_type
        self.counters.audio_in += 1
        frame_ms = self._audio_frame_ms()
        if self._audio_timeline is None:
            self._audio_timeline = TrackTimeline(frame_ms, self.config.jump_threshold_ms)
        stamp = self._place(self._audio_timeline, timestamp, now, self._video_timeline)
        if stamp.repair is not None:
            self._note_repair("audio", stamp.repair)
        if self._aac is None or aac_packet_type is None:
            out_ms = max(int(round(stamp.time_ms)), self._audio_out_ms, self._released_ms)
            self._audio_out_ms = out_ms
            self._audio_floor = out_ms
            self.counters.audio_out += 1
            self._enqueue(AUDIO, out_ms, payload, now)
            return
        rate = self._aac.sample_rate
        if self._samples is None:
            # The first frame starts the sample clock where the timeline put it.
            self._samples = round(max(stamp.time_ms, self._released_ms) * rate / 1000.0)
        if self._audio_clock is None:
            self._audio_clock = ArrivalClock(frame_ms)
        clock = self._audio_clock
        position_ms = self._samples * 1000.0 / rate
        # A gap is missing audio only when the arrival clock agrees with the timestamps:
        # a clock that stamps fast says "late" on every frame, arrival does not.
        late = stamp.time_ms - position_ms
        arrived_late = clock.lateness(now, position_ms - self._drift_applied_ms)
        if arrived_late is None:
            arrived_late = late
        missing = min(late, arrived_late)
        if missing > 1.5 * frame_ms:
            filled = self._fill_silence(int(round(missing / frame_ms)), now)
            if filled is None:
                self._jump_samples(stamp.time_ms)
                self._verdict("continuous_audio", True, False, f"audio gap of {missing:.0f} ms (no silent frame for this AAC type)")
            elif filled * frame_ms < missing - 1.5 * frame_ms:
                self._jump_samples(position_ms + missing)
                self._verdict("continuous_audio", True, False, f"audio gap of {missing:.0f} ms, longer than the silence bound")
            else:
                self._verdict("continuous_audio", True, True, f"audio gap of {missing:.0f} ms")
        clock.observe(now, self._samples * 1000.0 / rate - self._drift_applied_ms)
        if self._correct_drift(clock, frame_ms, now):
            return  # dropped: the audio clock runs fast
        self._emit_audio(payload, now)

    def _correct_drift(self, clock: ArrivalClock, frame_ms: float, now: float) -> bool:
        """Keep the sample clock with the video, a whole AAC frame at a time: one silent
        frame in where the device's audio clock runs slow against the arrival clock (more
        than the video's timestamps do), this frame out where it runs fast. True when this
        frame is to be dropped."""
        drift = clock.drift_ms
        if drift is None:
            return False
        if self._video_arrivals is not None:
            # Against the video's own drift from arrival: a network path whose delay grows
            # moves both alike and is no reason to touch the audio.
            video = self._video_arrivals.drift_ms
            if video is not None:
                self._video_drift_ms = video
            drift -= self._video_drift_ms
        counters = self.counters
        counters.audio_drift_ms = round(drift, 1)
        if self._origin is not None and now - self._origin > 5.0:
            counters.audio_drift_ppm = round(drift / ((now - self._origin) * 1000.0) * 1e6)
        if self._drift_wait:
            self._drift_wait -= 1
            return False
        error = drift - self._drift_applied_ms
        if error > DRIFT_STEP * frame_ms and self._silence is not None and self._fill_silence(1, now):
            self.counters.silence_inserted -= 1  # counted as a drift repair, not a gap
            counters.audio_drift_inserted += 1
            self._drift_applied_ms += frame_ms
            self._drift_wait = DRIFT_FRAMES_PER_STEP - 1
            self._verdict("audio_clock", True, True, f"audio clock {drift:+.0f} ms against arrival")
        elif error < -DRIFT_STEP * frame_ms:
            counters.audio_dropped += 1
            self._drift_applied_ms -= frame_ms
            self._drift_wait = DRIFT_FRAMES_PER_STEP - 1
            self._verdict("audio_clock", True, True, f"audio clock {drift:+.0f} ms against arrival")
            return True
        return False

    def _fill_silence(self, wanted: int, now: float) -> int | None:
        """Emit up to ``wanted`` silent frames (within the bound); how many, or None without a silent frame."""
        if self._silence is None:
            return None
        if self._silence_budget is None:
            per_second = self._aac.sample_rate / self._aac.frame_length
            self._silence_budget = _Budget(GENERATED_RATE * per_second, GENERATED_BURST_S * per_second)
        granted = self._silence_budget.take(wanted, now)
        silence = aac_payload(self._audio_header_byte, self._silence)
        for _ in range(granted):
            self._emit_audio(silence, now)
        self.counters.silence_inserted += granted
        return granted

    def _jump_samples(self, time_ms: float) -> None:
        """Move the sample clock forward to ``time_ms`` (a gap the silence could not fill)."""
        self._samples = max(self._samples, round(time_ms * self._aac.sample_rate / 1000.0))
        self._audio_floor = round(self._samples * 1000.0 / self._aac.sample_rate)

    def _keep_audio_flowing(self, now: float) -> None:
        """While video runs and audio has stopped coming, fill the audio track with silence.

        Filling only when audio resumes would send the silence after video that
        already went out; a live destination wants audio that never stops.
        """
        if self._silence is None or self._samples is None or self._audio_last_arrival is None:
            return
        bound = self.config.interleave_delay_ms / 1000.0
        video_running = self._video_last_arrival is not None and now - self._video_last_arrival < bound
        if not video_running or now - self._audio_last_arrival < bound:
            return
        frame_ms = self._audio_frame_ms()
        behind = self._video_out_ms - self._samples * 1000.0 / self._aac.sample_rate
        if behind <= 0:
            return
        if behind > self.config.max_fill_s * 1000.0:
            self._jump_samples(self._video_out_ms)
            self._verdict("continuous_audio", True, False, f"no audio for {behind / 1000:.1f} s while video ran")
            return
        if self._fill_silence(math.ceil(behind / frame_ms), now):  # past the video: it may leave
            self._verdict("continuous_audio", True, True, "audio stopped while video ran")

    def _emit_audio(self, payload: bytes, now: float) -> None:
        rate = self._aac.sample_rate
        out_ms = int(round(self._samples * 1000.0 / rate))
        if out_ms < self._released_ms:
            # audio was idle past the interleave bound and the other track went on: catch up
            self._jump_samples(self._released_ms)
            out_ms = int(round(self._samples * 1000.0 / rate))
        self._samples += self._aac.frame_length
        self._audio_out_ms = out_ms
        self._audio_floor = round(self._samples * 1000.0 / rate)  # the next frame's timestamp
        self.counters.audio_out += 1
        self._enqueue(AUDIO, out_ms, payload, now)

    def _on_audio_config(self, tag, payload: bytes, now: float) -> None:
        self._audio_header_byte = payload[0]
        try:
            config = aac.parse_aac_config(tag.data)
        except MediaError as error:
            self._malformed(f"AudioSpecificConfig: {error}")
            self._verdict("audio_codec", True, False, f"unreadable AudioSpecificConfig: {error}")
        else:
            if not MIN_SAMPLE_RATE <= config.sample_rate <= MAX_SAMPLE_RATE or config.frame_length <= 0:
                self._malformed(f"AAC sample rate {config.sample_rate}")
                self._verdict("audio_codec", True, False, f"AAC sample rate {config.sample_rate} Hz is out of range")
            elif self._aac is None or (config.sample_rate, config.frame_length) == (self._aac.sample_rate, self._aac.frame_length):
                self._aac = config
                try:
                    self._silence = aac.silent_frame(config)
                except MediaError:
                    self._silence = None
            else:
                # A new rate mid-stream: the sample clock restarts where the old one ended.
                position_ms = None if self._samples is None else self._samples * 1000.0 / self._aac.sample_rate
                self._aac = config
                self._silence_budget = None
                try:
                    self._silence = aac.silent_frame(config)
                except MediaError:
                    self._silence = None
                if position_ms is not None:
                    self._samples = math.ceil(position_ms * config.sample_rate / 1000.0)
        self._enqueue(AUDIO, self._side_ms(AUDIO), payload, now)

    def _audio_frame_ms(self) -> float:
        if self._aac is None:
            return 1024 * 1000.0 / 44100
        return self._aac.frame_length * 1000.0 / self._aac.sample_rate

    # -- shared --------------------------------------------------------------------------

    def _place(self, timeline: TrackTimeline, timestamp: int, now: float, other: TrackTimeline | None) -> Stamp:
        """Output time of one message: its timestamp on the track's timeline, or, in
        wall-clock mode (ffmpeg's -use_wallclock_as_timestamps), its arrival."""
        if self.config.wallclock:
            return Stamp((now - self._origin) * 1000.0)
        if other is None or not other.started:
            anchor = (now - self._origin) * 1000.0
        else:
            # where the other track's clock says a message arriving now belongs ...
            anchor = other.last_out + (now - other.last_arrival) * 1000.0
            # ... or, where the publisher's timestamps agree with that, where they say: exact
            # to the millisecond, so the two tracks interleave as the publisher sent them
            step = (timestamp - other.last_in) % _WRAP
            by_stamp = other.last_out + (step - _WRAP if step >= _WRAP // 2 else step)
            if abs(by_stamp - anchor) <= STAMP_AGREEMENT_MS:
                anchor = by_stamp
        return timeline.place(timestamp, now, anchor)

    def _side_ms(self, type_id: int) -> int:
        """Timestamp of a message that is not a frame (sequence header, end of sequence, a
        malformed tag): where its track is, never below what already left."""
        own = self._video_out_ms if type_id == VIDEO else self._audio_out_ms if type_id == AUDIO else 0
        return max(own, self._released_ms)

    def _release_limit(self, now: float) -> float:
        """Messages up to this time are safe to release: no active track can still go below it.

        A track that has not started (after the first ``START_HOLD_S``), or sent nothing for
        the interleave bound, does not hold the other back; when it comes (back), it starts at
        or after what left.
        """
        if self._origin is None:
            return math.inf  # nothing came yet
        if self._video_floor is None and now - self._origin < START_HOLD_S:
            # the stream's first moments: the first video frame is likely on its way, and
            # audio that left before it would make it start late (audio arriving after the
            # video starts on its own sample clock: nothing for the video to wait for)
            return -math.inf
        bound = self._bound_s
        limit = math.inf
        floor = self._video_floor
        if floor is not None and now - self._video_last_arrival < bound:
            limit = floor
        floor = self._audio_floor
        if floor is not None and now - self._audio_last_arrival < bound and floor < limit:
            limit = floor
        return limit

    def _enqueue(self, type_id: int, timestamp: int, payload: bytes, now: float) -> None:
        given = self._input
        if given is not None and payload is given.payload and type_id == given.type_id:
            message = given.retimed(timestamp)  # not a byte changed: the value made by the session
        else:
            message = MediaMessage.of(type_id, timestamp, payload)  # made or changed here
        heapq.heappush(self._queue, (timestamp, next(self._seq), now, message))

    def _malformed(self, detail: str) -> None:
        self.counters.malformed += 1
        self._verdict("well_formed_media", True, False, detail)

    def _note_repair(self, track: str, repair: Repair | None) -> None:
        if repair is None:
            return
        repairs = self.counters.repairs[track]
        repairs[repair.value] = repairs.get(repair.value, 0) + 1
        self._verdict("monotonic_timestamps", True, True, f"{track} timestamps: {repair.value}")

    def _verdict(self, rule: str, broken: bool, repaired: bool, detail: str) -> None:
        old = self._verdicts.get(rule)
        if old is not None and (old.broken, old.repaired) == (broken, repaired):
            return
        if old is not None and old.broken and not old.repaired:
            return  # an unrepaired break stays the verdict
        self._verdicts[rule] = Verdict(rule, broken, repaired, detail)
        if broken:
            self._events.append(RuleBroken(rule, repaired, detail))

    def _measure_video(self, timestamp: int, is_key: bool) -> None:
        times = self._video_times
        times.append(timestamp)
        while len(times) > 2 and (times[-1] - times[0]) / 1000.0 > _MEASURE_WINDOW_S:
            times.popleft()
        if len(times) >= 2 and times[-1] > times[0]:
            self.counters.input_fps = round((len(times) - 1) * 1000.0 / (times[-1] - times[0]), 2)
        if not is_key:
            self._check_long_gop(timestamp)
            return
        self.counters.keyframes_in += 1
        if self._last_key_in_ms is not None and timestamp > self._last_key_in_ms:
            interval = (timestamp - self._last_key_in_ms) / 1000.0
            self.counters.input_keyframe_interval_s = round(interval, 3)
            previous_max = self.counters.max_input_keyframe_interval_s or 0.0
            self.counters.max_input_keyframe_interval_s = round(max(previous_max, interval), 3)
        self._last_key_in_ms = timestamp
        self._long_gop_reported = False

    def _check_long_gop(self, timestamp: int) -> None:
        limit = self.config.max_keyframe_interval_s
        if limit is None or self._last_key_in_ms is None or self._long_gop_reported:
            return
        gop = (timestamp - self._last_key_in_ms) / 1000.0
        if gop > limit:
            self._long_gop_reported = True
            self.counters.long_gops += 1
            self._events.append(LongGop(gop))
            self._verdict("max_keyframe_interval", True, False, f"GOP over {limit:g} s; needs re-encoding")

    def _measure_bytes(self, size: int, now: float) -> None:
        """Input bitrate (``counters.input_bitrate``) over the last ``_MEASURE_WINDOW_S`` of
        arrival time. The bitrate rule is judged on the last ``BITRATE_WINDOW_S`` (several
        GOPs), once that much input has come after the first ``BITRATE_WARMUP_S`` (an
        encoder ramping up): one second says little about a stream."""
        self._bytes_in_window += size
        self._bytes_in_recent += size
        bucket = self._bytes_bucket
        if bucket is not None and now - bucket[0] < _BYTES_BUCKET_S:
            bucket[1] += size  # nearly every message
            return
        bucket = self._bytes_bucket = [now, size]
        window = self._bytes
        window.append(bucket)
        while now - window[0][0] > BITRATE_WINDOW_S:
            self._bytes_in_window -= window.popleft()[1]
        recent = self._bytes_recent
        recent.append(bucket)
        while now - recent[0][0] > _MEASURE_WINDOW_S:
            self._bytes_in_recent -= recent.popleft()[1]
        span = now - recent[0][0]
        if span >= 1.0:
            self.counters.input_bitrate = round(self._bytes_in_recent * 8 / span)
        if now - self._origin < BITRATE_WARMUP_S + 0.95 * BITRATE_WINDOW_S:
            return
        verdict = self._verdicts.get("bitrate")
        if verdict is not None and verdict.broken and not verdict.repaired:
            return  # an unrepaired break stays the verdict: no detail formatted per message for it
        span = now - window[0][0]
        if span < 0.95 * BITRATE_WINDOW_S:
            return  # the window is not full (the input stalled)
        rate = round(self._bytes_in_window * 8 / span)
        low, high = self.config.min_bitrate, self.config.max_bitrate
        if low is not None and rate < low:
            self._verdict("bitrate", True, False, f"{rate / 1e6:.2f} Mbit/s over {span:.0f} s, under the {self.config.profile} minimum of {low / 1e6:g} Mbit/s")
        elif high is not None and rate > high:
            self._verdict("bitrate", True, False, f"{rate / 1e6:.2f} Mbit/s over {span:.0f} s, over the {self.config.profile} maximum of {high / 1e6:g} Mbit/s")


def aac_payload(header_byte: int, frame: bytes) -> bytes:
    return bytes((header_byte, 1)) + frame


def silent_audio_payloads(config: aac.AacConfig, count: int, header_byte: int = 0xAF) -> list[bytes]:
    """``count`` FLV audio bodies (AAC raw frames) of digital silence for a stream whose
    AudioSpecificConfig is ``config``; ``header_byte`` is the stream's own FLV sound
    header byte. Each lasts ``config.frame_length`` samples: to bridge a gap, stamp
    them on from the stream's sample position. ``MediaError`` when the AAC type has no
    silent frame (HE-AAC, unusual channel layouts)."""
    frame = aac_payload(header_byte, aac.silent_frame(config))
    return [frame] * count
