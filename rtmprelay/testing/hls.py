"""Checks of HLS output for tests: what a playlist lists, what a segment holds.

``read_playlist(text)`` parses a media playlist into its tags and entries;
``inspect_segment(path, init=None)`` decodes one segment with PyAV (an fMP4
segment behind its init segment) and reports what a strict player cares
about: does it start with an IDR, how long is it, are its frames evenly
spaced, what audio does it carry. Nothing here trusts the relay's own code.
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import attrs

__all__ = ["PlaylistEntry", "Playlist", "SegmentReport", "inspect_segment", "read_playlist"]


@attrs.frozen
class PlaylistEntry:
    uri: str
    duration_s: float
    discontinuity: bool


@attrs.frozen
class Playlist:
    version: int | None
    target_duration: int | None
    media_sequence: int
    discontinuity_sequence: int
    ended: bool
    map_uri: str | None
    entries: tuple[PlaylistEntry, ...]
    #: For a master playlist: the URIs of its variant and rendition playlists.
    variants: tuple[str, ...] = ()


def _attribute(line: str, name: str) -> str | None:
    for part in line.split(":", 1)[1].split(","):
        key, _, value = part.partition("=")
        if key.strip() == name:
            return value.strip().strip('"')
    return None


def read_playlist(text: str) -> Playlist:
    """A media (or master) playlist's tags and entries; raises ValueError if it is not one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an m3u8 playlist: no #EXTM3U first")
    values = {"version": None, "target": None, "sequence": 0, "discontinuity_sequence": 0}
    entries: list[PlaylistEntry] = []
    variants: list[str] = []
    duration = None
    discontinuity = False
    map_uri = None
    ended = False
    next_is_variant = False
    for line in lines[1:]:
        if line.startswith("#EXT-X-VERSION:"):
            values["version"] = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            values["target"] = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            values["sequence"] = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            values["discontinuity_sequence"] = int(line.split(":", 1)[1])
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif line.startswith("#EXT-X-MAP:"):
            map_uri = _attribute(line, "URI")
        elif line.startswith("#EXT-X-MEDIA:"):
            uri = _attribute(line, "URI")
            if uri:
                variants.append(uri)
        elif line.startswith("#EXT-X-STREAM-INF:"):
            next_is_variant = True
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif not line.startswith("#"):
            if next_is_variant:
                variants.append(line)
                next_is_variant = False
            elif duration is None:
                raise ValueError(f"segment {line!r} has no #EXTINF")
            else:
                entries.append(PlaylistEntry(line, duration, discontinuity))
                duration, discontinuity = None, False
    return Playlist(
        values["version"],
        values["target"],
        values["sequence"],
        values["discontinuity_sequence"],
        ended,
        map_uri,
        tuple(entries),
        tuple(variants),
    )


@attrs.frozen
class SegmentReport:
    video_frames: int
    #: The first decoded picture is a keyframe and an I picture.
    starts_with_idr: bool
    #: Distinct steps between consecutive presentation times, in seconds.
    frame_steps_s: frozenset[Fraction]
    #: Span of the pictures: last - first presentation time + one frame step.
    duration_s: float
    video_size: tuple[int, int] | None
    audio_frames: int
    audio_rate: int | None
    audio_channels: int | None
    decode_errors: int
    first_pts_s: float | None = None

    @property
    def constant_frame_rate(self) -> Fraction | None:
        """Frames per second if every step is the same, else None."""
        if len(self.frame_steps_s) != 1:
            return None
        (step,) = self.frame_steps_s
        return 1 / step if step else None


def inspect_segment(path: str | Path, init: str | Path | None = None) -> SegmentReport:
    """Decode one segment (behind ``init`` for fMP4) and report on it."""
    import av

    source = Path(path)
    if init is not None:
        joined = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False)
        with joined:
            joined.write(Path(init).read_bytes() + source.read_bytes())
        source = Path(joined.name)
    try:
        return _inspect(av, source)
    finally:
        if init is not None:
            source.unlink(missing_ok=True)


def _inspect(av, source: Path) -> SegmentReport:
    times: list[Fraction] = []
    first_is_idr = None
    size = None
    audio_frames = 0
    audio_rate = audio_channels = None
    errors = 0
    with av.open(str(source)) as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        for packet in container.demux(*streams):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                errors += 1
                continue
            for frame in frames:
                if packet.stream.type == "video":
                    if first_is_idr is None:
                        first_is_idr = bool(frame.key_frame) and frame.pict_type == av.video.frame.PictureType.I
                        size = (frame.width, frame.height)
                    if frame.pts is not None:
                        times.append(frame.pts * frame.time_base)
                else:
                    audio_frames += 1
                    audio_rate = frame.sample_rate
                    audio_channels = len(frame.layout.channels)
    times.sort()
    steps = frozenset(b - a for a, b in zip(times, times[1:]))
    step = min(steps) if steps else Fraction(0)
    duration = float(times[-1] - times[0] + step) if times else 0.0
    return SegmentReport(
        video_frames=len(times),
        starts_with_idr=bool(first_is_idr),
        frame_steps_s=steps,
        duration_s=duration,
        video_size=size,
        audio_frames=audio_frames,
        audio_rate=audio_rate,
        audio_channels=audio_channels,
        decode_errors=errors,
        first_pts_s=float(times[0]) if times else None,
    )
