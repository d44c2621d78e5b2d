"""Checks of HLS output for tests: what a playlist lists, what a segment holds.

``read_playlist(text)`` parses a media playlist into its tags and entries;
``read_low_latency(text)`` reads its LL-HLS parts and checks them against the
rules of draft-pantos-hls-rfc8216bis (4.4.3.7-8, 4.4.4.9, 4.4.5.3);
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

__all__ = [
    "LowLatencyPlaylist",
    "PartEntry",
    "PlaylistEntry",
    "Playlist",
    "SegmentReport",
    "inspect_segment",
    "read_low_latency",
    "read_playlist",
]


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
class PartEntry:
    """One ``#EXT-X-PART``: the media sequence number of its segment and its index there."""

    msn: int
    index: int
    uri: str
    duration_s: float
    independent: bool
    discontinuity: bool  # a #EXT-X-DISCONTINUITY stands before this part


@attrs.frozen
class LowLatencyPlaylist:
    part_target_s: float | None
    part_hold_back_s: float | None
    can_block_reload: bool
    media_sequence: int
    #: Whole segments: (msn, uri, duration) in order.
    segments: tuple[tuple[int, str, float], ...]
    parts: tuple[PartEntry, ...]
    preload_hints: tuple[str, ...]
    rendition_reports: tuple[dict[str, str], ...]
    ended: bool
    #: The rules it breaks, in words; empty when it keeps them all.
    problems: tuple[str, ...]


def _attributes(line: str) -> dict[str, str]:
    """An attribute list (quoted strings may hold commas)."""
    out, key, value, quoted, in_value = {}, "", "", False, False
    for char in line.split(":", 1)[1] + ",":
        if not in_value:
            if char == "=":
                in_value = True
            else:
                key += char
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            out[key.strip()] = value
            key, value, in_value = "", "", False
        else:
            value += char
    return out


#: Durations are written to the millisecond.
_ROUNDING_S = 0.0005


def read_low_latency(text: str) -> LowLatencyPlaylist:
    """Parts, preload hints and server control of an LL-HLS media playlist, and the
    rules it breaks: parts longer than PART-TARGET; parts under 85% of it that
    are neither independent nor the last of their segment; PART-HOLD-BACK under
    two part targets; parts without PART-INF; not exactly one preload hint of
    TYPE=PART naming a part not listed yet (while not ended); parts of a segment
    that do not add up to its EXTINF (within a millisecond a part)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an m3u8 playlist: no #EXTM3U first")
    part_target = hold_back = None
    can_block = ended = False
    sequence = 0
    segments, parts, hints, reports, problems = [], [], [], [], []
    open_parts: list[PartEntry] = []
    duration = None
    discontinuity = False
    for line in lines[1:]:
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART-INF:"):
            part_target = float(_attributes(line)["PART-TARGET"])
        elif line.startswith("#EXT-X-SERVER-CONTROL:"):
            control = _attributes(line)
            can_block = control.get("CAN-BLOCK-RELOAD") == "YES"
            hold_back = float(control["PART-HOLD-BACK"]) if "PART-HOLD-BACK" in control else None
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif line.startswith("#EXT-X-PART:"):
            attributes = _attributes(line)
            msn = sequence + len(segments)
            part = PartEntry(
                msn, len(open_parts), attributes["URI"], float(attributes["DURATION"]),
                attributes.get("INDEPENDENT") == "YES", discontinuity,
            )  # fmt: skip
            discontinuity = False
            open_parts.append(part)
            parts.append(part)
        elif line.startswith("#EXT-X-PRELOAD-HINT:"):
            attributes = _attributes(line)
            if attributes.get("TYPE") != "PART":
                problems.append(f"preload hint of TYPE {attributes.get('TYPE')!r}")
            hints.append(attributes["URI"])
        elif line.startswith("#EXT-X-RENDITION-REPORT:"):
            reports.append(_attributes(line))
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif not line.startswith("#"):
            msn = sequence + len(segments)
            if open_parts:
                total = sum(p.duration_s for p in open_parts)
                if abs(total - duration) > _ROUNDING_S * (len(open_parts) + 1):
                    problems.append(f"segment {msn}: parts add up to {total:.3f} s, EXTINF is {duration:.3f} s")
                for p in open_parts[:-1]:  # the last part of a segment may be short
                    if part_target is not None and not p.independent and p.duration_s < 0.85 * part_target - _ROUNDING_S:
                        problems.append(f"part {p.msn}.{p.index} ({p.duration_s:.3f} s) is under 85% of PART-TARGET")
            segments.append((msn, line, duration))
            open_parts, duration, discontinuity = [], None, False
    if parts and part_target is None:
        problems.append("EXT-X-PART without EXT-X-PART-INF")
    if part_target is not None:
        for p in parts:
            if p.duration_s > part_target + _ROUNDING_S:
                problems.append(f"part {p.msn}.{p.index} lasts {p.duration_s:.3f} s, over PART-TARGET {part_target:.3f} s")
        if hold_back is None or hold_back < 2 * part_target - _ROUNDING_S:
            problems.append(f"PART-HOLD-BACK {hold_back} is under two part targets")
        if not ended:
            if len(hints) != 1:
                problems.append(f"{len(hints)} preload hints, not one")
            elif hints[0] in {p.uri for p in parts}:
                problems.append(f"the preload hint names {hints[0]}, a part already listed")
    return LowLatencyPlaylist(
        part_target, hold_back, can_block, sequence, tuple(segments), tuple(parts), tuple(hints),
        tuple(reports), ended, tuple(problems),
    )  # fmt: skip


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
