"""Live HLS (and DASH) segments from encoded packets, whatever the container.

``Segmenter`` takes ``EncodedPacket`` values (``rtmprelay.hls.packets``) in
decode order within each kind, and the formats they belong to; it decides
where segments begin and end and hands the writing to a container output:
``TsOutput`` (``ts.py``, MPEG-TS, the default) or ``CmafOutput`` (``fmp4.py``,
CMAF tracks, HLS master + media playlists and a DASH manifest; with
``part_target_s``, Low-Latency HLS parts, and ``on_playlist(name, position)``
told of every media playlist written).

Rules kept, for every container:

- Nothing is written before the first video keyframe; audio joins the open
  segment (for fMP4, audio is cut at the cutting keyframe's time).
- A segment is cut at the first video keyframe at or after
  ``target_duration_s`` since the segment began, measured in presentation
  time. A segment cut short (restart, finish, change of formats) ends after
  its latest picture (its pts plus one frame step).
- A change of formats closes the open segment; the next keyframe begins a new
  one marked as a discontinuity (and, for fMP4, with new init segments).
- After ``restart()`` the new publisher's clock (which starts again, usually
  at 0) is shifted so that its first keyframe lands where the last segment
  ended (or its last audio frame, if that ends later): the segments carry ``#EXT-X-DISCONTINUITY`` as the spec asks, and
  their timestamps still only grow, which players that ignore the tag
  (ffmpeg's HLS demuxer among them) and fMP4's ``tfdt`` need. The very first
  keyframe is shifted only if its dts is negative.
- A video dts that does not grow raises ``MediaError``, as does any bad
  packet; the segmenter then drops video until the next keyframe. An audio
  dts that does not grow raises too; only that frame is lost.
- Files appear by rename only; a segment is listed once closed; segments that
  leave the window are deleted at once. ``remove_files()`` deletes every file
  still on disk that this segmenter wrote, and the folder if it is then empty.

Timestamps are kept as exact fractions of a second, so a 1/1000 copy-mode
clock and a 1/90000 encoder clock both reach the container's own clock
without drift.

``FlvSegmenter`` is the thin copy-mode adapter: it turns FLV audio/video
message bodies into formats and packets (AVCC -> Annex B with SPS/PPS in front
of every keyframe, AAC raw frames as they are), in a 1/1000 time base.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import attrs

from rtmprelay.errors import ConfigError, MediaError
from rtmprelay.hls.fmp4 import CmafOutput
from rtmprelay.hls.packets import AUDIO, VIDEO, AudioFormat, EncodedPacket, VideoFormat, avc_codec_string
from rtmprelay.hls.playlist import MediaPlaylist, Position
from rtmprelay.hls.ts import TsOutput
from rtmprelay.media import flv
from rtmprelay.media.avc import parse_sps
from rtmprelay.media.avcc import AVCConfig, nal_units_to_annexb, split_nal_units
from rtmprelay.media.elementary import AacSequenceHeader, AvcSequenceHeader, read_audio, read_video

__all__ = ["CONTAINERS", "FlvSegmenter", "SegmentInfo", "SegmentSettings", "Segmenter"]

CONTAINERS = ("mpegts", "fmp4")
_MILLISECOND = Fraction(1, 1000)
#: Audio frames held while waiting for the first keyframe (~1.5 s of 1024-sample AAC at 44.1 kHz).
_HELD_AUDIO = 64


def _container(instance, attribute, value: str) -> None:
    if value not in CONTAINERS:
        raise ConfigError(f"container {value!r}: choose one of {', '.join(CONTAINERS)}")


def _positive(instance, attribute, value) -> None:
    if not value > 0:
        raise ConfigError(f"{attribute.name} must be positive, not {value!r}")


def _part_target(instance, attribute, value) -> None:
    if value is None:
        return
    _positive(instance, attribute, value)
    if instance.container != "fmp4":
        raise ConfigError("LL-HLS parts need the fmp4 container")
    if value > instance.target_duration_s:
        raise ConfigError(f"part target {value!r} s is longer than the segment target {instance.target_duration_s!r} s")


@attrs.frozen
class SegmentSettings:
    container: str = attrs.field(default="mpegts", validator=_container)
    target_duration_s: float = attrs.field(default=2.0, validator=_positive)
    window: int = attrs.field(default=5, validator=_positive)
    #: LL-HLS part target in seconds (fmp4 only); None writes whole segments only.
    part_target_s: float | None = attrs.field(default=None, validator=_part_target)


@attrs.frozen
class SegmentInfo:
    """A segment just closed and listed."""

    uri: str  # the (video) segment, relative to out_dir
    duration_s: float
    sequence: int
    discontinuity: bool
    playlist: str  # what players open, relative to out_dir
    manifest: str | None  # the DASH manifest (fmp4), relative to out_dir
    files: tuple[str, ...] = ()  # every file written for it (fmp4: video and audio)


@attrs.define
class _Span:
    """The open segment's presentation span and how it began."""

    start: Fraction
    end: Fraction
    discontinuity: bool
    frames: int = 0


class Segmenter:
    """Live segments of one stream in ``out_dir``; see the module docstring."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        settings: SegmentSettings = SegmentSettings(),
        on_segment: Callable[[SegmentInfo], None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_playlist: Callable[[str, Position], None] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.on_segment = on_segment
        self._target = Fraction(round(settings.target_duration_s * 1000), 1000)
        if settings.container == "fmp4":
            part = settings.part_target_s
            self._output = CmafOutput(
                self.out_dir,
                settings.window,
                self._target,
                self._listed,
                clock,
                part_target_s=None if part is None else Fraction(round(part * 1000), 1000),
                on_playlist=on_playlist,
            )
        else:
            self._output = TsOutput(self.out_dir, settings.window, self._listed)
        self._video: VideoFormat | None = None
        self._audio: AudioFormat | None = None
        self._span: _Span | None = None
        self._started = False  # a segment has been opened since the formats were first set
        self._discontinuity = False  # the next segment carries one
        self._new_clock = False  # ... because the publisher's clock started again
        self._need_keyframe = True
        self._rebase = True  # the next keyframe sets _offset
        self._offset = Fraction(0)  # added to the packets' timestamps
        self._end: Fraction | None = None  # where the last closed segment ended (pts)
        self._last_video: Fraction | None = None
        self._last_audio: Fraction | None = None
        self._step = Fraction(0)  # last step between video dts, for the last frame's length
        self._decode_end = Fraction(0)  # latest video dts plus that step
        self._audio_end: Fraction | None = None  # latest audio pts plus one frame
        # Audio that came before the keyframe opening the first segment; a publisher
        # interleaves a frame of the same timestamp either side of it.
        self._held_audio: deque[EncodedPacket] = deque(maxlen=_HELD_AUDIO)
        self._finished = False
        self._removed = False

    # --- what callers read

    @property
    def playlist(self) -> MediaPlaylist:
        """The media playlist (mpegts: ``index.m3u8``; fmp4: ``video.m3u8``)."""
        return self._output.playlist

    @property
    def playlist_path(self) -> Path:
        return self._output.playlist_path

    @property
    def manifest_path(self) -> Path | None:
        return self._output.manifest_path

    @property
    def finished(self) -> bool:
        return self._finished

    # --- input

    def set_formats(self, video: VideoFormat, audio: AudioFormat | None) -> None:
        """The formats of the packets that follow; a change closes the open segment."""
        self._check_live()
        if (video, audio) == (self._video, self._audio):
            return
        self._close()
        if self._started:
            self._discontinuity = True
        self._video, self._audio = video, audio
        self._need_keyframe = True

    def push(self, packet: EncodedPacket) -> None:
        """One packet; raises ``MediaError`` for one that cannot be written."""
        self._check_live()
        if packet.kind == VIDEO:
            try:
                self._push_video(packet)
            except MediaError:
                self._need_keyframe = True
                raise
        elif packet.kind == AUDIO:
            self._push_audio(packet)
        else:
            raise MediaError(f"packet kind {packet.kind!r} is neither video nor audio", "segmenter push")

    def skip_to_keyframe(self) -> None:
        """Drop video until the next keyframe (the caller lost a frame)."""
        self._need_keyframe = True

    # --- life cycle

    def restart(self) -> None:
        """The publisher reconnected: close this segment; the next one is a discontinuity."""
        self._check_live()
        self._close()
        if self._started:
            self._discontinuity = True
            self._new_clock = True
        self._rebase = True
        self._need_keyframe = True
        self._last_video = None
        self._last_audio = None
        self._held_audio.clear()

    def reopen(self) -> None:
        """After ``finish()``: the publisher came back; go on with the same playlist,
        EXT-X-ENDLIST removed (and the MPD dynamic again) and a discontinuity
        before the next segment."""
        if self._removed:
            raise ValueError("the segmenter's files were removed")
        if self._finished:
            self._finished = False
            self._output.reopen()
        self.restart()

    def finish(self) -> None:
        """Close the open segment and end the playlists (``#EXT-X-ENDLIST``, static MPD)."""
        if self._finished:
            return
        self._close()
        self._finished = True
        if self._started:
            self._output.finish()

    def remove_files(self) -> None:
        """Delete every file this segmenter wrote that is still there; it is spent after."""
        self._finished = True
        self._removed = True
        self._span = None
        self._output.remove_files()
        with contextlib.suppress(OSError):
            self.out_dir.rmdir()  # only when nothing else is in it

    def _check_live(self) -> None:
        if self._finished:
            raise ValueError("the segmenter has finished")

    # --- video and audio

    def _push_video(self, packet: EncodedPacket) -> None:
        if self._video is None:
            raise MediaError("video packet before its format", "segmenter push")
        key = packet.key
        if self._need_keyframe and not key:
            return
        dts = packet.dts * packet.time_base
        pts = packet.pts * packet.time_base
        if key and self._rebase:
            if self._end is None:
                self._offset = max(Fraction(0), -dts, -pts)
            else:
                # after both tracks of the last publisher: its audio may run past its last picture
                self._offset = max(self._end - pts, self._decode_end - dts)
                if self._audio_end is not None:
                    self._offset = max(self._offset, self._audio_end - pts)
            self._rebase = False
        dts += self._offset
        pts += self._offset
        if self._last_video is not None and dts <= self._last_video:
            raise MediaError(
                f"video dts {float(dts):.3f} s does not follow {float(self._last_video):.3f} s", "segmenter push"
            )
        span = self._span
        # segments are measured in presentation time, from keyframe to keyframe
        if key and (span is None or pts - span.start >= self._target):
            self._close(cut_pts=pts, cut_dts=dts)
            self._begin(pts)
            span = self._span
        try:
            self._output.video(packet.data, dts, pts, key)
        except MediaError:
            if span.frames == 0:  # a segment must begin with its keyframe
                self._output.abort()
                self._span = None
            raise
        span.frames += 1
        if self._held_audio:
            self._release_held_audio(span.start)
        self._need_keyframe = False
        if self._last_video is not None:
            self._step = dts - self._last_video
        self._last_video = dts
        self._decode_end = dts + self._step
        # a stream cut short (finish, restart) ends after its latest picture
        span.end = max(span.end, pts + self._step)

    def _push_audio(self, packet: EncodedPacket) -> None:
        if self._audio is None:
            return
        if self._span is None:
            self._held_audio.append(packet)  # before the first keyframe: it may belong after it
            return
        dts = packet.dts * packet.time_base + self._offset
        pts = packet.pts * packet.time_base + self._offset
        if self._last_audio is not None and dts <= self._last_audio:
            raise MediaError(
                f"audio dts {float(dts):.3f} s does not follow {float(self._last_audio):.3f} s", "segmenter push"
            )
        self._output.audio(packet.data, dts, pts)
        self._last_audio = dts
        self._audio_end = pts + Fraction(self._audio.frame_samples, self._audio.sample_rate)

    def _release_held_audio(self, start: Fraction) -> None:
        """Audio held before the segment opened: what plays from its keyframe on goes in."""
        held, self._held_audio = list(self._held_audio), deque(maxlen=_HELD_AUDIO)
        for packet in held:
            if packet.pts * packet.time_base + self._offset >= start:
                self._push_audio(packet)

    # --- segments

    def _begin(self, start: Fraction) -> None:
        self._output.begin(self._video, self._audio, start, self._discontinuity, self._new_clock)
        self._span = _Span(start, start, self._discontinuity)
        self._started = True
        self._discontinuity = self._new_clock = False

    def _close(self, cut_pts: Fraction | None = None, cut_dts: Fraction | None = None) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        end = span.end if cut_pts is None else cut_pts
        decode_end = self._decode_end if cut_dts is None else cut_dts
        self._end = end
        self._decode_end = decode_end
        try:
            self._output.end(span.start, end, decode_end, span.discontinuity, cut_pts is None)
        except BaseException:
            self._output.abort()
            raise

    def _listed(self, sequence: int, files: tuple[str, ...], duration: Fraction, discontinuity: bool) -> None:
        """The output wrote and listed a segment (fMP4: once its audio was in)."""
        info = SegmentInfo(
            uri=files[0],
            duration_s=float(duration),
            sequence=sequence,
            discontinuity=discontinuity,
            playlist=self.playlist_path.name,
            manifest=None if self.manifest_path is None else self.manifest_path.name,
            files=files,
        )
        if self.on_segment is not None:
            self.on_segment(info)


class FlvSegmenter:
    """Copy mode: FLV audio (8) / video (9) message bodies into a ``Segmenter``."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        settings: SegmentSettings = SegmentSettings(),
        on_segment: Callable[[SegmentInfo], None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_playlist: Callable[[str, Position], None] | None = None,
    ) -> None:
        self.segmenter = Segmenter(out_dir, settings, on_segment, clock=clock, on_playlist=on_playlist)
        self._avc: AVCConfig | None = None
        self._video: VideoFormat | None = None
        self._audio: AudioFormat | None = None

    @property
    def playlist(self) -> MediaPlaylist:
        return self.segmenter.playlist

    @property
    def playlist_path(self) -> Path:
        return self.segmenter.playlist_path

    @property
    def manifest_path(self) -> Path | None:
        return self.segmenter.manifest_path

    def push(self, type_id: int, timestamp_ms: int, payload: bytes) -> None:
        """One audio (8) or video (9) message body, in decode order."""
        if self.segmenter.finished:
            raise ValueError("the segmenter has finished")
        if type_id == flv.VIDEO:
            try:
                self._push_video(timestamp_ms, payload)
            except MediaError:
                self.segmenter.skip_to_keyframe()
                raise
        elif type_id == flv.AUDIO:
            self._push_audio(timestamp_ms, payload)

    def restart(self) -> None:
        """The publisher reconnected; its sequence headers come again."""
        self.segmenter.restart()
        self._forget_formats()

    def reopen(self) -> None:
        self.segmenter.reopen()
        self._forget_formats()

    def finish(self) -> None:
        self.segmenter.finish()

    def remove_files(self) -> None:
        self.segmenter.remove_files()

    def _forget_formats(self) -> None:
        self._avc = None
        self._video = None
        self._audio = None

    def _push_video(self, timestamp_ms: int, payload: bytes) -> None:
        unit = read_video(timestamp_ms, payload)
        if type(unit) is AvcSequenceHeader:
            avc = unit.config
            if not avc.sps or not avc.pps:
                raise MediaError("AVC sequence header without SPS or PPS", "video tag byte 5")
            sps = parse_sps(avc.sps[0])
            self._avc = avc
            self._video = VideoFormat(
                extradata=nal_units_to_annexb(avc.sps + avc.pps),
                width=sps.width,
                height=sps.height,
                codec=avc_codec_string(avc.sps[0]),
                frame_rate=sps.frame_rate,
            )
            self.segmenter.set_formats(self._video, self._audio)
            return
        if unit is None:
            return  # end of sequence, metadata: nothing to mux
        if self._avc is None:
            raise MediaError("video frame before the AVC sequence header", "video tag byte 1")
        nals = [nal for nal in split_nal_units(unit.data, self._avc.nal_length_size) if nal]
        if unit.key:
            nals = [*self._avc.sps, *self._avc.pps, *nals]
        packet = EncodedPacket(VIDEO, nal_units_to_annexb(nals), unit.dts_ms, unit.pts_ms, _MILLISECOND, unit.key)
        self.segmenter.push(packet)

    def _push_audio(self, timestamp_ms: int, payload: bytes) -> None:
        unit = read_audio(timestamp_ms, payload)
        if type(unit) is AacSequenceHeader:
            config = unit.config
            profile = 29 if config.ps else 5 if config.sbr else config.object_type
            self._audio = AudioFormat(
                config=unit.raw,
                sample_rate=config.sample_rate,
                channels=config.channels or config.channel_configuration or 2,
                codec=f"mp4a.40.{profile}",
                frame_samples=config.frame_length,
            )
            if self._video is not None:
                self.segmenter.set_formats(self._video, self._audio)
        elif unit is not None:
            self.segmenter.push(EncodedPacket(AUDIO, unit.data, timestamp_ms, timestamp_ms, _MILLISECOND, True))

