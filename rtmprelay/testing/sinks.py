"""A recording sink: what a stream delivered, for tests of the registry and its sinks.

``RecordingSink`` implements the one sink interface (``registry.MediaSink``:
``on_metadata``, ``on_media(message)``, ``on_stream_end``) and keeps every
``MediaMessage`` it was given, the very values the stream handed out.
"""

from __future__ import annotations

from rtmprelay.media.message import MediaMessage

__all__ = ["RecordingSink"]


class RecordingSink:
    """Keeps what it is given: ``metadata`` (dicts), ``media`` (messages), ``ended`` (times)."""

    def __init__(self) -> None:
        self.metadata: list[dict] = []
        self.media: list[MediaMessage] = []
        self.ended = 0

    def on_metadata(self, metadata: dict) -> None:
        self.metadata.append(metadata)

    def on_media(self, message: MediaMessage) -> None:
        self.media.append(message)

    def on_stream_end(self) -> None:
        self.ended += 1

    def tuples(self) -> list[tuple[int, int, bytes]]:
        """Every message as (type id, timestamp, payload)."""
        return [(m.type_id, m.timestamp, m.payload) for m in self.media]

    def video(self) -> list[MediaMessage]:
        """Video frames (no sequence headers)."""
        return [m for m in self.media if m.is_video and not m.header]

    def audio(self) -> list[MediaMessage]:
        """Audio frames (no sequence headers)."""
        return [m for m in self.media if m.is_audio and not m.header]
