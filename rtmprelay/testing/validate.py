"""Judging a stream the way a strict ingest would: timestamps, GOPs, IDRs, drift, decoding.

``validate(source, profile)`` reads an FLV recording (what nginx-rtmp
records after the relay), FLV bytes, a `DirtyStream` or a list of
`StreamMessage` / `FlvTag`, and returns a `Report`: a few measurements and
every `Violation` found, each saying what was wrong, where (which frame of
which track, which tag) and when (its timestamp)::

    report = validate(nginx.wait_recording("s1"), "cloudflare")
    report.assert_ok()                  # AssertionError listing the first violations
    assert report.failed_checks() == {"keyframe_interval"}

What is judged, and with which tolerance, is the `ValidationProfile`;
`VALIDATION_PROFILES` has "cloudflare", "youtube" and "generic". Like
`rtmprelay.testing.flv`, this module shares no code with ``rtmprelay.media``,
whose output it is there to judge.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable
from typing import Any

import attrs

from rtmprelay.testing.flv import read_flv_tags

__all__ = [
    "CHECKS",
    "Report",
    "VALIDATION_PROFILES",
    "ValidationProfile",
    "Violation",
    "validate",
]

AUDIO, VIDEO, SCRIPT = 8, 9, 18
CODEC_AVC, SOUND_AAC = 7, 10

#: Every check name a `Violation` can carry.
CHECKS = (
    "codec",  # a codec the profile does not take
    "sequence_header",  # frames before their AVC / AAC sequence header
    "first_keyframe",  # the first video frame is not a keyframe
    "monotonic",  # video DTS not strictly increasing, audio timestamps going back
    "frame_interval",  # a video DTS step away from 1000/fps by more than the tolerance
    "frame_rate",  # the average output rate is not the rate asked for (validate(fps=...))
    "keyframe_interval",  # a GOP shorter or longer than the profile allows
    "keyframe_spread",  # GOP lengths differ more than the profile allows
    "idr",  # a keyframe-labelled frame without an IDR slice, or an IDR not labelled
    "closed_gop",  # a frame after a keyframe (decode order) shown before it
    "bframes",  # B-frames (reordering) where the profile forbids them
    "decode",  # PyAV/libavcodec could not decode a frame cleanly
    "av_drift",  # audio and video clocks apart by more than the profile allows
    "audio_gap",  # audio timestamps jumping by more than 1.5 frame durations
    "bitrate",  # average video + audio bitrate above the profile's maximum
)

#: Frame rates an inferred rate is snapped to when it is within 1.5 % of one.
COMMON_FRAME_RATES = (10, 12, 15, 20, 24000 / 1001, 24, 25, 30000 / 1001, 30, 48, 50, 60000 / 1001, 60)

_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


@attrs.frozen
class ValidationProfile:
    """What a destination insists on. ``None`` switches a check off.

    - keyframe interval: every GOP (keyframe to keyframe, DTS) within
      ``min_keyframe_interval_s``..``max_keyframe_interval_s``, half a frame
      interval of slack; the last GOP may be short but not longer than the
      maximum. ``keyframe_interval_spread_s`` bounds max - min of the
      complete GOPs ("steady keyframe interval").
    - ``frame_interval_tolerance_ms``: every video DTS step within this of
      1000/fps (fps given, or inferred from the median step). 1 ms allows
      the rounding of ms timestamps (33/34 ms at 30 fps).
    - ``frame_rate_tolerance``: relative; the average output rate against
      the fps given to `validate` (unchecked without one).
    - ``max_av_drift_ms``: |last audio timestamp - last video DTS|, taken at
      every message in arrival order once both tracks have started.
    - ``max_audio_gap_frames``: audio timestamp steps above this many AAC
      frame durations (1024 samples) are gaps.
    - ``video_codecs`` / ``audio_codecs``: FLV codec ids allowed (7 AVC, 10 AAC).
    - ``allow_bframes``; ``max_bitrate_bps`` (audio + video payload, average);
      ``check_decode`` decodes every frame with PyAV.

    Identity checks (sequence headers first, first frame a keyframe,
    monotonic timestamps, keyframe-labelled frames are IDRs, closed GOPs)
    always run.
    """

    name: str
    #: An IDR labelled inter in the FLV header is how a packet-level cleaner
    #: spaces keyframes out (the picture still decodes); a profile may forbid it.
    allow_unlabelled_idr: bool = True
    min_keyframe_interval_s: float | None = None
    max_keyframe_interval_s: float | None = None
    keyframe_interval_spread_s: float | None = None
    frame_interval_tolerance_ms: float | None = 1.0
    frame_rate_tolerance: float = 0.01
    max_av_drift_ms: float | None = 200.0
    max_audio_gap_frames: float | None = 1.5
    video_codecs: frozenset[int] | None = frozenset({CODEC_AVC})
    audio_codecs: frozenset[int] | None = frozenset({SOUND_AAC})
    allow_bframes: bool = True
    max_bitrate_bps: int | None = None
    check_decode: bool = True


VALIDATION_PROFILES: dict[str, ValidationProfile] = {
    # developers.cloudflare.com/stream/stream-live: H.264 + AAC, closed GOPs of
    # 2 to 10 s, at most 12000 kbit/s. B-frames are allowed inside closed GOPs.
    "cloudflare": ValidationProfile(
        "cloudflare",
        min_keyframe_interval_s=2.0,
        max_keyframe_interval_s=10.0,
        max_bitrate_bps=12_000_000,
    ),
    # YouTube Live: keyframes at most every 4 s (2 s recommended).
    "youtube": ValidationProfile("youtube", max_keyframe_interval_s=4.0),
    # Structure only: what any RTMP server (nginx-rtmp) copes with.
    "generic": ValidationProfile(
        "generic",
        frame_interval_tolerance_ms=None,
        max_av_drift_ms=None,
        max_audio_gap_frames=None,
        video_codecs=None,
        audio_codecs=None,
    ),
}


@attrs.frozen
class Violation:
    """One thing a strict ingest would object to."""

    check: str  # one of CHECKS
    what: str
    where: str  # e.g. "video frame #12 (message #40)"
    when_ms: int | None = None  # the timestamp concerned (DTS for video)

    def __str__(self) -> str:
        when = f" at {self.when_ms} ms" if self.when_ms is not None else ""
        return f"[{self.check}] {self.what} ({self.where}{when})"


@attrs.frozen
class Report:
    """What `validate` measured and found. ``ok`` when there is no violation."""

    profile: ValidationProfile
    violations: tuple[Violation, ...]
    video_frames: int
    audio_frames: int
    duration_ms: int  # first to last video DTS plus one frame interval (audio if no video)
    nominal_fps: float | None  # the rate frame intervals were judged against
    output_fps: float | None  # average: frames over the DTS span
    keyframe_timestamps_ms: tuple[int, ...]
    keyframe_intervals_ms: tuple[int, ...]
    has_bframes: bool
    max_composition_time_ms: int
    max_av_drift_ms: int | None  # signed (audio ahead > 0); None with one track
    audio_gaps_ms: tuple[int, ...]  # the timestamp steps counted as gaps
    decode_errors: int
    decode_warnings: tuple[str, ...]
    decoded_video_frames: int | None  # None when not decoded
    decoded_audio_frames: int | None
    bitrate_bps: int | None
    video_config_changes: int  # sequence headers with new content after the first

    @property
    def ok(self) -> bool:
        return not self.violations

    def failed_checks(self) -> set[str]:
        return {v.check for v in self.violations}

    def of(self, check: str) -> list[Violation]:
        return [v for v in self.violations if v.check == check]

    def summary(self, max_violations: int = 10) -> str:
        fps = f"{self.output_fps:.2f}" if self.output_fps is not None else "-"
        nominal = f"{self.nominal_fps:.3f}" if self.nominal_fps is not None else "-"
        head = (
            f"profile {self.profile.name}: {len(self.violations)} violation(s); "
            f"{self.video_frames} video frames ({fps} fps, judged against {nominal}), "
            f"{self.audio_frames} audio frames, {self.duration_ms} ms, "
            f"keyframes at {list(self.keyframe_timestamps_ms[:12])}"
            f"{'...' if len(self.keyframe_timestamps_ms) > 12 else ''} ms, "
            f"max A/V drift {self.max_av_drift_ms} ms, decode errors {self.decode_errors}"
        )
        if not self.violations:
            return head
        counts: dict[str, int] = {}
        for v in self.violations:
            counts[v.check] = counts.get(v.check, 0) + 1
        lines = [head, "by check: " + ", ".join(f"{k} {n}" for k, n in counts.items())]
        lines += [f"  {v}" for v in self.violations[:max_violations]]
        if len(self.violations) > max_violations:
            lines.append(f"  ... and {len(self.violations) - max_violations} more")
        return "\n".join(lines)

    def assert_ok(self, max_violations: int = 10) -> None:
        """Raise AssertionError with a readable summary unless there is no violation."""
        if self.violations:
            raise AssertionError(self.summary(max_violations))

    def __str__(self) -> str:
        return self.summary()


# --- input ------------------------------------------------------------------------


@attrs.frozen
class _Tag:
    index: int  # position among the source's messages/tags
    type_id: int
    timestamp: int
    payload: bytes


def _tags(source: Any) -> list[_Tag]:
    if isinstance(source, (str, bytes, os.PathLike)):
        items: Iterable[Any] = read_flv_tags(source)
    elif hasattr(source, "messages"):  # a DirtyStream
        items = source.messages
    else:
        items = source
    tags = []
    for n, item in enumerate(items):
        if hasattr(item, "tag_type"):
            tags.append(_Tag(n, item.tag_type, item.timestamp, item.payload))
        elif hasattr(item, "type_id"):
            tags.append(_Tag(n, item.type_id, item.timestamp, item.payload))
        else:
            type_id, timestamp, payload = item
            tags.append(_Tag(n, type_id, timestamp, payload))
    return tags


def _profile(profile: str | ValidationProfile) -> ValidationProfile:
    if isinstance(profile, ValidationProfile):
        return profile
    try:
        return VALIDATION_PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown validation profile {profile!r}; known: {sorted(VALIDATION_PROFILES)}") from None


# --- H.264 / AAC bits -------------------------------------------------------------


def _nal_types(data: bytes, length_size: int) -> list[int] | None:
    """NAL unit types of an AVCC frame, or None when the lengths do not add up."""
    types = []
    offset = 0
    while offset < len(data):
        if offset + length_size > len(data):
            return None
        size = int.from_bytes(data[offset:offset + length_size], "big")
        offset += length_size
        if size == 0 or offset + size > len(data):
            return None
        types.append(data[offset] & 0x1F)
        offset += size
    return types


def _aac_sample_rate(config: bytes) -> int | None:
    if len(config) < 2:
        return None
    index = ((config[0] & 0x07) << 1) | (config[1] >> 7)
    if index < len(_AAC_RATES):
        return _AAC_RATES[index]
    if index == 15 and len(config) >= 5:
        bits = int.from_bytes(config[1:5], "big")
        return (bits >> 7) & 0xFFFFFF
    return None


def _snap_fps(fps: float) -> float:
    best = min(COMMON_FRAME_RATES, key=lambda r: abs(r - fps))
    return best if abs(best - fps) <= 0.015 * best else fps


@attrs.define
class _Frame:
    number: int  # among video frames
    tag: _Tag
    dts: int
    cts: int
    keyframe: bool
    avcc: bytes
    config: bytes


# --- the checks -------------------------------------------------------------------


class _Checker:
    def __init__(self, profile: ValidationProfile, fps: float | None) -> None:
        self.profile = profile
        self.fps = fps
        self.violations: list[Violation] = []
        self.frames: list[_Frame] = []
        self.audio: list[tuple[int, _Tag, bytes, bytes]] = []  # (number, tag, raw, config)
        self.video_config: bytes | None = None
        self.length_size = 4
        self.audio_config: bytes | None = None
        self.config_changes = 0
        self.codecs_reported: set[tuple[str, int]] = set()
        self.last_video_dts: int | None = None
        self.last_audio_ts: int | None = None
        # The clocks A/V drift compares: the latest audio timestamp and the
        # latest video DTS. FLV interleaves by DTS; comparing with PTS would count
        # a B-frame stream's reorder delay (up to seconds at a low, varying frame
        # rate) as drift.
        self.audio_clock: int | None = None
        self.video_clock: int | None = None
        self.drift_max: int | None = None
        self.drifting = {True: False, False: False}  # episodes of audio ahead / behind
        self.audio_gaps: list[int] = []
        self.video_breaks: set[int] = set()  # frame numbers where video DTS went back

    def add(self, check: str, what: str, where: str, when: int | None = None) -> None:
        self.violations.append(Violation(check, what, where, when))

    # -- per message --

    def video(self, tag: _Tag) -> None:
        data = tag.payload
        if not data:
            return
        where = f"video message #{tag.index}"
        if data[0] & 0x80:  # enhanced RTMP: a FourCC instead of a codec id
            fourcc = data[1:5].decode("latin-1")
            if self.profile.video_codecs is not None:
                self._codec("video", -1, where, tag.timestamp, f"enhanced RTMP video {fourcc!r}")
            return
        codec = data[0] & 0x0F
        allowed = self.profile.video_codecs
        if allowed is not None and codec not in allowed:
            self._codec("video", codec, where, tag.timestamp, f"video codec id {codec}")
        if codec != CODEC_AVC or len(data) < 2:
            return
        if data[1] == 0:
            config = data[5:]
            if self.video_config is not None and config != self.video_config:
                self.config_changes += 1
            self.video_config = config
            if len(config) >= 5:
                self.length_size = (config[4] & 0x03) + 1
            return
        if data[1] != 1 or len(data) < 5:
            return  # end of sequence
        number = len(self.frames)
        where = f"video frame #{number} (message #{tag.index})"
        keyframe = (data[0] >> 4) == 1
        cts = int.from_bytes(data[2:5], "big", signed=True)
        if self.video_config is None and number == 0:
            self.add("sequence_header", "video frame before any AVC sequence header", where, tag.timestamp)
        if number == 0 and not keyframe:
            self.add("first_keyframe", "the first video frame is not a keyframe", where, tag.timestamp)
        if self.last_video_dts is not None and tag.timestamp <= self.last_video_dts:
            step = "repeated" if tag.timestamp == self.last_video_dts else "went back"
            self.add(
                "monotonic",
                f"video DTS {step}: {self.last_video_dts} -> {tag.timestamp} ms ({tag.timestamp - self.last_video_dts:+d})",
                where, tag.timestamp,
            )
            if tag.timestamp < self.last_video_dts:
                # A new timeline: neither clock from before says anything about it.
                self.video_breaks.add(number)
                self.video_clock = None
                self.audio_clock = None
        avcc = data[5:]
        types = _nal_types(avcc, self.length_size)
        if types is None:
            self.add("idr", f"NAL unit lengths ({self.length_size}-byte) do not add up to the frame", where, tag.timestamp)
        elif keyframe and 5 not in types:
            self.add("idr", f"keyframe-labelled frame has no IDR slice (NAL types {types})", where, tag.timestamp)
        elif not keyframe and 5 in types and not self.profile.allow_unlabelled_idr:
            self.add("idr", f"IDR slice in a frame not labelled keyframe (NAL types {types})", where, tag.timestamp)
        self.frames.append(_Frame(number, tag, tag.timestamp, cts, keyframe, avcc, self.video_config or b""))
        self.last_video_dts = tag.timestamp
        self.video_clock = tag.timestamp if self.video_clock is None else max(self.video_clock, tag.timestamp)
        if self.audio_clock is not None:
            # A fresh video frame behind audio that has already arrived: audio runs ahead.
            self._drift(max(0, self.audio_clock - self.video_clock), True, where, tag.timestamp)

    def audio_message(self, tag: _Tag) -> None:
        data = tag.payload
        if not data:
            return
        fmt = data[0] >> 4
        allowed = self.profile.audio_codecs
        where = f"audio message #{tag.index}"
        if allowed is not None and fmt not in allowed:
            self._codec("audio", fmt, where, tag.timestamp, f"audio format {fmt}")
        if fmt != SOUND_AAC or len(data) < 2:
            return
        if data[1] == 0:
            self.audio_config = data[2:]
            return
        number = len(self.audio)
        where = f"audio frame #{number} (message #{tag.index})"
        if self.audio_config is None and number == 0:
            self.add("sequence_header", "AAC frame before any AAC sequence header", where, tag.timestamp)
        last = self.last_audio_ts
        if last is not None:
            step = tag.timestamp - last
            if step < 0:
                self.add("monotonic", f"audio timestamp went back: {last} -> {tag.timestamp} ms ({step:+d})", where, tag.timestamp)
                self.video_clock = None
                self.audio_clock = None
            elif self.profile.max_audio_gap_frames is not None:
                frame_ms = 1024_000 / (_aac_sample_rate(self.audio_config or b"") or 44100)
                if step > self.profile.max_audio_gap_frames * frame_ms:
                    self.audio_gaps.append(step)
                    self.add(
                        "audio_gap",
                        f"audio gap: timestamp step {step} ms, {step / frame_ms:.1f} frame durations "
                        f"(limit {self.profile.max_audio_gap_frames:g} x {frame_ms:.2f} ms)",
                        where, tag.timestamp,
                    )
        self.audio.append((number, tag, data[2:], self.audio_config or b""))
        self.last_audio_ts = tag.timestamp
        self.audio_clock = tag.timestamp
        if self.video_clock is not None:
            # Fresh audio behind video that has already arrived: audio runs behind.
            self._drift(min(0, tag.timestamp - self.video_clock), False, where, tag.timestamp)

    def _codec(self, kind: str, codec: int, where: str, when: int, what: str) -> None:
        if (kind, codec) not in self.codecs_reported:
            self.codecs_reported.add((kind, codec))
            self.add("codec", f"{what} is not allowed by profile {self.profile.name}", where, when)

    def _drift(self, drift: int, ahead_side: bool, where: str, when: int) -> None:
        """One measurement of audio minus video clock (> 0: audio ahead).

        Audio ahead is measured when a video frame arrives, audio behind when
        audio arrives, so a gap in one track (its clock standing still) does
        not count as drift; timelines that went back are not compared.
        """
        if self.drift_max is None or abs(drift) > abs(self.drift_max):
            self.drift_max = drift
        bound = self.profile.max_av_drift_ms
        if bound is None:
            return
        if abs(drift) > bound:
            if not self.drifting[ahead_side]:
                ahead = "ahead of" if drift > 0 else "behind"
                self.add(
                    "av_drift",
                    f"audio {abs(drift)} ms {ahead} video (audio clock {self.audio_clock} ms, "
                    f"video clock (DTS) {self.video_clock} ms; limit {bound:g} ms)",
                    where, when,
                )
            self.drifting[ahead_side] = True
        else:
            self.drifting[ahead_side] = False

    # -- over the whole stream --

    def timing(self) -> tuple[float | None, float | None, int]:
        """Frame intervals and rate; returns (nominal fps, output fps, duration ms)."""
        frames = self.frames
        steps = [(b, b.dts - a.dts) for a, b in zip(frames, frames[1:]) if b.dts > a.dts]
        nominal = self.fps
        if nominal is None and steps:
            median = statistics.median(step for _, step in steps)
            nominal = _snap_fps(1000 / median) if median > 0 else None
        interval = 1000 / nominal if nominal else None
        tolerance = self.profile.frame_interval_tolerance_ms
        if interval is not None and tolerance is not None:
            for frame, step in steps:
                if abs(step - interval) > tolerance:
                    self.add(
                        "frame_interval",
                        f"video frame interval {step} ms, expected {interval:.2f} +- {tolerance:g} ms "
                        f"({nominal:.3f} fps)",
                        f"video frame #{frame.number} (message #{frame.tag.index})", frame.dts,
                    )
        output = None
        span = sum(step for _, step in steps)  # discontinuities backwards left out
        if span > 0:
            output = len(steps) * 1000 / span
        if self.fps is not None and output is not None:
            if abs(output - self.fps) > self.profile.frame_rate_tolerance * self.fps:
                self.add(
                    "frame_rate",
                    f"average output rate {output:.3f} fps, expected {self.fps:g} "
                    f"+- {self.profile.frame_rate_tolerance:.0%}",
                    f"video frames #0..#{len(frames) - 1}", frames[-1].dts,
                )
        if frames:
            duration = span + round(interval or 0)
        elif self.audio:
            duration = self.audio[-1][1].timestamp - self.audio[0][1].timestamp
        else:
            duration = 0
        return nominal, output, max(0, duration)

    def gops(self, nominal: float | None) -> tuple[list[int], list[int]]:
        keys = [f for f in self.frames if f.keyframe]
        times = [f.dts for f in keys]
        intervals = [b.dts - a.dts for a, b in zip(keys, keys[1:])]
        p = self.profile
        slack = 500 / nominal if nominal else 0.0
        for (a, b), step in zip(zip(keys, keys[1:]), intervals):
            if any(a.number < n <= b.number for n in self.video_breaks):
                continue  # timestamps went back inside this GOP: "monotonic" has said so
            where = f"keyframe video frame #{b.number} (message #{b.tag.index})"
            if p.min_keyframe_interval_s is not None and step < p.min_keyframe_interval_s * 1000 - slack:
                self.add(
                    "keyframe_interval",
                    f"keyframe {step / 1000:.3f} s after the previous one (minimum {p.min_keyframe_interval_s:g} s)",
                    where, b.dts,
                )
            if p.max_keyframe_interval_s is not None and step > p.max_keyframe_interval_s * 1000 + slack:
                self.add(
                    "keyframe_interval",
                    f"keyframe {step / 1000:.3f} s after the previous one (maximum {p.max_keyframe_interval_s:g} s)",
                    where, b.dts,
                )
        if keys and p.max_keyframe_interval_s is not None and not any(n > keys[-1].number for n in self.video_breaks):
            last = self.frames[-1]
            open_ms = last.dts - keys[-1].dts + (1000 / nominal if nominal else 0)
            if open_ms > p.max_keyframe_interval_s * 1000 + slack:
                self.add(
                    "keyframe_interval",
                    f"no keyframe for {open_ms / 1000:.3f} s up to the end (maximum {p.max_keyframe_interval_s:g} s)",
                    f"video frames #{keys[-1].number}..#{last.number}", last.dts,
                )
        if not keys and self.frames:
            self.add("keyframe_interval", "no keyframe at all", f"{len(self.frames)} video frames", self.frames[0].dts)
        complete = [step for step in intervals if step > 0]
        if p.keyframe_interval_spread_s is not None and len(complete) >= 2:
            intervals_ok = complete
            spread = max(intervals_ok) - min(intervals_ok)
            if spread > p.keyframe_interval_spread_s * 1000 + 2 * slack:
                self.add(
                    "keyframe_spread",
                    f"GOP lengths range {min(intervals_ok)}..{max(intervals_ok)} ms "
                    f"(spread limit {p.keyframe_interval_spread_s:g} s)",
                    f"{len(intervals_ok)} complete GOPs", None,
                )
        return times, intervals

    def reordering(self) -> tuple[bool, int]:
        reordered = 0
        first_reordered: _Frame | None = None
        gop_key: _Frame | None = None
        max_pts: int | None = None
        for frame in self.frames:
            pts = frame.dts + frame.cts
            if frame.keyframe:
                gop_key = frame
            elif gop_key is not None and pts < gop_key.dts + gop_key.cts:
                self.add(
                    "closed_gop",
                    f"frame shown at {pts} ms, before its GOP's keyframe (PTS {gop_key.dts + gop_key.cts} ms): open GOP",
                    f"video frame #{frame.number} (message #{frame.tag.index})", frame.dts,
                )
            if max_pts is not None and pts < max_pts:
                reordered += 1
                first_reordered = first_reordered or frame
            max_pts = pts if max_pts is None else max(max_pts, pts)
        if reordered and not self.profile.allow_bframes and first_reordered is not None:
            self.add(
                "bframes",
                f"{reordered} frames shown before an earlier-decoded one (B-frames); profile {self.profile.name} forbids them",
                f"video frame #{first_reordered.number} (message #{first_reordered.tag.index})", first_reordered.dts,
            )
        max_cts = max((abs(f.cts) for f in self.frames), default=0)
        return reordered > 0, max_cts

    def decode(self) -> tuple[int, list[str], int, int]:
        """Decode every frame with PyAV; violations for errors. (errors, warnings, video, audio)."""
        import av
        import av.logging

        warnings: list[str] = []
        video = [(f.number, f.tag, f.config, f.avcc, f.dts, f.dts + f.cts) for f in self.frames]
        audio = [(n, tag, config, raw, tag.timestamp, tag.timestamp) for n, tag, raw, config in self.audio]
        previous_level = av.logging.get_level()
        av.logging.set_level(av.logging.WARNING)
        try:
            with av.logging.Capture(local=False) as logs:
                video_errors, video_out = self._decode_track(av, logs, warnings, "video", "h264", video)
                audio_errors, audio_out = self._decode_track(av, logs, warnings, "audio", "aac", audio)
        finally:
            av.logging.set_level(previous_level)
        return video_errors + audio_errors, warnings, video_out, audio_out

    def _decode_track(self, av, logs, warnings: list[str], kind: str, codec: str, items) -> tuple[int, int]:
        """(errors, frames out) for one track; a new decoder whenever its config changes."""
        errors = 0
        out = 0
        ctx = None
        ctx_config = None
        for number, tag, config, data, dts, pts in items:
            where = f"{kind} frame #{number} (message #{tag.index})"
            seen = len(logs)
            try:
                if ctx is None or config != ctx_config:
                    if ctx is not None:
                        out += len(ctx.decode(None))
                    ctx = av.CodecContext.create(codec, "r")
                    if config:
                        ctx.extradata = config
                    ctx.thread_count = 1
                    ctx_config = config
                packet = av.Packet(data)
                packet.pts, packet.dts = pts, dts
                out += len(ctx.decode(packet))
            except av.error.FFmpegError as exc:
                errors += 1
                self.add("decode", f"{codec} decoder raised {type(exc).__name__}: {exc}", where, tag.timestamp)
            errors += self._log_lines(av, logs[seen:], warnings, where, tag.timestamp)
        if ctx is not None:
            seen = len(logs)
            try:
                out += len(ctx.decode(None))  # B-frames still in the decoder
            except av.error.FFmpegError as exc:
                errors += 1
                self.add("decode", f"{codec} decoder raised {type(exc).__name__} when flushed: {exc}", f"end of {kind}", None)
            errors += self._log_lines(av, logs[seen:], warnings, f"end of {kind}", None)
        if out < len(items):
            # libavcodec drops what it cannot show (frames before the first IDR...) without a word.
            errors += 1
            self.add("decode", f"only {out} of {len(items)} {kind} frames decoded", f"all {kind} frames", None)
        return errors, out

    def _log_lines(self, av, lines, warnings: list[str], where: str, when: int | None) -> int:
        errors = 0
        for level, name, message in lines:
            text = f"{name}: {message.strip()}"
            if level <= av.logging.ERROR:
                errors += 1
                self.add("decode", f"libav error: {text}", where, when)
            elif level <= av.logging.WARNING:
                warnings.append(f"{where}: {text}")
        return errors


def validate(
    source: Any,
    profile: str | ValidationProfile = "cloudflare",
    *,
    fps: float | None = None,
    decode: bool | None = None,
) -> Report:
    """Judge ``source`` against ``profile`` (a name in `VALIDATION_PROFILES` or a profile).

    ``source``: an FLV path or bytes, a `DirtyStream`, or a sequence of
    `StreamMessage`, `FlvTag` or ``(type_id, timestamp, payload)``, in
    arrival order. ``fps``: the frame rate the output must have (else the
    median DTS step decides what it is judged against). ``decode``
    overrides the profile's ``check_decode``.
    """
    profile = _profile(profile)
    checker = _Checker(profile, fps)
    handlers = {VIDEO: checker.video, AUDIO: checker.audio_message}
    for tag in _tags(source):
        handler = handlers.get(tag.type_id)
        if handler is not None:
            handler(tag)
    nominal, output, duration = checker.timing()
    key_times, key_intervals = checker.gops(nominal)
    has_bframes, max_cts = checker.reordering()
    decode_errors, warnings, decoded_video, decoded_audio = 0, [], None, None
    if decode if decode is not None else profile.check_decode:
        decode_errors, warnings, decoded_video, decoded_audio = checker.decode()
    bitrate = None
    if duration > 0:
        total = sum(len(f.avcc) for f in checker.frames) + sum(len(raw) for _, _, raw, _ in checker.audio)
        bitrate = round(total * 8000 / duration)
        if profile.max_bitrate_bps is not None and bitrate > profile.max_bitrate_bps:
            checker.add(
                "bitrate",
                f"average bitrate {bitrate / 1e6:.2f} Mbit/s above {profile.max_bitrate_bps / 1e6:g} Mbit/s",
                f"{len(checker.frames)} video + {len(checker.audio)} audio frames", None,
            )
    return Report(
        profile=profile,
        violations=tuple(checker.violations),
        video_frames=len(checker.frames),
        audio_frames=len(checker.audio),
        duration_ms=duration,
        nominal_fps=nominal,
        output_fps=output,
        keyframe_timestamps_ms=tuple(key_times),
        keyframe_intervals_ms=tuple(key_intervals),
        has_bframes=has_bframes,
        max_composition_time_ms=max_cts,
        max_av_drift_ms=checker.drift_max,
        audio_gaps_ms=tuple(checker.audio_gaps),
        decode_errors=decode_errors,
        decode_warnings=tuple(warnings),
        decoded_video_frames=decoded_video,
        decoded_audio_frames=decoded_audio,
        bitrate_bps=bitrate,
        video_config_changes=checker.config_changes,
    )
