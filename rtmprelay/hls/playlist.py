"""Live sliding-window HLS media playlists and the master playlist (RFC 8216), as
pure models.

No clock, no files: the caller adds segments as they are finished, and writes
``render()`` wherever it likes. Durations are seconds; they are kept to the
millisecond, which is also how ``#EXTINF`` prints them.

Rules kept here:

- ``#EXT-X-TARGETDURATION`` is the ceiling of the longest segment ever added
  (RFC 8216 4.3.3.1 forbids it to change, so a segment that has left the window
  still counts), and never less than 1.
- ``#EXT-X-MEDIA-SEQUENCE`` is the sequence number of the first segment in the
  window; it grows by one for every segment that falls out.
- ``#EXT-X-DISCONTINUITY`` precedes a segment added with ``discontinuity=True``;
  ``#EXT-X-DISCONTINUITY-SEQUENCE`` counts the discontinuity tags that have left
  the window (RFC 8216 4.3.3.3), and is written once it is not 0.
- ``#EXT-X-ENDLIST`` after ``end()``; nothing can be added after that.
- A segment that leaves the window stays on disk a while longer: RFC 8216
  6.2.2 asks that it remain available for its own duration plus the longest
  playlist that listed it, since a client may have fetched that playlist just
  before. ``add_segment`` therefore returns a departed URI for deletion only
  after ``window + 1`` more segments have been added (about that long).
- ``#EXT-X-MAP:URI=...`` (fMP4 segments, version 6 and up) is written before the
  first segment of the window, after every ``#EXT-X-DISCONTINUITY``, and
  wherever a segment's initialization section differs from the one before; a
  change of map is a change of encoding parameters, so the caller also marks
  that segment a discontinuity (4.3.2.3).
- ``#EXT-X-INDEPENDENT-SEGMENTS`` when the caller says every segment starts
  with a keyframe (or is audio) and so decodes on its own.

Low-Latency HLS (draft-pantos-hls-rfc8216bis 4.4.3.7-8, 4.4.4.9, 4.4.5.3-4),
when the playlist has a ``part_target_s``:

- ``#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=...`` (three
  part targets, the spec's floor being two) and ``#EXT-X-PART-INF:PART-TARGET``
  in the header; the caller serves ``_HLS_msn`` / ``_HLS_part`` (see
  ``Position`` and ``rtmprelay.web.hls``).
- ``add_part`` lists a part of the segment being written (the "open"
  segment, media sequence number ``media_sequence + len(segments)``);
  ``add_segment`` then closes it, its parts moving with it. ``#EXT-X-PART``
  lines stand before the ``#EXTINF`` of their segment for the segments that
  end within three target durations of the playlist's end (4.4.4.9 asks that
  older ones go), and after the last segment for the open one, each
  ``INDEPENDENT=YES`` when it begins with a keyframe.
- ``#EXT-X-PRELOAD-HINT:TYPE=PART`` names the part the caller will write next
  (``preload_hint``); ``#EXT-X-RENDITION-REPORT`` lines (``rendition_reports``)
  give the other renditions' last segment and part.
- ``#EXT-X-DISCONTINUITY`` and ``#EXT-X-MAP`` of a segment stand before its
  first part, so they are stated when the open segment's first part is.
- The parts of a segment that leaves the window are deleted with it.
- A plain HLS client skips every tag above and plays the whole segments, which
  are listed as before.

The master playlist (``render_master``) lists variants (``#EXT-X-STREAM-INF``,
BANDWIDTH the peak segment bit rate of the variant with its audio) and
renditions (``#EXT-X-MEDIA``), each rendition of a group naming its media
playlist by URI.
"""

from __future__ import annotations

import math
from collections import deque

import attrs

__all__ = ["MediaPlaylist", "Part", "Position", "RenditionReport", "Rendition", "Segment", "Variant", "render_master"]

_VERSION = 3  # decimal EXTINF durations; enough for MPEG-TS segments


def _milliseconds(duration_s: float) -> int:
    return round(duration_s * 1000)


def _decimal(duration_ms: int) -> str:
    seconds, millis = divmod(duration_ms, 1000)
    return f"{seconds}.{millis:03d}"


@attrs.frozen
class Part:
    """One partial segment (LL-HLS): its URI, duration (ms), and whether it
    begins with a keyframe (``INDEPENDENT=YES``)."""

    uri: str
    duration_ms: int
    independent: bool = False


@attrs.frozen
class Segment:
    """One segment in the window: its URI, duration (ms), discontinuity flag,
    the URI of its initialization section (fMP4) if it has one, and its parts."""

    uri: str
    duration_ms: int
    discontinuity: bool = False
    map_uri: str | None = None
    parts: tuple[Part, ...] = ()


@attrs.frozen
class Position:
    """How far a playlist has got, for blocking reloads (``_HLS_msn``/``_HLS_part``).

    ``segment``: the media sequence number of the last whole segment (-1 before
    the first); ``part``: ``(msn, index)`` of the last part listed, None before
    the first or without parts; ``ended``: ``#EXT-X-ENDLIST`` is written;
    ``preload_hint``: the URI of the part written next, None when ended."""

    segment: int
    part: tuple[int, int] | None
    ended: bool
    target_duration_s: int
    part_target_s: float | None
    preload_hint: str | None = None

    def has(self, msn: int, part: int | None) -> bool:
        """Whether a playlist at this position answers ``_HLS_msn=msn[&_HLS_part=part]``:
        segment ``msn`` or a later one whole, or (with ``part``) that part or a later one."""
        if self.ended or self.segment >= msn:
            return True
        return part is not None and self.part is not None and self.part >= (msn, part)

    @property
    def advance_part_limit(self) -> int:
        """How many parts past the last one a request may name (4.4.3.8: three
        divided by the part target when it is under a second, else three)."""
        if self.part_target_s is None or self.part_target_s >= 1:
            return 3
        return math.ceil(3 / self.part_target_s)

    def too_far(self, msn: int, part: int | None) -> bool:
        """The request names what will not come soon (6.2.5.2: answer 400 at once):
        a segment more than two past the last one, or a part further than the
        advance part limit past the last part."""
        if msn > self.segment + 2:
            return True
        if part is None:
            return False
        last_msn, last_index = self.part if self.part is not None else (self.segment + 1, -1)
        if msn < last_msn:
            return False
        # the parts of later segments are unknown in number: count them from the last part's segment
        return part - (last_index if msn == last_msn else -1) > self.advance_part_limit


@attrs.frozen
class RenditionReport:
    """``#EXT-X-RENDITION-REPORT``: another rendition's playlist and its last segment and part."""

    uri: str
    last_msn: int
    last_part: int | None = None


@attrs.define
class _Open:
    """The segment being written, as far as its parts are listed."""

    discontinuity: bool
    map_uri: str | None
    parts: list[Part] = attrs.Factory(list)


class MediaPlaylist:
    """Live playlist with a window of the ``window`` newest segments."""

    def __init__(
        self,
        window: int = 5,
        *,
        version: int = _VERSION,
        independent_segments: bool = False,
        part_target_s: float | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window!r}")
        if part_target_s is not None and not part_target_s > 0:
            raise ValueError(f"part target must be positive, not {part_target_s!r}")
        self.window = window
        self.version = version
        self.independent_segments = independent_segments
        self.part_target_s = part_target_s
        #: The URI of the part that comes next (LL-HLS), or None.
        self.preload_hint: str | None = None
        #: The other renditions' positions (LL-HLS).
        self.rendition_reports: tuple[RenditionReport, ...] = ()
        self._open: _Open | None = None
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.ended = False
        self._segments: deque[Segment] = deque()
        self._departed: deque[str] = deque()  # left the window, still to be served a while
        self._longest_ms = 0

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def target_duration(self) -> int:
        return max(1, math.ceil(self._longest_ms / 1000))

    @property
    def map_uris(self) -> frozenset[str]:
        """The initialization sections the window still refers to."""
        return frozenset(s.map_uri for s in self._segments if s.map_uri is not None)

    @property
    def open_parts(self) -> tuple[Part, ...]:
        """The parts of the segment being written."""
        return () if self._open is None else tuple(self._open.parts)

    @property
    def next_sequence(self) -> int:
        """The media sequence number of the segment being written (or the next one)."""
        return self.media_sequence + len(self._segments)

    def position(self) -> Position:
        last_part = None
        if self._open is not None and self._open.parts:
            last_part = (self.next_sequence, len(self._open.parts) - 1)
        else:
            for segment in reversed(self._segments):
                if segment.parts:
                    last_part = (self.next_sequence - 1, len(segment.parts) - 1)
                break
        hint = None if self.ended else self.preload_hint
        return Position(self.next_sequence - 1, last_part, self.ended, self.target_duration, self.part_target_s, hint)

    def add_part(
        self, uri: str, duration_s: float, independent: bool, *, discontinuity: bool = False, map_uri: str | None = None
    ) -> None:
        """List a part of the segment being written; ``discontinuity`` and
        ``map_uri`` are the segment's, read from its first part."""
        if self.ended:
            raise ValueError("the playlist has ended")
        if self.part_target_s is None:
            raise ValueError("a playlist without a part target has no parts")
        if self._open is None:
            self._open = _Open(discontinuity, map_uri)
        self._open.parts.append(Part(uri, _milliseconds(duration_s), independent))

    def add_segment(
        self,
        uri: str,
        duration_s: float,
        discontinuity: bool = False,
        map_uri: str | None = None,
    ) -> list[str]:
        """Append a finished segment (with the parts listed since the last one);
        return the URIs that may now be deleted (out of the window for
        ``window + 1`` additions, see the module doc), parts included."""
        if self.ended:
            raise ValueError("the playlist has ended")
        duration_ms = _milliseconds(duration_s)
        if duration_ms < 0:
            raise ValueError(f"negative segment duration {duration_s!r}")
        parts, self._open = self.open_parts, None
        self._segments.append(Segment(uri, duration_ms, discontinuity, map_uri, parts))
        self._longest_ms = max(self._longest_ms, duration_ms)
        removed = []
        while len(self._segments) > self.window:
            gone = self._segments.popleft()
            self.media_sequence += 1
            if gone.discontinuity:
                self.discontinuity_sequence += 1
            self._departed.append(gone)
        while len(self._departed) > self.window + 1:
            gone = self._departed.popleft()
            removed += [gone.uri, *(part.uri for part in gone.parts)]
        return removed

    def drop_open_parts(self) -> list[str]:
        """The segment being written will not be finished: unlist its parts; return their URIs."""
        parts, self._open = self.open_parts, None
        return [part.uri for part in parts]

    def reopen(self) -> None:
        """The stream came back after ``end()``: drop EXT-X-ENDLIST and go on."""
        self.ended = False

    def end(self) -> None:
        """Mark the stream finished (``#EXT-X-ENDLIST``); nothing comes next to hint at."""
        self.ended = True
        self.preload_hint = None

    def render(self) -> str:
        """The exact m3u8 text, LF line endings, ending with a newline."""
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{self.version}",
        ]
        if self.independent_segments:
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        lines.append(f"#EXT-X-TARGETDURATION:{self.target_duration}")
        low_latency = self.part_target_s is not None
        if low_latency:
            part_target_ms = _milliseconds(self.part_target_s)
            lines.append(f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={_decimal(3 * part_target_ms)}")
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={_decimal(part_target_ms)}")
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}")
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        # parts are listed for the segments ending within three target durations of the end
        parts_from = len(self._segments)
        if low_latency:
            remaining_ms = 3000 * self.target_duration
            while parts_from > 0 and remaining_ms > 0:
                parts_from -= 1
                remaining_ms -= self._segments[parts_from].duration_ms
        current_map = None

        def begin(discontinuity: bool, map_uri: str | None) -> None:
            nonlocal current_map
            if discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            # stated again after a discontinuity too: players restart their demuxer there
            if map_uri is not None and (map_uri != current_map or discontinuity):
                lines.append(f'#EXT-X-MAP:URI="{map_uri}"')
                current_map = map_uri

        for index, segment in enumerate(self._segments):
            begin(segment.discontinuity, segment.map_uri)
            if index >= parts_from:
                lines += [_part_line(part) for part in segment.parts]
            lines.append(f"#EXTINF:{_decimal(segment.duration_ms)},")
            lines.append(segment.uri)
        if self._open is not None and self._open.parts:
            begin(self._open.discontinuity, self._open.map_uri)
            lines += [_part_line(part) for part in self._open.parts]
        if self.preload_hint is not None and not self.ended:
            lines.append(f"#EXT-X-PRELOAD-HINT:TYPE=PART,URI={_quoted(self.preload_hint)}")
        for report in self.rendition_reports:
            attributes = f"URI={_quoted(report.uri)},LAST-MSN={report.last_msn}"
            if report.last_part is not None:
                attributes += f",LAST-PART={report.last_part}"
            lines.append(f"#EXT-X-RENDITION-REPORT:{attributes}")
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def _part_line(part: Part) -> str:
    line = f"#EXT-X-PART:DURATION={_decimal(part.duration_ms)},URI={_quoted(part.uri)}"
    return line + ",INDEPENDENT=YES" if part.independent else line


@attrs.frozen
class Rendition:
    """One ``#EXT-X-MEDIA`` entry: an alternative rendition in a group."""

    type: str  # AUDIO, VIDEO, SUBTITLES
    group_id: str
    name: str
    uri: str
    default: bool = True
    channels: int | None = None


@attrs.frozen
class Variant:
    """One ``#EXT-X-STREAM-INF`` entry and the media playlist it points at."""

    uri: str
    #: Peak segment bit rate (bits/s), audio rendition included (RFC 8216 4.3.4.2).
    bandwidth: int
    codecs: str
    average_bandwidth: int | None = None
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None
    audio: str | None = None  # GROUP-ID of its audio renditions


def _quoted(value: str) -> str:
    if '"' in value or "\n" in value:
        raise ValueError(f"quoted-string value cannot hold {value!r}")
    return f'"{value}"'


def render_master(
    variants: tuple[Variant, ...] | list[Variant],
    renditions: tuple[Rendition, ...] | list[Rendition] = (),
    *,
    version: int = 7,
    independent_segments: bool = True,
) -> str:
    """The exact master playlist text, LF line endings, ending with a newline."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}"]
    if independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    for media in renditions:
        attributes = [
            f"TYPE={media.type}",
            f"GROUP-ID={_quoted(media.group_id)}",
            f"NAME={_quoted(media.name)}",
            f"DEFAULT={'YES' if media.default else 'NO'}",
            "AUTOSELECT=YES",
        ]
        if media.channels is not None:
            attributes.append(f'CHANNELS="{media.channels}"')
        attributes.append(f"URI={_quoted(media.uri)}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attributes))
    for variant in variants:
        attributes = [f"BANDWIDTH={variant.bandwidth}"]
        if variant.average_bandwidth is not None:
            attributes.append(f"AVERAGE-BANDWIDTH={variant.average_bandwidth}")
        attributes.append(f"CODECS={_quoted(variant.codecs)}")
        if variant.resolution is not None:
            attributes.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
        if variant.frame_rate is not None:
            attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        if variant.audio is not None:
            attributes.append(f"AUDIO={_quoted(variant.audio)}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(variant.uri)
    return "\n".join(lines) + "\n"
