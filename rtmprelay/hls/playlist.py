"""A live sliding-window HLS media playlist (RFC 8216), as a pure model.

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
"""

from __future__ import annotations

import math
from collections import deque

import attrs

__all__ = ["MediaPlaylist", "Segment"]

_VERSION = 3  # decimal EXTINF durations; enough for MPEG-TS segments


def _milliseconds(duration_s: float) -> int:
    return round(duration_s * 1000)


@attrs.frozen
class Segment:
    """One segment in the window: its URI, duration (ms) and discontinuity flag."""

    uri: str
    duration_ms: int
    discontinuity: bool = False


class MediaPlaylist:
    """Live playlist with a window of the ``window`` newest segments."""

    def __init__(self, window: int = 5, *, version: int = _VERSION) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window!r}")
        self.window = window
        self.version = version
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.ended = False
        self._segments: deque[Segment] = deque()
        self._longest_ms = 0

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def target_duration(self) -> int:
        return max(1, math.ceil(self._longest_ms / 1000))

    def add_segment(self, uri: str, duration_s: float, discontinuity: bool = False) -> list[str]:
        """Append a finished segment; return the URIs that fell out of the window."""
        if self.ended:
            raise ValueError("the playlist has ended")
        duration_ms = _milliseconds(duration_s)
        if duration_ms < 0:
            raise ValueError(f"negative segment duration {duration_s!r}")
        self._segments.append(Segment(uri, duration_ms, discontinuity))
        self._longest_ms = max(self._longest_ms, duration_ms)
        removed = []
        while len(self._segments) > self.window:
            gone = self._segments.popleft()
            self.media_sequence += 1
            if gone.discontinuity:
                self.discontinuity_sequence += 1
            removed.append(gone.uri)
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
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
        ]
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        for segment in self._segments:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            seconds, millis = divmod(segment.duration_ms, 1000)
            lines.append(f"#EXTINF:{seconds}.{millis:03d},")
            lines.append(segment.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"
