"""Dirty RTMP streams: real H.264 + AAC encoded with PyAV, with scripted device faults.

Android smart glasses publish through librtmp what their encoder gives them
under load: frames dropped and stamped with their real capture times (9-15
fps where 30 was asked for), keyframes anywhere from 0.07 s to many seconds
apart, timestamps that jump forward or back or restart at zero after a
reconnect, audio running ahead of video, audio missing for a while. This
module makes such streams on purpose, from media that really decodes:

    spec = DirtyStreamSpec(seconds=4, faults=[VariableFrameRate(9, 15, seed=1)])
    stream = make_dirty_stream(spec)
    stream.messages        # StreamMessage(type_id, timestamp, payload, send_at)
    stream.to_flv(path)    # the same tags as an FLV file

Video is libx264 (``entropy`` CABAC or CAVLC, optional B-frames), audio the
libavcodec AAC encoder; both run single-threaded and bit-exact, so one spec
gives the same bytes on every run (seeded faults included). Keyframes are
IDR frames the encoder was told to make (``pict_type = I`` with x264's
``forced-idr``; ``keyint=infinite`` and ``scenecut=0`` so it makes no others).

Every message carries ``send_at``: the second, from the start of the stream,
at which the device would send it (its capture time, or when the encoder
delivered it), whatever its possibly jumped ``timestamp`` says. A faithful
publisher (`rtmprelay.testing.dirty_publisher`) paces on it.

Encodes are cached per process, keyed on what the encoder sees; faults that
only touch timestamps or drop messages (jumps, resets, skew, gaps) reuse the
encode. ``make_dirty_stream(spec, cache_dir=...)`` also keeps finished streams
on disk (the ``dirty_stream_factory`` fixture uses a session temp folder).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pickle
import random
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Union

import attrs

from rtmprelay.testing.peers import PeerUnavailable

__all__ = [
    "AUDIO",
    "AVSkew",
    "AudioGap",
    "DirtyStream",
    "DirtyStreamSpec",
    "ENCODERS",
    "ExpectedStream",
    "Fault",
    "IrregularGop",
    "LongGop",
    "SCRIPT",
    "StreamMessage",
    "TimestampJump",
    "TimestampReset",
    "VIDEO",
    "VariableFrameRate",
    "encode_flv",
    "encode_marked_flv",
    "flv_bytes",
    "make_dirty_stream",
    "sync_marks",
]

AUDIO, VIDEO, SCRIPT = 8, 9, 18

#: Bumped whenever the bytes a spec produces change (invalidates disk caches).
FACTORY_VERSION = 1

#: NAL unit types: SPS/PPS go into the sequence header only, AUDs are dropped;
#: the SEI x264 puts in its first IDR stays, as a device's encoder's SEI does.
_NAL_IDR, _NAL_SPS, _NAL_PPS, _NAL_AUD = 5, 7, 8, 9


def _short_bytes(data: bytes) -> str:
    return f"<{len(data)} bytes {data[:6].hex()}...>"


# --- messages -------------------------------------------------------------------


@attrs.frozen
class StreamMessage:
    """One RTMP message as a device sends it: an FLV tag body.

    ``type_id`` 8 (audio), 9 (video) or 18 (data); ``timestamp`` in ms as
    sent (after faults); ``payload`` the FLV tag body. ``send_at`` (seconds
    from the start of the stream) is when the device sends it; it takes no
    part in equality, so messages read back from a recording compare equal
    to the ones sent.
    """

    type_id: int
    timestamp: int
    payload: bytes = attrs.field(repr=_short_bytes)
    send_at: float = attrs.field(default=0.0, eq=False)

    @property
    def kind(self) -> str:
        return {AUDIO: "audio", VIDEO: "video", SCRIPT: "script"}.get(self.type_id, "other")

    @property
    def is_header(self) -> bool:
        """AVC sequence header / end of sequence, or AAC AudioSpecificConfig."""
        if self.type_id == VIDEO:
            return len(self.payload) >= 2 and self.payload[1] != 1
        if self.type_id == AUDIO:
            return len(self.payload) >= 2 and self.payload[1] == 0
        return False

    @property
    def is_keyframe(self) -> bool:
        return self.type_id == VIDEO and bool(self.payload) and self.payload[0] >> 4 == 1

    @property
    def composition_time(self) -> int:
        """Video PTS - DTS in ms (the SI24 after AVCPacketType); 0 for others."""
        if self.type_id != VIDEO or len(self.payload) < 5:
            return 0
        return int.from_bytes(self.payload[2:5], "big", signed=True)


# --- faults ---------------------------------------------------------------------


def _positive(instance, attribute, value) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, not {value!r}")


def _not_negative(instance, attribute, value) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


@attrs.frozen
class VariableFrameRate:
    """The encoder keeps only ``min_fps``..``max_fps`` of the camera's frames.

    Each whole second a rate is drawn (seeded) and that many of the nominal
    frames of the second are kept, chosen at random; kept frames keep their
    real capture times, so frame intervals are uneven multiples of 1/fps.
    """

    min_fps: float = attrs.field(default=9, validator=_positive)
    max_fps: float = attrs.field(default=15, validator=_positive)
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.min_fps > self.max_fps:
            raise ValueError(f"min_fps {self.min_fps} > max_fps {self.max_fps}")


@attrs.frozen
class IrregularGop:
    """Keyframes at irregular intervals (seconds from one keyframe to the next).

    ``intervals_s`` are used in order and cycled; without them each interval
    is drawn (seeded) uniformly from ``lo_s``..``hi_s``. A keyframe falls on
    the first captured frame at or after its time.
    """

    intervals_s: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    lo_s: float | None = None
    hi_s: float | None = None
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.intervals_s:
            if any(not i > 0 for i in self.intervals_s):
                raise ValueError(f"intervals must be > 0: {self.intervals_s}")
        elif self.lo_s is None or self.hi_s is None or not 0 < self.lo_s <= self.hi_s:
            raise ValueError("IrregularGop needs intervals_s or 0 < lo_s <= hi_s")


@attrs.frozen
class LongGop:
    """One GOP of ``seconds``: the keyframe after ``at_s`` is followed by no other for that long."""

    seconds: float = attrs.field(default=12.0, validator=_positive)
    at_s: float = attrs.field(default=0.0, validator=_not_negative)


@attrs.frozen
class TimestampJump:
    """From send time ``at_s`` on, timestamps are ``delta_ms`` off (forward or back).

    ``track`` is "both", "video" or "audio". Jumps add up.
    """

    at_s: float = attrs.field(validator=_not_negative)
    delta_ms: int
    track: str = attrs.field(default="both", validator=attrs.validators.in_(("both", "video", "audio")))


@attrs.frozen
class TimestampReset:
    """From send time ``at_s`` on, timestamps restart at 0, as after a reconnect.

    The earliest timestamp sent from then on becomes 0 on both tracks.
    ``resend_headers`` sends the AVC and AAC sequence headers (timestamp 0)
    again first, as a reconnecting encoder does; ``keyframe`` makes the first
    frame captured at or after ``at_s`` an IDR. A publisher can reconnect
    there (`DirtyStream.reset_indices`).
    """

    at_s: float = attrs.field(validator=_positive)
    resend_headers: bool = True
    keyframe: bool = True


@attrs.frozen
class AVSkew:
    """Audio timestamps ``audio_ahead_ms`` ahead of video (negative: behind)."""

    audio_ahead_ms: int


@attrs.frozen
class AudioGap:
    """No audio frames captured from ``at_s`` for ``duration_s`` (the messages are missing)."""

    at_s: float = attrs.field(validator=_not_negative)
    duration_s: float = attrs.field(validator=_positive)


Fault = Union[VariableFrameRate, IrregularGop, LongGop, TimestampJump, TimestampReset, AVSkew, AudioGap]
_FAULT_TYPES = (VariableFrameRate, IrregularGop, LongGop, TimestampJump, TimestampReset, AVSkew, AudioGap)


# --- the spec -------------------------------------------------------------------


def _size(value: str | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, str):
        width, _, height = value.lower().partition("x")
        value = (int(width), int(height))
    width, height = (int(v) for v in value)
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"size must be even and positive (yuv420p): {width}x{height}")
    return width, height


def _faults(value: Iterable[Fault]) -> tuple[Fault, ...]:
    faults = tuple(value)
    for fault in faults:
        if not isinstance(fault, _FAULT_TYPES):
            raise TypeError(f"not a fault: {fault!r}")
    for kind in (VariableFrameRate, IrregularGop, AVSkew):
        if sum(isinstance(f, kind) for f in faults) > 1:
            raise ValueError(f"at most one {kind.__name__} per spec")
    return faults


@attrs.frozen
class DirtyStreamSpec:
    """What to encode and what to do wrong. Frozen and hashable: the cache key.

    ``fps`` is the camera's nominal rate; ``gop_s`` the regular keyframe
    interval (faults may override it). ``entropy`` "cabac" (High profile) or
    "cavlc" (Baseline, or Main with B-frames). ``audio=False`` makes a
    video-only stream.
    """

    seconds: float = attrs.field(default=4.0, validator=_positive)
    size: tuple[int, int] = attrs.field(default=(320, 240), converter=_size)
    fps: float = attrs.field(default=30.0, validator=_positive)
    entropy: str = attrs.field(default="cabac", validator=attrs.validators.in_(("cabac", "cavlc")))
    bframes: int = attrs.field(default=0, validator=[attrs.validators.ge(0), attrs.validators.le(16)])
    gop_s: float = attrs.field(default=2.0, validator=_positive)
    audio: bool = True
    sample_rate: int = attrs.field(default=44100, validator=attrs.validators.in_((22050, 24000, 32000, 44100, 48000)))
    channels: int = attrs.field(default=1, validator=attrs.validators.in_((1, 2)))
    video_bitrate: int = attrs.field(default=500_000, validator=_positive)
    audio_bitrate: int = attrs.field(default=64_000, validator=_positive)
    faults: tuple[Fault, ...] = attrs.field(default=(), converter=_faults)

    def __attrs_post_init__(self) -> None:
        for fault in self.faults:
            if isinstance(fault, VariableFrameRate) and fault.max_fps > self.fps:
                raise ValueError(f"VariableFrameRate max_fps {fault.max_fps} above the nominal {self.fps} fps")

    def with_faults(self, *faults: Fault) -> DirtyStreamSpec:
        """A copy with ``faults`` added."""
        return attrs.evolve(self, faults=(*self.faults, *faults))

    @property
    def profile(self) -> str:
        if self.entropy == "cabac":
            return "high"
        return "main" if self.bframes else "baseline"


# --- the result -----------------------------------------------------------------


@attrs.frozen
class ExpectedStream:
    """What a judge of the stream should find, straight from the factory."""

    video_frames: int
    audio_frames: int
    duration_s: float  # from the first capture to the end of the last frame
    nominal_fps: float
    capture_times_s: tuple[float, ...]  # of every video frame kept, in capture order
    keyframe_times_s: tuple[float, ...]  # capture times of the IDR frames
    keyframe_timestamps_ms: tuple[int, ...]  # their timestamps as sent (after faults)
    bframes: int
    faults: tuple[Fault, ...]

    @property
    def keyframe_intervals_s(self) -> tuple[float, ...]:
        times = self.keyframe_times_s
        return tuple(round(b - a, 6) for a, b in zip(times, times[1:]))


@attrs.frozen(eq=False)
class DirtyStream:
    """A finished dirty stream: RTMP messages in the order a device sends them."""

    spec: DirtyStreamSpec
    messages: tuple[StreamMessage, ...] = attrs.field(repr=lambda m: f"<{len(m)} messages>")
    video_config: bytes = attrs.field(repr=_short_bytes)  # AVCDecoderConfigurationRecord
    audio_config: bytes = attrs.field(repr=_short_bytes)  # AudioSpecificConfig (b"" without audio)
    metadata: dict = attrs.field(repr=False)  # onMetaData values (the publisher sends them first)
    expected: ExpectedStream = attrs.field(repr=False)
    #: Index in ``messages`` where each TimestampReset starts (a publisher may reconnect there).
    reset_indices: tuple[int, ...] = ()

    @property
    def video_messages(self) -> list[StreamMessage]:
        return [m for m in self.messages if m.type_id == VIDEO]

    @property
    def audio_messages(self) -> list[StreamMessage]:
        return [m for m in self.messages if m.type_id == AUDIO]

    @property
    def duration_s(self) -> float:
        """The send time of the last message: how long publishing it live takes."""
        return self.messages[-1].send_at if self.messages else 0.0

    def segments(self) -> list[tuple[StreamMessage, ...]]:
        """The messages cut at each reset: what one connection sends when reconnecting there."""
        cuts = [0, *self.reset_indices, len(self.messages)]
        return [self.messages[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]

    def flv_bytes(self) -> bytes:
        return flv_bytes(self.messages, metadata=self.metadata, audio=self.spec.audio)

    def to_flv(self, path: str | os.PathLike[str]) -> Path:
        """Write the messages as an FLV file (onMetaData first, tags unchanged); return its path.

        ``ffmpeg -c copy`` can publish it (FfmpegPublisher(source_file=...)),
        but ffmpeg's FLV demuxer and muxer rewrite some timestamps on the way:
        the faithful publisher is `rtmprelay.testing.dirty_publisher`.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.flv_bytes())
        return path


def flv_bytes(
    messages: Iterable[StreamMessage], *, metadata: dict | None = None, audio: bool = True
) -> bytes:
    """An FLV file holding ``messages`` as they are (timestamps included), onMetaData first."""
    out = bytearray(b"FLV\x01" + bytes([0x05 if audio else 0x01]) + (9).to_bytes(4, "big") + bytes(4))

    def tag(type_id: int, timestamp: int, payload: bytes) -> None:
        timestamp &= 0xFFFFFFFF
        out.extend(
            bytes([type_id]) + len(payload).to_bytes(3, "big") + (timestamp & 0xFFFFFF).to_bytes(3, "big")
            + bytes([timestamp >> 24, 0, 0, 0])
        )
        out.extend(payload)
        out.extend((11 + len(payload)).to_bytes(4, "big"))

    if metadata is not None:
        from rtmprelay.rtmp.amf0 import ECMAArray, encode_values

        tag(SCRIPT, 0, encode_values(["onMetaData", ECMAArray(metadata)]))
    for message in messages:
        tag(message.type_id, message.timestamp, message.payload)
    return bytes(out)


# --- schedule: which frames are captured, which are keyframes -------------------


def _capture_indices(spec: DirtyStreamSpec) -> list[int]:
    """Indices on the camera's nominal grid (i / fps) of the frames the encoder keeps."""
    count = max(1, math.ceil(spec.seconds * spec.fps - 1e-9))
    indices = list(range(count))
    vfr = next((f for f in spec.faults if isinstance(f, VariableFrameRate)), None)
    if vfr is None:
        return indices
    rng = random.Random(f"vfr:{vfr.seed}")
    by_second: dict[int, list[int]] = {}
    for i in indices:
        by_second.setdefault(int(i / spec.fps + 1e-9), []).append(i)
    kept = []
    for second in sorted(by_second):
        frames = by_second[second]
        rate = rng.uniform(vfr.min_fps, vfr.max_fps)
        # A partial last second keeps its share of the drawn rate.
        n = max(1, min(len(frames), round(rate * len(frames) / spec.fps)))
        kept += sorted(rng.sample(frames, n))
    return kept


def _keyframe_flags(spec: DirtyStreamSpec, times: Sequence[float]) -> list[bool]:
    """Which captured frames must be IDRs."""
    irregular = next((f for f in spec.faults if isinstance(f, IrregularGop)), None)
    long_gops = sorted((f for f in spec.faults if isinstance(f, LongGop)), key=lambda f: f.at_s)
    resets = sorted(f.at_s for f in spec.faults if isinstance(f, TimestampReset) and f.keyframe)
    rng = random.Random(f"gop:{irregular.seed}") if irregular else None
    counter = 0

    def next_interval(at: float) -> float:
        nonlocal counter
        for fault in long_gops:
            if fault not in used_long and at >= fault.at_s - 1e-9:
                used_long.add(fault)
                return fault.seconds
        if irregular is None:
            return spec.gop_s
        if irregular.intervals_s:
            interval = irregular.intervals_s[counter % len(irregular.intervals_s)]
        else:
            interval = rng.uniform(irregular.lo_s, irregular.hi_s)
        counter += 1
        return interval

    used_long: set[LongGop] = set()
    flags = []
    due = 0.0
    pending_resets = list(resets)
    for t in times:
        key = t >= due - 1e-9
        while pending_resets and t >= pending_resets[0] - 1e-9:
            pending_resets.pop(0)
            key = True
        if key:
            due = t + next_interval(t)
        flags.append(key)
    return flags


# --- encoding -------------------------------------------------------------------


@attrs.frozen
class _EncodeJob:
    """Everything the encoders see; faults on timestamps are applied afterwards."""

    size: tuple[int, int]
    fps: float
    entropy: str
    profile: str
    bframes: int
    video_bitrate: int
    capture_ms: tuple[int, ...]
    keyframes: tuple[bool, ...]
    audio: bool
    sample_rate: int
    channels: int
    audio_bitrate: int
    seconds: float


@attrs.frozen
class _VideoPacket:
    dts: int  # ms, may be negative with B-frames
    pts: int
    keyframe: bool
    avcc: bytes
    send_at: float


@attrs.frozen
class _Encoded:
    video_config: bytes
    video: tuple[_VideoPacket, ...]
    audio_config: bytes
    audio: tuple[bytes, ...]  # raw AAC frames, one per 1024 samples from t=0


def _require_av():
    try:
        import av
    except ImportError:
        raise PeerUnavailable("PyAV is not installed (pip install av); the dirty-stream factory encodes with it") from None
    missing = {"libx264", "aac"} - set(av.codecs_available)
    if missing:
        raise PeerUnavailable(f"PyAV's FFmpeg lacks encoder(s) {', '.join(sorted(missing))}")
    return av


def _annexb_nals(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (3- or 4-byte start codes)."""
    nals = []
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        nal = data[begin:] if nxt < 0 else data[begin:nxt]
        nal = nal.rstrip(b"\x00")  # the zero before a 4-byte start code; a NAL never ends in 0x00
        if nal:
            nals.append(nal)
        start = nxt
    return nals


def _avc_config(sps: bytes, pps: bytes) -> bytes:
    """AVCDecoderConfigurationRecord (ISO 14496-15) for one SPS and one PPS, 4-byte lengths."""
    record = bytearray([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
    record += len(sps).to_bytes(2, "big") + sps
    record += bytes([1]) + len(pps).to_bytes(2, "big") + pps
    if sps[1] in (100, 110, 122, 144):  # High profiles: chroma format and bit depths (4:2:0, 8 bit)
        record += bytes([0xFC | 1, 0xF8, 0xF8, 0])
    return bytes(record)


def _luma_plane(width: int, stride: int, height: int, t: float) -> bytes:
    """A diagonal ramp scrolling with time, and a bright box crossing the picture."""
    ramp = bytes(range(256)) * (stride // 256 + 3)
    shift = int(t * 90)
    rows = [ramp[(shift + y) % 256:(shift + y) % 256 + stride] for y in range(height)]
    box = max(8, height // 6) & ~1
    x0 = int((t * 0.5 % 1.0) * (width - box))
    y0 = int((0.5 + 0.35 * math.sin(t * 2.0)) * (height - box))
    block = b"\xeb" * box
    for y in range(y0, y0 + box):
        row = rows[y]
        rows[y] = row[:x0] + block + row[x0 + box:]
    return b"".join(rows)


def _encode_video(av, job: _EncodeJob) -> tuple[bytes, list[_VideoPacket]]:
    width, height = job.size
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 1000)
    ctx.framerate = Fraction(job.fps).limit_denominator(1001)
    ctx.bit_rate = job.video_bitrate
    ctx.thread_count = 1
    ctx.flags |= av.codec.context.Flags.global_header | av.codec.context.Flags.bitexact
    params = [
        "keyint=infinite", "min-keyint=1", "scenecut=0", "open-gop=0",
        f"bframes={job.bframes}", "b-adapt=0", f"cabac={1 if job.entropy == 'cabac' else 0}",
        "threads=1", "sliced-threads=0", "sync-lookahead=0", "rc-lookahead=0", "mbtree=0",
    ]
    ctx.options = {"preset": "veryfast", "profile": job.profile, "forced-idr": "1", "x264-params": ":".join(params)}
    ctx.open()
    nals = _annexb_nals(bytes(ctx.extradata or b""))
    sps = next((n for n in nals if n[0] & 0x1F == _NAL_SPS), None)
    pps = next((n for n in nals if n[0] & 0x1F == _NAL_PPS), None)
    if sps is None or pps is None:
        raise RuntimeError(f"libx264 gave no SPS/PPS in its extradata ({len(nals)} NAL units)")
    config = _avc_config(sps, pps)

    packets: list[_VideoPacket] = []
    pict_i = av.video.frame.PictureType.I
    pict_none = av.video.frame.PictureType.NONE

    def collect(encoded) -> None:
        for packet in encoded:
            units = [n for n in _annexb_nals(bytes(packet)) if n[0] & 0x1F not in (_NAL_SPS, _NAL_PPS, _NAL_AUD)]
            avcc = b"".join(len(n).to_bytes(4, "big") + n for n in units)
            idr = any(n[0] & 0x1F == _NAL_IDR for n in units)
            # Sent as soon as it can be, like a hardware encoder with no lookahead:
            # at its capture time, or after the later-captured frame it depends on.
            send_at = max(packets[-1].send_at if packets else 0.0, int(packet.pts) / 1000)
            packets.append(_VideoPacket(int(packet.dts), int(packet.pts), idr, avcc, send_at))

    template = av.VideoFrame(width, height, "yuv420p")
    strides = [p.line_size for p in template.planes]
    sizes = [p.buffer_size for p in template.planes]
    for ms, key in zip(job.capture_ms, job.keyframes):
        t = ms / 1000
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(_luma_plane(width, strides[0], height, t))
        frame.planes[1].update(bytes([128 + int(60 * math.sin(t))]) * sizes[1])
        frame.planes[2].update(bytes([128 + int(60 * math.cos(t * 0.7))]) * sizes[2])
        frame.pts = ms
        frame.time_base = ctx.time_base
        frame.pict_type = pict_i if key else pict_none
        collect(ctx.encode(frame))
    collect(ctx.encode(None))
    made = [p.keyframe for p in sorted(packets, key=lambda p: p.pts)]
    if made != list(job.keyframes):
        wanted = [i for i, k in enumerate(job.keyframes) if k]
        got = [i for i, k in enumerate(made) if k]
        raise RuntimeError(f"libx264 made IDRs at frames {got}, asked for {wanted}")
    return config, packets


def _encode_audio(av, job: _EncodeJob) -> tuple[bytes, list[bytes]]:
    from array import array

    rate = job.sample_rate
    layout = "mono" if job.channels == 1 else "stereo"
    ctx = av.CodecContext.create("aac", "w")
    ctx.sample_rate = rate
    ctx.layout = layout
    ctx.format = "fltp"
    ctx.bit_rate = job.audio_bitrate
    ctx.time_base = Fraction(1, rate)
    ctx.flags |= av.codec.context.Flags.bitexact
    ctx.open()
    config = bytes(ctx.extradata)
    samples = ctx.frame_size or 1024
    # A tone of rate/100 Hz: its period is exactly 100 samples, so one table tiles it.
    period = array("f", (0.25 * math.sin(2 * math.pi * k / 100) for k in range(100))).tobytes()
    tone = period * (samples // 100 + 2)
    count = math.ceil(job.seconds * rate / samples)
    raw: list[bytes] = []
    for n in range(count):
        frame = av.AudioFrame(format="fltp", layout=layout, samples=samples)
        frame.sample_rate = rate
        offset = (n * samples) % 100 * 4
        block = tone[offset:offset + samples * 4]
        for plane in frame.planes:
            plane.update(block[: plane.buffer_size].ljust(plane.buffer_size, b"\x00"))
        frame.pts = n * samples
        frame.time_base = ctx.time_base
        raw += [bytes(p) for p in ctx.encode(frame)]
    raw += [bytes(p) for p in ctx.encode(None)]
    return config, raw[:count]


@functools.lru_cache(maxsize=64)
def _encode(job: _EncodeJob) -> _Encoded:
    av = _require_av()
    video_config, video = _encode_video(av, job)
    audio_config, audio = _encode_audio(av, job) if job.audio else (b"", [])
    return _Encoded(video_config, tuple(video), audio_config, tuple(audio))


# --- assembling the messages ----------------------------------------------------


@attrs.define
class _Item:
    type_id: int
    base_ts: int  # ms on the device's own clean clock
    payload: bytes
    send_at: float
    rank: int  # order among equal send times: headers, video, audio
    header: bool = False
    capture_s: float = 0.0


def _metadata(spec: DirtyStreamSpec) -> dict:
    width, height = spec.size
    metadata = {
        "duration": 0.0,
        "width": float(width),
        "height": float(height),
        "videodatarate": spec.video_bitrate / 1000,
        "framerate": float(spec.fps),
        "videocodecid": 7.0,
    }
    if spec.audio:
        metadata.update(
            audiodatarate=spec.audio_bitrate / 1000,
            audiosamplerate=float(spec.sample_rate),
            audiosamplesize=16.0,
            stereo=spec.channels == 2,
            audiocodecid=10.0,
        )
    metadata["encoder"] = "rtmprelay dirty stream (librtmp-like)"
    return metadata


def _video_payload(packet: _VideoPacket) -> bytes:
    cts = packet.pts - packet.dts
    return bytes([0x17 if packet.keyframe else 0x27, 1]) + cts.to_bytes(3, "big", signed=True) + packet.avcc


def _headers(encoded: _Encoded, send_at: float, rank: int) -> list[_Item]:
    items = [_Item(VIDEO, 0, b"\x17\x00\x00\x00\x00" + encoded.video_config, send_at, rank, header=True)]
    if encoded.audio_config:
        items.append(_Item(AUDIO, 0, b"\xaf\x00" + encoded.audio_config, send_at, rank, header=True))
    return items


def _build(spec: DirtyStreamSpec) -> DirtyStream:
    indices = _capture_indices(spec)
    capture_s = [i / spec.fps for i in indices]
    keyframes = _keyframe_flags(spec, capture_s)
    job = _EncodeJob(
        size=spec.size, fps=spec.fps, entropy=spec.entropy, profile=spec.profile, bframes=spec.bframes,
        video_bitrate=spec.video_bitrate, capture_ms=tuple(round(t * 1000) for t in capture_s),
        keyframes=tuple(keyframes), audio=spec.audio, sample_rate=spec.sample_rate,
        channels=spec.channels, audio_bitrate=spec.audio_bitrate, seconds=spec.seconds,
    )
    encoded = _encode(job)
    shift = max(0, -min(p.dts for p in encoded.video))  # B-frames: the first DTS are negative

    items: list[_Item] = _headers(encoded, 0.0, 0)
    for packet in encoded.video:
        items.append(_Item(VIDEO, packet.dts + shift, _video_payload(packet), packet.send_at, 1, capture_s=packet.pts / 1000))
    frame_s = 1024 / spec.sample_rate
    gaps = [f for f in spec.faults if isinstance(f, AudioGap)]
    for n, frame in enumerate(encoded.audio):
        start = n * frame_s
        if any(g.at_s - 1e-9 <= start < g.at_s + g.duration_s - 1e-9 for g in gaps):
            continue
        # Sent once the block is captured; stamped with its start (capture) time.
        items.append(_Item(AUDIO, round(start * 1000) + shift, b"\xaf\x01" + frame, start + frame_s, 2, capture_s=start))
    resets = []
    for reset in sorted((f for f in spec.faults if isinstance(f, TimestampReset)), key=lambda f: f.at_s):
        at = reset.at_s
        if reset.keyframe:
            # The device reconnects with its restarted encoder's first IDR: frames of the
            # old GOP still coming out of the encoder (B-frames) go before, on the old clock.
            at = min(
                (p.send_at for p in encoded.video if p.keyframe and p.pts / 1000 >= reset.at_s - 1e-9),
                default=reset.at_s,
            )
        resets.append((at, reset))
        if reset.resend_headers:
            items += _headers(encoded, at, -1)
    order = {id(item): n for n, item in enumerate(items)}
    items.sort(key=lambda it: (it.send_at, it.rank, order[id(it)]))

    messages, reset_indices = _apply_timestamp_faults(spec, items, resets)
    key_ts = tuple(m.timestamp for m in messages if m.is_keyframe and not m.is_header)
    last_frame_s = capture_s[-1] + 1 / spec.fps
    expected = ExpectedStream(
        video_frames=len(encoded.video),
        audio_frames=sum(1 for m in messages if m.type_id == AUDIO and not m.is_header),
        duration_s=round(max(last_frame_s, min(spec.seconds, len(encoded.audio) * frame_s)), 6),
        nominal_fps=spec.fps,
        capture_times_s=tuple(round(t, 6) for t in capture_s),
        keyframe_times_s=tuple(round(t, 6) for t, k in zip(capture_s, keyframes) if k),
        keyframe_timestamps_ms=key_ts,
        bframes=spec.bframes,
        faults=spec.faults,
    )
    return DirtyStream(
        spec=spec,
        messages=tuple(messages),
        video_config=encoded.video_config,
        audio_config=encoded.audio_config,
        metadata=_metadata(spec),
        expected=expected,
        reset_indices=tuple(reset_indices),
    )


def _apply_timestamp_faults(
    spec: DirtyStreamSpec, items: list[_Item], resets: list[tuple[float, TimestampReset]]
) -> tuple[list[StreamMessage], list[int]]:
    """Jumps and resets by send time, then audio skew; headers keep timestamp 0.

    ``resets`` are (effective send time, fault): a reset with ``keyframe``
    takes effect at its IDR.
    """
    events = sorted(
        [*resets, *((f.at_s, f) for f in spec.faults if isinstance(f, TimestampJump))],
        key=lambda e: (e[0], isinstance(e[1], TimestampJump)),
    )
    skew = sum(f.audio_ahead_ms for f in spec.faults if isinstance(f, AVSkew))
    offsets = {VIDEO: 0, AUDIO: 0}
    messages: list[StreamMessage] = []
    reset_indices: list[int] = []
    pending = list(events)
    caused_by: dict[int, str] = {VIDEO: "", AUDIO: ""}
    for n, item in enumerate(items):
        while pending and pending[0][0] <= item.send_at + 1e-9:
            event = pending.pop(0)[1]
            if isinstance(event, TimestampReset):
                base = min((it.base_ts for it in items[n:] if not it.header), default=0)
                offsets = {VIDEO: -base, AUDIO: -base}
                reset_indices.append(len(messages))
                caused_by = {VIDEO: repr(event), AUDIO: repr(event)}
            else:
                for track in (VIDEO, AUDIO):
                    if event.track in ("both", "video" if track == VIDEO else "audio"):
                        offsets[track] += event.delta_ms
                        caused_by[track] = repr(event)
        if item.header:
            timestamp = 0
        else:
            timestamp = item.base_ts + offsets[item.type_id] + (skew if item.type_id == AUDIO else 0)
            if timestamp < 0:
                cause = caused_by[item.type_id] or f"AVSkew({skew})"
                raise ValueError(
                    f"{cause} makes a {'video' if item.type_id == VIDEO else 'audio'} timestamp negative "
                    f"({timestamp} ms at send time {item.send_at:.3f} s); RTMP timestamps are unsigned"
                )
        messages.append(StreamMessage(item.type_id, timestamp, item.payload, round(item.send_at, 6)))
    return messages, reset_indices


def _cache_key(spec: DirtyStreamSpec) -> str:
    import av

    text = f"{FACTORY_VERSION}|{av.__version__}|{av.library_versions}|{spec!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def make_dirty_stream(spec: DirtyStreamSpec | None = None, *, cache_dir: str | os.PathLike[str] | None = None) -> DirtyStream:
    """Encode ``spec`` (default: a clean 4 s stream) and apply its faults.

    Deterministic: the same spec gives the same messages, byte for byte.
    Encodes are cached in memory; with ``cache_dir`` finished streams are
    also kept there as pickles (a session temp folder, not a shared one).
    Raises `PeerUnavailable` without PyAV or its libx264/aac encoders, and
    ValueError for a spec whose faults would make a timestamp negative.
    """
    spec = spec or DirtyStreamSpec()
    _require_av()
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"dirty-{_cache_key(spec)}.pickle"
        if path.exists():
            with path.open("rb") as handle:
                stream = pickle.load(handle)
            if isinstance(stream, DirtyStream) and stream.spec == spec:
                return stream
    stream = _build(spec)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        with temporary.open("wb") as handle:
            pickle.dump(stream, handle, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(path)
    return stream


# --- real encoders' own output ----------------------------------------------------

#: What `encode_flv` can run: ffmpeg's libx264 as the README's publisher and
#: a phone's app would set it up, and GStreamer's x264enc behind flvmux.
ENCODERS = {
    "x264-baseline": ("ffmpeg", ["-profile:v", "baseline"]),
    "x264-main-b1": ("ffmpeg", ["-profile:v", "main", "-bf", "1"]),
    "x264-high-b2": ("ffmpeg", ["-profile:v", "high", "-bf", "2"]),
    "x264-high-b3": ("ffmpeg", ["-profile:v", "high", "-bf", "3", "-b_strategy", "0"]),
    "x264-default": ("ffmpeg", []),  # libx264's defaults: high, 3 B-frames, b-pyramid
    "x264-zerolatency-ref3": ("ffmpeg", ["-preset", "medium", "-tune", "zerolatency", "-refs", "3", "-bf", "0"]),
    "gst-x264enc": ("gst", []),
    "gst-x264enc-b2": ("gst", ["bframes=2"]),
}


def encode_flv(path: str | os.PathLike[str], encoder: str, *, seconds: float = 10.0, fps: int = 30, gop: int = 60,
               size: tuple[int, int] = (320, 240), timeout: float = 60.0) -> Path:
    """Test media (a moving picture, a 1 kHz tone) as FLV straight from a real encoder
    (`ENCODERS`), not re-muxed: its own timestamps, composition offsets and B-frame
    structure, as it would publish them. `PeerUnavailable` without the tool."""
    import subprocess

    from rtmprelay.testing.peers import find_tool, require_gst_elements

    tool, options = ENCODERS[encoder]
    path = Path(path)
    width, height = size
    if tool == "ffmpeg":
        argv = [
            find_tool("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
            "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100",
            "-t", f"{seconds:g}", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(gop),
            "-threads", "1", *options, "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(path),
        ]
    else:
        require_gst_elements("x264enc", "flvmux", "avenc_aac", "h264parse", "aacparse")
        frames = int(seconds * fps)
        argv = [
            find_tool("gst-launch-1.0"), "-q",
            "videotestsrc", f"num-buffers={frames}", "!", f"video/x-raw,width={width},height={height},framerate={fps}/1",
            "!", "x264enc", f"key-int-max={gop}", "threads=1", *options, "!", "h264parse", "!",
            "flvmux", "name=mux", "streamable=true", "!", "filesink", f"location={path}",
            "audiotestsrc", "freq=1000", f"num-buffers={int(seconds * 44100 / 1024)}", "!", "audio/x-raw,rate=44100",
            "!", "audioconvert", "!", "avenc_aac", "!", "aacparse", "!", "mux.",
        ]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise PeerUnavailable(f"{encoder} could not write {path}: {result.stderr.decode('utf-8', 'replace')[-500:]}")
    return path


def encode_marked_flv(path: str | os.PathLike[str], *, seconds: float = 30.0, fps: int = 30,
                      beep_every_samples: int = 44100, timeout: float = 60.0) -> Path:
    """A marked stream for content-level sync checks, straight from ffmpeg (libx264
    baseline, AAC 44.1 kHz mono): a black picture with one white frame every ``fps``
    frames (second k's mark), and silence with a 50 ms 1 kHz beep every
    ``beep_every_samples`` samples. With 44,100 the beep of second k plays with the
    mark of second k; another period stands for a device whose audio clock runs
    fast or slow (a sample clock of 45,423 Hz counted as 44,100: +3 %)."""
    import subprocess

    from rtmprelay.testing.peers import find_tool

    path = Path(path)
    beep = f"0.5*sin(2*PI*1000*t)*lt(mod(n\\,{beep_every_samples})\\,2205)"
    argv = [
        find_tool("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"color=c=black:s=160x96:r={fps}:d={seconds:g}",
        "-f", "lavfi", "-i", f"aevalsrc={beep}:s=44100:d={seconds:g}",
        "-vf", f"drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='eq(mod(n\\,{fps})\\,0)'",
        "-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", str(2 * fps), "-threads", "1",
        "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(path),
    ]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise PeerUnavailable(f"ffmpeg could not write {path}: {result.stderr.decode('utf-8', 'replace')[-500:]}")
    return path


def sync_marks(flv: bytes) -> tuple[list[float], list[float]]:
    """Where the marks of `encode_marked_flv` are in an FLV (after whatever was done to it):
    the presentation times (ms) of the white frames, and the start times (ms) of the beeps,
    each from its AAC frame's timestamp plus its offset inside the frame. Decoded with PyAV."""
    import io
    from array import array

    av = _require_av()
    flashes: list[float] = []
    beeps: list[float] = []
    with av.open(io.BytesIO(flv), format="flv") as container:
        in_beep = False
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None:
                continue
            ms = float(packet.pts * packet.time_base * 1000)
            for frame in packet.decode():
                if packet.stream.type == "video":
                    luma = bytes(frame.planes[0])
                    if sum(luma[:: max(1, len(luma) // 256)]) / len(luma[:: max(1, len(luma) // 256)]) > 128:
                        flashes.append(float(frame.pts * frame.time_base * 1000) if frame.pts is not None else ms)
                elif packet.stream.type == "audio":
                    samples = array("f", bytes(frame.planes[0]))[: frame.samples]
                    for index, value in enumerate(samples):
                        loud = abs(value) > 0.1
                        if loud and not in_beep:
                            beeps.append(ms + index * 1000.0 / frame.sample_rate)
                            in_beep = True
                        elif in_beep and not loud and index % 64 == 0 and max(map(abs, samples[index:index + 64]), default=0) < 0.01:
                            in_beep = False
    return flashes, beeps
