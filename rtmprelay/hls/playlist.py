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

The master playlist (``render_master``) lists variants (``#EXT-X-STREAM-INF``,
BANDWIDTH the peak segment bit rate of the variant with its audio) and
renditions (``#EXT-X-MEDIA``), each rendition of a group naming its media
playlist by URI.
"""

from __future__ import annotations

import math
from collections import deque

import attrs

__all__ = ["MediaPlaylist", "Rendition", "Segment", "Variant", "render_master"]

_VERSION = 3  # decimal EXTINF durations; enough for MPEG-TS segments


def _milliseconds(duration_s: float) -> int:
    return round(duration_s * 1000)


@attrs.frozen
class Segment:
    """One segment in the window: its URI, duration (ms), discontinuity flag and
    the URI of its initialization section (fMP4) if it has one."""

    uri: str
    duration_ms: int
    discontinuity: bool = False
    map_uri: str | None = None


class MediaPlaylist:
    """Live playlist with a window of the ``window`` newest segments."""

    def __init__(
        self, window: int = 5, *, version: int = _VERSION, independent_segments: bool = False
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window!r}")
        self.window = window
        self.version = version
        self.independent_segments = independent_segments
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

    def add_segment(
        self,
        uri: str,
        duration_s: float,
        discontinuity: bool = False,
        map_uri: str | None = None,
    ) -> list[str]:
        """Append a finished segment; return the URIs that may now be deleted
        (out of the window for ``window + 1`` additions, see the module doc)."""
        if self.ended:
            raise ValueError("the playlist has ended")
        duration_ms = _milliseconds(duration_s)
        if duration_ms < 0:
            raise ValueError(f"negative segment duration {duration_s!r}")
        self._segments.append(Segment(uri, duration_ms, discontinuity, map_uri))
        self._longest_ms = max(self._longest_ms, duration_ms)
        removed = []
        while len(self._segments) > self.window:
            gone = self._segments.popleft()
            self.media_sequence += 1
            if gone.discontinuity:
                self.discontinuity_sequence += 1
            self._departed.append(gone.uri)
        while len(self._departed) > self.window + 1:
            removed.append(self._departed.popleft())
        return removed

    def reopen(self) -> None:
        """The stream came back after ``end()``: drop EXT-X-ENDLIST and go on."""
        self.ended = False

    def end(self) -> None:
        """Mark the stream finished (``#EXT-X-ENDLIST``)."""
        self.ended = True

    def render(self) -> str:
        """The exact m3u8 text, LF line endings, ending with a newline."""
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{self.version}",
        ]
        if self.independent_segments:
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        lines.append(f"#EXT-X-TARGETDURATION:{self.target_duration}")
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}")
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        current_map = None
        for segment in self._segments:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            # stated again after a discontinuity too: players restart their demuxer there
            if segment.map_uri is not None and (segment.map_uri != current_map or segment.discontinuity):
                lines.append(f'#EXT-X-MAP:URI="{segment.map_uri}"')
                current_map = segment.map_uri
            seconds, millis = divmod(segment.duration_ms, 1000)
            lines.append(f"#EXTINF:{seconds}.{millis:03d},")
            lines.append(segment.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


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
