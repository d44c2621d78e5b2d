"""CMAF tracks with HLS playlists and a DASH manifest, for ``Segmenter``
(container "fmp4").

Files in the stream's folder:

- ``video_init.mp4`` + ``video_<n>.m4s``, ``audio_init.mp4`` + ``audio_<n>.m4s``:
  one track a file (dash.js and Shaka do not play a multiplexed
  representation). A later init segment with other bytes is
  ``<kind>_init_<k>.mp4``; it is deleted once no listed segment needs it.
- ``video.m3u8`` and ``audio.m3u8``: media playlists, version 7, with
  ``#EXT-X-MAP`` and ``#EXT-X-INDEPENDENT-SEGMENTS`` (video segments start
  with an IDR, every AAC frame is a sync sample).
- ``index.m3u8``: the master playlist players open: one variant (BANDWIDTH the
  peak of a segment's video + audio bits over its duration, AVERAGE-BANDWIDTH
  over all segments so far) whose audio is the ``audio.m3u8`` rendition.
- ``manifest.mpd``: the DASH manifest (``rtmprelay.hls.dash``).

Timing rules kept:

- Video decode times are the packets' dts on the 90 kHz clock; a sample lasts
  until the next one's dts, the last one of a segment until the dts of the
  keyframe that cut it (or one frame step when the stream stopped), so
  ``tfdt`` of segment n+1 is exactly where segment n ended.
- Audio is cut where video is: a segment takes the frames that start before
  the cutting keyframe's pts; a frame that arrives late joins the next one.
  Audio frames last ``frame_samples`` (timescale = sample rate); a timestamp
  more than half a frame past that expected time is a gap, kept as such.
  Audio before the first keyframe of a Period is dropped, so no track starts
  before its Period.
- DASH: a Period per run of one set of formats and one clock. The first
  starts at 0 = ``availabilityStartTime``, the wall-clock time of the first
  keyframe. A change of formats (new init segments) starts a Period at the
  media time where it begins; a reconnect (``new_clock``) starts one at that
  media time or at the wall-clock time since availabilityStartTime, whichever
  is later, so a publisher that was away for a minute does not leave players
  computing a live edge a minute in the future. ``presentationTimeOffset``
  is the track time of the Period's first keyframe. HLS marks the same
  boundaries with ``#EXT-X-DISCONTINUITY`` (and a new ``#EXT-X-MAP`` when the
  init changed).
- After ``finish()`` the MPD is static: the first listed segment is time 0
  and ``mediaPresentationDuration`` runs to the end of the last one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import attrs

from rtmprelay.hls import cmaf, dash
from rtmprelay.hls._files import remove_quietly, replace_atomically
from rtmprelay.hls.packets import AudioFormat, VideoFormat
from rtmprelay.hls.playlist import MediaPlaylist, Rendition, Variant, render_master

__all__ = ["CmafOutput"]

MASTER_NAME = "index.m3u8"
MANIFEST_NAME = "manifest.mpd"
_AUDIO_GROUP = "audio"
#: How much further video may run before a closed segment stops waiting for its audio.
_AUDIO_WAIT_S = Fraction(1)


@attrs.define(eq=False)
class _Period:
    id: str
    start: Fraction  # seconds after availabilityStartTime
    origin: Fraction  # output-clock pts that the Period's start maps to
    video: VideoFormat
    audio: AudioFormat | None
    video_init: str
    audio_init: str | None


@attrs.frozen(eq=False)
class _Closing:
    """A segment cut, waiting for the audio up to its end."""

    start: Fraction
    end: Fraction
    decode_end: int  # 90 kHz
    frames: list[tuple[int, int, bool, bytes]]
    period: _Period
    discontinuity: bool
    final: bool


@attrs.frozen(eq=False)
class _Listed:
    """One segment on disk and in the playlists."""

    number: int
    uri: str
    t: int  # presentation start, track timescale
    d: int
    period: _Period


class _Track:
    """One CMAF track's files, playlist and DASH timeline."""

    def __init__(self, kind: str, window: int) -> None:
        self.kind = kind
        self.playlist = MediaPlaylist(window, version=7, independent_segments=True)
        self.playlist_name = f"{kind}.m3u8"
        self.number = 0
        self.listed: deque[_Listed] = deque()
        self.inits: list[str] = []  # on disk, oldest first; the last is current
        self.init_bytes: bytes | None = None
        self.init_generation = 0
        self.discontinuity = False
        self.peak_bps = 0

    def init_for(self, data: bytes, out_dir: Path, written: set[str]) -> str:
        """The current init segment's name, written first if ``data`` is new."""
        if data != self.init_bytes:
            # a new name, never the old file rewritten: listed segments still need that one
            generation = self.init_generation
            self.init_generation += 1
            name = f"{self.kind}_init.mp4" if generation == 0 else f"{self.kind}_init_{generation}.mp4"
            replace_atomically(out_dir / name, data)
            written.add(name)
            self.inits.append(name)
            self.init_bytes = data
        return self.inits[-1]

    def add(self, listed: _Listed, duration_s: Fraction, size: int, init: str, out_dir: Path, written: set[str]) -> None:
        self.listed.append(listed)
        self.number += 1
        if duration_s > 0:
            self.peak_bps = max(self.peak_bps, _ceil(size * 8 / duration_s))
        removed = self.playlist.add_segment(listed.uri, float(duration_s), self.discontinuity, init)
        self.discontinuity = False
        while len(self.listed) > len(self.playlist.segments):
            self.listed.popleft()  # out of the window (and of the MPD), maybe still on disk
        for name in removed:
            remove_quietly(out_dir / name)
            written.discard(name)
        needed = self.playlist.map_uris | {self.inits[-1]}
        for name in [n for n in self.inits if n not in needed]:
            self.inits.remove(name)
            remove_quietly(out_dir / name)
            written.discard(name)


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


class CmafOutput:
    """CMAF segments, HLS master + media playlists and ``manifest.mpd`` in ``out_dir``."""

    def __init__(
        self,
        out_dir: Path,
        window: int,
        target_duration_s: Fraction,
        on_listed: Callable[[int, tuple[str, ...], Fraction, bool], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.out_dir = out_dir
        self.on_listed = on_listed
        self.window = window
        self.target = target_duration_s
        self.clock = clock
        self.video_track = _Track("video", window)
        self.audio_track = _Track("audio", window)
        self._periods: deque[_Period] = deque()
        self._availability_start: Fraction | None = None
        self._finished = False
        self._written: set[str] = set()
        self._video: list[tuple[int, int, bool, bytes]] = []  # dts, pts (90 kHz), key, sample
        self._closing: _Closing | None = None
        self._audio: deque[tuple[Fraction, bytes]] = deque()  # pts (s), raw frame
        self._audio_floor = Fraction(0)
        self._audio_next: int | None = None  # expected decode time of the next audio frame
        self._audio_arrived = 0  # audio frames since the open segment began
        # HLS variant bit rates
        self._peak_bps = 0
        self._total_bits = 0
        self._total_s = Fraction(0)

    @property
    def playlist(self) -> MediaPlaylist:
        return self.video_track.playlist

    @property
    def playlist_path(self) -> Path:
        return self.out_dir / MASTER_NAME

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_NAME

    def _now(self) -> Fraction:
        return Fraction(round(self.clock() * 1000), 1000)

    # --- the open segment

    def begin(
        self, video: VideoFormat, audio: AudioFormat | None, start: Fraction, discontinuity: bool, new_clock: bool
    ) -> None:
        if not self._periods or discontinuity:
            self._begin_period(video, audio, start, new_clock)

    def _begin_period(self, video: VideoFormat, audio: AudioFormat | None, start: Fraction, new_clock: bool) -> None:
        video_init = self.video_track.init_for(cmaf.video_init_segment(video), self.out_dir, self._written)
        audio_init = None
        if audio is not None:
            audio_init = self.audio_track.init_for(cmaf.audio_init_segment(audio), self.out_dir, self._written)
        if self._availability_start is None:
            self._availability_start = self._now()
            period_start = Fraction(0)
        else:
            last = self._periods[-1]
            period_start = last.start + (start - last.origin)
            if new_clock:
                period_start = max(period_start, self._now() - self._availability_start)
        # a track's first segment follows nothing it could be discontinuous with
        self.video_track.discontinuity = self.video_track.number > 0
        self.audio_track.discontinuity = self.audio_track.number > 0
        number = int(self._periods[-1].id[1:]) + 1 if self._periods else 0
        self._periods.append(_Period(f"p{number}", period_start, start, video, audio, video_init, audio_init))
        self._audio.clear()
        self._audio_floor = start
        self._audio_next = None

    def video(self, data: bytes, dts: Fraction, pts: Fraction, key: bool) -> None:
        sample = cmaf.annexb_to_sample(data)
        self._video.append((_ticks(dts, cmaf.VIDEO_TIMESCALE), _ticks(pts, cmaf.VIDEO_TIMESCALE), key, sample))
        closing = self._closing
        if closing is not None and dts > closing.end + _AUDIO_WAIT_S:
            self._complete()  # the audio stalled: the segment goes out with what it has

    def audio(self, data: bytes, dts: Fraction, pts: Fraction) -> None:
        if self._periods and self._periods[-1].audio is not None and pts >= self._audio_floor:
            self._audio.append((pts, data))
            self._audio_arrived += 1
            if self._closing is not None and pts >= self._closing.end:
                self._complete()

    def end(self, start: Fraction, end: Fraction, decode_end: Fraction, discontinuity: bool, final: bool) -> None:
        """Close the open segment; it is written and listed once its audio is in.

        A keyframe cuts video in decode order, but the audio up to its
        presentation time (a B-frame delay later) is still to come, so the
        segment waits for an audio frame at or past the cut, or for
        ``_AUDIO_WAIT_S`` more of video. ``final``: the stream stops here (no
        keyframe cut it), so it is written now with all the audio held.
        """
        if self._closing is not None:
            self._complete()
        frames, self._video = self._video, []
        if not frames:
            self._audio.clear()
            return
        period = self._periods[-1]
        decode_ticks = _ticks(decode_end, cmaf.VIDEO_TIMESCALE)
        self._closing = _Closing(start, end, decode_ticks, frames, period, discontinuity, final)
        # no audio during the whole segment: it is not flowing, don't wait for it
        silent = self._audio_arrived == 0
        self._audio_arrived = 0
        if final or silent or period.audio is None or (self._audio and self._audio[-1][0] >= end):
            self._complete()

    def _complete(self) -> None:
        closing, self._closing = self._closing, None
        period, start, end, frames = closing.period, closing.start, closing.end, closing.frames
        files = []
        # video: each sample lasts until the next decode time
        ends = [f[0] for f in frames[1:]] + [closing.decode_end]
        samples = [
            cmaf.Sample(data, max(1, next_dts - dts), pts - dts, key)
            for (dts, pts, key, data), next_dts in zip(frames, ends)
        ]
        track = self.video_track
        t = _ticks(start, cmaf.VIDEO_TIMESCALE)
        d = _ticks(end, cmaf.VIDEO_TIMESCALE) - t
        number = track.number
        video_size = self._write_segment(track, number, frames[0][0], samples, video=True)
        files.append(f"video_{number}.m4s")
        duration_s = end - start
        listed = _Listed(number, files[0], t, d, period)
        track.add(listed, duration_s, video_size, period.video_init, self.out_dir, self._written)
        # audio: the frames that start before the cut (all of them when the stream stops)
        audio_size = 0
        if period.audio is not None:
            taken = []
            while self._audio and (self._audio[0][0] < end or closing.final):
                taken.append(self._audio.popleft())
            if taken:
                audio_size, name = self._end_audio(period, taken)
                files.append(name)
        self._total_bits += (video_size + audio_size) * 8
        self._total_s += duration_s
        if duration_s > 0:
            self._peak_bps = max(self._peak_bps, _ceil((video_size + audio_size) * 8 / duration_s))
        self._write_indexes()
        self.on_listed(number, tuple(files), duration_s, closing.discontinuity)

    def _end_audio(self, period: _Period, taken: list[tuple[Fraction, bytes]]) -> tuple[int, str]:
        audio = period.audio
        rate, nominal = audio.sample_rate, audio.frame_samples
        decode_times = []
        for pts, _ in taken:
            t = _ticks(pts, rate)
            expected = self._audio_next
            decode = t if expected is None or t > expected + nominal // 2 else expected
            decode_times.append(decode)
            self._audio_next = decode + nominal
        ends = decode_times[1:] + [decode_times[-1] + nominal]
        samples = [cmaf.Sample(data, end - begin) for (_, data), begin, end in zip(taken, decode_times, ends)]
        track = self.audio_track
        number = track.number
        name = f"audio_{number}.m4s"
        size = self._write_segment(track, number, decode_times[0], samples, video=False)
        d = ends[-1] - decode_times[0]
        listed = _Listed(number, name, decode_times[0], d, period)
        track.add(listed, Fraction(d, rate), size, period.audio_init, self.out_dir, self._written)
        return size, name

    def _write_segment(self, track: _Track, number: int, base: int, samples: list[cmaf.Sample], *, video: bool) -> int:
        data = cmaf.media_segment(number + 1, base, samples, video=video)
        name = f"{track.kind}_{number}.m4s"
        replace_atomically(self.out_dir / name, data)
        self._written.add(name)
        return len(data)

    def abort(self) -> None:
        """Drop the open segment (a segment already closed still goes out)."""
        self._video = []

    # --- life cycle

    def finish(self) -> None:
        if self._closing is not None:
            self._complete()
        self._finished = True
        self.video_track.playlist.end()
        self.audio_track.playlist.end()
        self._write_indexes()

    def reopen(self) -> None:
        self._finished = False
        self.video_track.playlist.reopen()
        self.audio_track.playlist.reopen()

    def remove_files(self) -> None:
        self._closing = None
        self._video = []
        self._audio.clear()
        for name in self._written:
            remove_quietly(self.out_dir / name)
        self._written.clear()

    # --- playlists and manifest

    def _write_indexes(self) -> None:
        if not self.video_track.listed:
            return  # nothing a player could fetch yet
        tracks = [self.video_track]
        if self.audio_track.inits:
            tracks.append(self.audio_track)
        for track in tracks:
            replace_atomically(self.out_dir / track.playlist_name, track.playlist.render().encode())
            self._written.add(track.playlist_name)
        replace_atomically(self.playlist_path, self._master().encode())
        self._written.add(MASTER_NAME)
        replace_atomically(self.manifest_path, dash.render_mpd(self._manifest()).encode())
        self._written.add(MANIFEST_NAME)

    def _master(self) -> str:
        period = self._periods[-1]
        video, audio = period.video, period.audio
        codecs = video.codec if audio is None else f"{video.codec},{audio.codec}"
        average = _ceil(self._total_bits / self._total_s) if self._total_s else None
        variant = Variant(
            self.video_track.playlist_name,
            max(1, self._peak_bps),
            codecs,
            average_bandwidth=average,
            resolution=(video.width, video.height),
            frame_rate=float(video.frame_rate) if video.frame_rate else None,
            audio=None if audio is None else _AUDIO_GROUP,
        )
        renditions = []
        if audio is not None:
            renditions.append(
                Rendition("AUDIO", _AUDIO_GROUP, "audio", self.audio_track.playlist_name, channels=audio.channels)
            )
        return render_master([variant], renditions)

    def _manifest(self) -> dash.Manifest:
        # periods whose segments have all left the window go
        in_use = {id(s.period) for track in (self.video_track, self.audio_track) for s in track.listed}
        while len(self._periods) > 1 and id(self._periods[0]) not in in_use:
            self._periods.popleft()
        periods = [p for p in self._periods if id(p) in in_use]
        starts = {id(p): (p.start, p.origin) for p in periods}
        if self._finished:
            # static: the first listed segment is the start of the presentation
            first = periods[0]
            first_start = min(
                Fraction(s.t, _timescale(track, first)) for track in (self.video_track, self.audio_track)
                for s in track.listed if s.period is first
            )
            base = first.start + (max(first_start, first.origin) - first.origin)
            starts = {id(p): (max(Fraction(0), p.start - base), p.origin) for p in periods}
            starts[id(first)] = (Fraction(0), max(first_start, first.origin))
        rendered = []
        end_s = Fraction(0)
        for period in periods:
            start, origin = starts[id(period)]
            representations = []
            for track in (self.video_track, self.audio_track):
                listed = [s for s in track.listed if s.period is period]
                if not listed:
                    continue
                scale = _timescale(track, period)
                representations.append(self._representation(track, period, listed, scale, _ticks(origin, scale)))
                end_s = max(end_s, start + Fraction(listed[-1].t + listed[-1].d, scale) - origin)
            rendered.append(dash.DashPeriod(period.id, start, tuple(representations)))
        target = self.target
        if self._finished:
            return dash.Manifest(tuple(rendered), dynamic=False, min_buffer_s=target, duration_s=end_s)
        return dash.Manifest(
            tuple(rendered),
            dynamic=True,
            min_buffer_s=target,
            availability_start=self._availability_start,
            publish_time=self._now(),
            minimum_update_period_s=target,
            time_shift_buffer_s=target * self.window,
            suggested_delay_s=target * 3,
        )

    def _representation(
        self, track: _Track, period: _Period, listed: list[_Listed], scale: int, offset: int
    ) -> dash.DashRepresentation:
        segments = tuple(dash.TimelineSegment(s.number, s.t, s.d) for s in listed)
        common = dict(
            kind=track.kind,
            id=track.kind,
            bandwidth=max(1, track.peak_bps),
            timescale=scale,
            media=f"{track.kind}_$Number$.m4s",
            presentation_time_offset=offset,
            segments=segments,
        )
        if track.kind == "video":
            video = period.video
            return dash.DashRepresentation(
                codecs=video.codec,
                initialization=period.video_init,
                width=video.width,
                height=video.height,
                frame_rate=video.frame_rate,
                **common,
            )
        audio = period.audio
        return dash.DashRepresentation(
            codecs=audio.codec,
            initialization=period.audio_init,
            sample_rate=audio.sample_rate,
            channels=audio.channels,
            **common,
        )


def _timescale(track: _Track, period: _Period) -> int:
    return cmaf.VIDEO_TIMESCALE if track.kind == "video" else period.audio.sample_rate


def _ticks(seconds: Fraction, timescale: int) -> int:
    return round(seconds * timescale)
