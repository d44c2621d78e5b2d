"""MPEG-TS segments and their media playlist, for ``Segmenter`` (container "mpegts").

PyAV's ``mpegts`` muxer writes the packets as they come (nothing re-encoded),
which needs two things that ``EncodedPacket`` already guarantees:

- H.264 as Annex B with SPS/PPS in front of every IDR, so each segment decodes
  on its own; the stream's extradata is the Annex B SPS/PPS.
- AAC raw, with ``extradata`` = AudioSpecificConfig: the muxer writes the ADTS
  headers itself (without extradata it refuses raw AAC).

Packets are stamped on the 90 kHz MPEG-TS clock. Audio and video are muxed
into whichever segment is open when they arrive. ``index.m3u8`` is a media
playlist (version 3) that lists ``<prefix><n>.ts`` once each is closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from rtmprelay.errors import MediaError
from rtmprelay.hls._files import remove_quietly, replace_atomically
from rtmprelay.hls.packets import AudioFormat, VideoFormat
from rtmprelay.hls.playlist import MediaPlaylist

__all__ = ["TsOutput"]

PLAYLIST_NAME = "index.m3u8"
_CLOCK = 90000
_TIME_BASE = Fraction(1, _CLOCK)


def _av():
    """PyAV, imported when the first segment opens: a relay that only forwards never
    loads it (about 20 MB of resident memory, docs/performance.md)."""
    import av

    return av


def _ticks(seconds: Fraction) -> int:
    return round(seconds * _CLOCK)


class _OpenSegment:
    """One segment being muxed: its muxer and streams."""

    def __init__(self, path: Path, video: VideoFormat, audio: AudioFormat | None) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.container = _av().open(str(self.tmp), "w", format="mpegts")
        try:
            self.video = self.container.add_stream("h264")
            self.video.codec_context.extradata = video.extradata
            self.video.time_base = _TIME_BASE
            self.audio = None
            if audio is not None:
                self.audio = self.container.add_stream("aac", rate=audio.sample_rate)
                self.audio.codec_context.extradata = audio.config
                self.audio.time_base = _TIME_BASE
        except BaseException:
            self.abort()
            raise

    def mux(self, stream, data: bytes, dts: Fraction, pts: Fraction, key: bool) -> None:
        av = _av()
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = _TIME_BASE
        packet.dts = _ticks(dts)
        packet.pts = _ticks(pts)
        packet.is_keyframe = key
        try:
            self.container.mux(packet)
        except av.FFmpegError as exc:
            raise MediaError(f"muxer refused a packet ({exc})", "segment mux") from None

    def close(self) -> None:
        self.container.close()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()
        remove_quietly(self.tmp)


class TsOutput:
    """``<prefix><n>.ts`` and ``index.m3u8`` in ``out_dir``."""

    def __init__(
        self,
        out_dir: Path,
        window: int,
        on_listed: Callable[[int, tuple[str, ...], Fraction, bool], None],
        name_prefix: str = "seg",
    ) -> None:
        self.out_dir = out_dir
        self.on_listed = on_listed
        self.name_prefix = name_prefix
        self.playlist = MediaPlaylist(window)
        self._sequence = 0
        self._segment: _OpenSegment | None = None
        self._written: set[str] = set()

    @property
    def playlist_path(self) -> Path:
        return self.out_dir / PLAYLIST_NAME

    @property
    def manifest_path(self) -> None:
        return None

    def begin(
        self, video: VideoFormat, audio: AudioFormat | None, start: Fraction, discontinuity: bool, new_clock: bool
    ) -> None:
        path = self.out_dir / f"{self.name_prefix}{self._sequence}.ts"
        try:
            self._segment = _OpenSegment(path, video, audio)
        except _av().FFmpegError as exc:
            raise MediaError(f"cannot open a segment ({exc})", str(path)) from None
        self._sequence += 1

    def video(self, data: bytes, dts: Fraction, pts: Fraction, key: bool) -> None:
        self._segment.mux(self._segment.video, data, dts, pts, key)

    def audio(self, data: bytes, dts: Fraction, pts: Fraction) -> None:
        if self._segment.audio is not None:
            self._segment.mux(self._segment.audio, data, dts, pts, True)

    def end(self, start: Fraction, end: Fraction, decode_end: Fraction, discontinuity: bool, final: bool) -> None:
        """Close and list the open segment."""
        segment, self._segment = self._segment, None
        try:
            segment.close()
        except (_av().FFmpegError, OSError):
            segment.abort()
            raise
        name = segment.path.name
        self._written.add(name)
        removed = self.playlist.add_segment(name, float(end - start), discontinuity)
        self._write_playlist()
        for gone in removed:
            remove_quietly(self.out_dir / gone)
            self._written.discard(gone)
        self.on_listed(self._sequence - 1, (name,), end - start, discontinuity)

    def abort(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            segment.abort()

    def finish(self) -> None:
        self.playlist.end()
        self._write_playlist()

    def reopen(self) -> None:
        self.playlist.reopen()

    def remove_files(self) -> None:
        self.abort()
        for name in self._written:
            remove_quietly(self.out_dir / name)
        self._written.clear()

    def _write_playlist(self) -> None:
        replace_atomically(self.playlist_path, self.playlist.render().encode())
        self._written.add(PLAYLIST_NAME)
