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

Low-Latency HLS (``part_target_s`` given): each track's segment is written
as parts, ``<kind>_<n>.<k>.m4s``, one ``moof`` + ``mdat`` each, listed in the
media playlist as they are written (``MediaPlaylist.add_part``); the segment
file is ``styp`` and its parts' bytes, written when its last part is, so a
plain HLS client reads the same samples from the same playlist.

- A video part ends at a decode time at most ``part_target_s`` plus one
  millisecond after it began (``PART_SLACK_S``; the playlists' PART-TARGET says
  so): RTMP timestamps are whole milliseconds, so six frames at 30 fps last
  200 or 201 ms by rounding alone, and 29.97 fps frames 200.2 ms; without the
  slack such parts would come out a frame short, under the spec's 85 % of
  PART-TARGET. It is cut before a frame that the last frame step says would
  take it past that (or, when the steps vary, before the frame that did). So a
  part is written one frame after its last frame arrives; the first part of a
  segment begins with its keyframe and is ``INDEPENDENT=YES``.
- Audio parts hold the most whole AAC frames that fit the part target (8 at
  44.1 kHz: 186 ms), from frames that start before the open segment's latest
  picture, so none belongs to the segment after the cut. The frames of a
  segment still unwritten when video cuts it go out with its audio as before,
  as parts of at most that many frames.
- Video segments are listed at the cut, audio segments once their audio is in;
  each playlist is rewritten with every part of its track, with a preload hint
  naming the next part and a rendition report of the other track. The master
  playlist is written once both tracks have listed something.
- ``on_playlist(name, position)`` is told of every media playlist written (its
  file name and ``MediaPlaylist.position()``), for blocking reloads.
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
from rtmprelay.hls.playlist import MediaPlaylist, Position, Rendition, RenditionReport, Variant, render_master

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

    def __init__(self, kind: str, window: int, part_target_s: Fraction | None = None) -> None:
        self.kind = kind
        part_target = None if part_target_s is None else float(part_target_s)
        self.playlist = MediaPlaylist(window, version=7, independent_segments=True, part_target_s=part_target)
        self.playlist_name = f"{kind}.m3u8"
        self.number = 0
        self.fragments = 0  # moof sequence numbers used (LL-HLS: one a part)
        self.parts: list[bytes] = []  # the open segment's parts (LL-HLS)
        self.part_start: int | None = None  # decode time of the open segment's first part
        self.part_end = 0  # decode time where its last part ends
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

    def part_name(self, index: int | None = None) -> str:
        """The open segment's part ``index`` (default: the next one to be written)."""
        return f"{self.kind}_{self.number}.{len(self.parts) if index is None else index}.m4s"

    def drop_open_parts(self, out_dir: Path, written: set[str]) -> bool:
        """Unlist and delete the open segment's parts (it will not be finished); False if it had none."""
        if not self.parts:
            return False
        for name in self.playlist.drop_open_parts():
            remove_quietly(out_dir / name)
            written.discard(name)
        self.parts = []
        self.part_start = None
        self.playlist.preload_hint = self.part_name(0)
        return True

    def report(self) -> RenditionReport | None:
        """This track's last segment and part, for the other track's playlist."""
        position = self.playlist.position()
        if position.part is not None:
            return RenditionReport(self.playlist_name, *position.part)
        if position.segment >= 0:
            return RenditionReport(self.playlist_name, position.segment)
        return None

    def add(self, listed: _Listed, duration_s: Fraction, size: int, init: str, out_dir: Path, written: set[str]) -> None:
        self.listed.append(listed)
        self.number += 1
        if duration_s > 0:
            self.peak_bps = max(self.peak_bps, _ceil(size * 8 / duration_s))
        removed = self.playlist.add_segment(listed.uri, float(duration_s), self.discontinuity, init)
        self.discontinuity = False
        self.parts = []
        self.part_start = None
        if self.playlist.part_target_s is not None:
            self.playlist.preload_hint = self.part_name(0)
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


#: What a part may last beyond the configured part target: the resolution of RTMP
#: timestamps. The playlists' PART-TARGET is the configured target plus this.
PART_SLACK_S = Fraction(1, 1000)


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
        *,
        part_target_s: Fraction | None = None,
        on_playlist: Callable[[str, Position], None] | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.on_listed = on_listed
        self.on_playlist = on_playlist
        self.window = window
        self.target = target_duration_s
        self.clock = clock
        self.part_target = part_target_s
        listed_target = None if part_target_s is None else part_target_s + PART_SLACK_S
        self._part_ticks = None if listed_target is None else _ticks(listed_target, cmaf.VIDEO_TIMESCALE)
        self._master_written = False
        self._video_high: Fraction | None = None  # latest picture of the open segment (pts)
        self.video_track = _Track("video", window, listed_target)
        self.audio_track = _Track("audio", window, listed_target)
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
        self._video_size = 0  # bytes of the last video segment listed
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
        decode = _ticks(dts, cmaf.VIDEO_TIMESCALE)
        frames = self._video
        if self._part_ticks is not None and frames:
            span = decode - frames[0][0]
            if span > self._part_ticks:
                # the steps varied: the last frame would already take the part past its target
                self._video_part(max(1, len(frames) - 1))
            elif span + (decode - frames[-1][0]) > self._part_ticks:
                self._video_part(len(frames), decode)  # this frame would
        self._video.append((decode, _ticks(pts, cmaf.VIDEO_TIMESCALE), key, sample))
        self._video_high = pts if self._video_high is None else max(self._video_high, pts)
        closing = self._closing
        if closing is not None and dts > closing.end + _AUDIO_WAIT_S:
            self._complete()  # the audio stalled: the segment goes out with what it has
        self._audio_parts()

    def audio(self, data: bytes, dts: Fraction, pts: Fraction) -> None:
        if self._periods and self._periods[-1].audio is not None and pts >= self._audio_floor:
            self._audio.append((pts, data))
            self._audio_arrived += 1
            if self._closing is not None and pts >= self._closing.end:
                self._complete()
            self._audio_parts()

    # --- LL-HLS parts

    def _video_part(self, count: int, next_decode: int | None = None, segment_ticks: int | None = None) -> None:
        """Write the open segment's first ``count`` frames as a part; it ends at
        the next frame's decode time (``next_decode`` when that frame is not held yet).

        ``segment_ticks``: this is the segment's last part, and the segment lasts
        that long in presentation time. A segment cut short (a reconnect, the
        end) ends after its latest picture, which with B-frames is later than
        its last decode time: the part is listed that much longer (within the
        part target) so that the parts add up to the segment's EXTINF."""
        frames, self._video = self._video[:count], self._video[count:]
        end = self._video[0][0] if self._video else next_decode
        ends = [f[0] for f in frames[1:]] + [end]
        samples = [
            cmaf.Sample(data, max(1, next_dts - dts), pts - dts, key)
            for (dts, pts, key, data), next_dts in zip(frames, ends)
        ]
        period = self._periods[-1]
        track = self.video_track
        listed = end - frames[0][0]
        if segment_ticks is not None:
            before = 0 if track.part_start is None else frames[0][0] - track.part_start
            listed = max(listed, min(self._part_ticks, segment_ticks - before))
        # a segment's last part goes out in one playlist with the segment (written by the caller)
        self._write_part(
            track, frames[0][0], end, cmaf.VIDEO_TIMESCALE, samples, period.video_init, frames[0][2], listed,
            announce=segment_ticks is None,
        )  # fmt: skip

    def _audio_parts(self) -> None:
        """Audio parts of the open segment, of as many whole frames as fit the part target."""
        if self.part_target is None or self._closing is not None or not self._periods or self._video_high is None:
            return
        period = self._periods[-1]
        if period.audio is None:
            return
        per_part = self._audio_per_part(period.audio)
        while len(self._audio) >= per_part and self._audio[per_part - 1][0] < self._video_high:
            self._audio_part(period, [self._audio.popleft() for _ in range(per_part)])

    def _audio_per_part(self, audio: AudioFormat) -> int:
        return max(1, int(self.part_target * audio.sample_rate // audio.frame_samples))

    def _audio_part(self, period: _Period, taken: list[tuple[Fraction, bytes]], *, announce: bool = True) -> None:
        samples, first, end = self._audio_samples(period.audio, taken)
        self._write_part(
            self.audio_track, first, end, period.audio.sample_rate, samples, period.audio_init, True, end - first,
            announce=announce,
        )  # fmt: skip

    def _write_part(
        self,
        track: _Track,
        start: int,
        end: int,
        timescale: int,
        samples: list[cmaf.Sample],
        init: str,
        independent: bool,
        listed: int,
        *,
        announce: bool = True,
    ) -> None:
        """Write and list one part; ``announce``: rewrite the playlist now (not
        when the segment it ends is listed right after, in the same rewrite)."""
        track.fragments += 1
        data = cmaf.fragment(track.fragments, start, samples, video=track.kind == "video")
        name = track.part_name()
        replace_atomically(self.out_dir / name, data)
        self._written.add(name)
        if track.part_start is None:
            track.part_start = start
        track.part_end = end
        track.playlist.add_part(name, listed / timescale, independent, discontinuity=track.discontinuity, map_uri=init)
        track.parts.append(data)
        track.playlist.preload_hint = track.part_name()
        if announce:
            self._write_playlist(track)

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
        self._video_high = None
        period = self._periods[-1] if self._periods else None
        decode_ticks = _ticks(decode_end, cmaf.VIDEO_TIMESCALE)
        if self.part_target is not None and self._video:
            span = _ticks(end, cmaf.VIDEO_TIMESCALE) - _ticks(start, cmaf.VIDEO_TIMESCALE)
            self._video_part(len(self._video), decode_ticks, span)
        frames, self._video = self._video, []
        if not frames and not self.video_track.parts:
            self._audio.clear()
            return
        self._closing = _Closing(start, end, decode_ticks, frames, period, discontinuity, final)
        if self.part_target is not None:
            self._list_video(self._closing)
        # no audio during the whole segment: it is not flowing, don't wait for it
        silent = self._audio_arrived == 0
        self._audio_arrived = 0
        if final or silent or period.audio is None or (self._audio and self._audio[-1][0] >= end):
            self._complete()

    def _list_video(self, closing: _Closing) -> None:
        """Write and list the closed segment's video (its size kept in ``_video_size``)."""
        period, start, end, frames = closing.period, closing.start, closing.end, closing.frames
        track = self.video_track
        number = track.number
        if self.part_target is not None:
            size = self._write_parts_as_segment(track)
        else:
            # each sample lasts until the next decode time
            ends = [f[0] for f in frames[1:]] + [closing.decode_end]
            samples = [
                cmaf.Sample(data, max(1, next_dts - dts), pts - dts, key)
                for (dts, pts, key, data), next_dts in zip(frames, ends)
            ]
            size = self._write_segment(track, number, frames[0][0], samples, video=True)
        t = _ticks(start, cmaf.VIDEO_TIMESCALE)
        d = _ticks(end, cmaf.VIDEO_TIMESCALE) - t
        name = f"video_{number}.m4s"
        track.add(_Listed(number, name, t, d, period), end - start, size, period.video_init, self.out_dir, self._written)
        self._video_size = size
        if self.part_target is not None:
            self._write_playlist(track)

    def _complete(self) -> None:
        closing, self._closing = self._closing, None
        period, end = closing.period, closing.end
        number = self.video_track.number - (1 if self.part_target is not None else 0)
        if self.part_target is None:
            self._list_video(closing)
        video_size = self._video_size
        files = [f"video_{number}.m4s"]
        duration_s = end - closing.start
        # audio: the frames that start before the cut (all of them when the stream stops)
        audio_size = 0
        if period.audio is not None:
            taken = []
            while self._audio and (self._audio[0][0] < end or closing.final):
                taken.append(self._audio.popleft())
            if taken or self.audio_track.parts:
                audio_size, name = self._end_audio(period, taken)
                files.append(name)
        self._total_bits += (video_size + audio_size) * 8
        self._total_s += duration_s
        if duration_s > 0:
            self._peak_bps = max(self._peak_bps, _ceil((video_size + audio_size) * 8 / duration_s))
        self._write_indexes()
        self.on_listed(number, tuple(files), duration_s, closing.discontinuity)
        self._audio_parts()  # what waited for this segment's end

    def _audio_samples(
        self, audio: AudioFormat, taken: list[tuple[Fraction, bytes]]
    ) -> tuple[list[cmaf.Sample], int, int]:
        """Samples of consecutive AAC frames: (samples, first decode time, end), sample-rate ticks."""
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
        return samples, decode_times[0], ends[-1]

    def _end_audio(self, period: _Period, taken: list[tuple[Fraction, bytes]]) -> tuple[int, str]:
        rate = period.audio.sample_rate
        track = self.audio_track
        number = track.number
        name = f"audio_{number}.m4s"
        if self.part_target is not None:
            per_part = self._audio_per_part(period.audio)
            for first in range(0, len(taken), per_part):
                self._audio_part(period, taken[first : first + per_part], announce=False)
            first_decode, end = track.part_start, track.part_end
            size = self._write_parts_as_segment(track)
        else:
            samples, first_decode, end = self._audio_samples(period.audio, taken)
            size = self._write_segment(track, number, first_decode, samples, video=False)
        listed = _Listed(number, name, first_decode, end - first_decode, period)
        track.add(listed, Fraction(end - first_decode, rate), size, period.audio_init, self.out_dir, self._written)
        return size, name

    def _write_segment(self, track: _Track, number: int, base: int, samples: list[cmaf.Sample], *, video: bool) -> int:
        data = cmaf.media_segment(number + 1, base, samples, video=video)
        name = f"{track.kind}_{number}.m4s"
        replace_atomically(self.out_dir / name, data)
        self._written.add(name)
        return len(data)

    def _write_parts_as_segment(self, track: _Track) -> int:
        """The open segment's parts, behind ``styp``, as the whole segment's file."""
        data = cmaf.SEGMENT_TYPE + b"".join(track.parts)
        name = f"{track.kind}_{track.number}.m4s"
        replace_atomically(self.out_dir / name, data)
        self._written.add(name)
        return len(data)

    def abort(self) -> None:
        """Drop the open segment (a segment already closed still goes out)."""
        self._video = []
        self._video_high = None
        if self.video_track.drop_open_parts(self.out_dir, self._written):
            self._write_playlist(self.video_track)

    # --- life cycle

    def finish(self) -> None:
        if self._closing is not None:
            self._complete()
        for track in (self.video_track, self.audio_track):
            track.drop_open_parts(self.out_dir, self._written)  # no segment left for them to join
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
        for track in self._tracks():
            self._write_playlist(track, master=False)
        self._write_master()
        replace_atomically(self.manifest_path, dash.render_mpd(self._manifest()).encode())
        self._written.add(MANIFEST_NAME)

    def _tracks(self) -> list[_Track]:
        return [self.video_track, self.audio_track] if self.audio_track.inits else [self.video_track]

    def _write_playlist(self, track: _Track, *, master: bool = True) -> None:
        """One media playlist (with the other track's rendition report), then the
        master if it is due: LL-HLS lists parts before the first whole segment."""
        if self.part_target is not None:
            others = [t.report() for t in self._tracks() if t is not track]
            track.playlist.rendition_reports = tuple(r for r in others if r is not None)
        replace_atomically(self.out_dir / track.playlist_name, track.playlist.render().encode())
        self._written.add(track.playlist_name)
        if self.on_playlist is not None:
            self.on_playlist(track.playlist_name, track.playlist.position())
        if master and not self._master_written:
            # once every track has something to fetch: a player opens them all at once
            if all(t.playlist.position().part is not None or t.listed for t in self._tracks()):
                self._write_master()

    def _write_master(self) -> None:
        replace_atomically(self.playlist_path, self._master().encode())
        self._written.add(MASTER_NAME)
        self._master_written = True

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
