"""Local HLS for every live stream: a registry listener that gives each stream a
segmenter writing under ``hls_dir/{path below the app}/index.m3u8``.

Copy mode only for now (segments cut at the cleaned stream's keyframes, no
re-encode). A publisher that comes back to the same path while its playlist
is still there continues that playlist after EXT-X-DISCONTINUITY. Muxing one
packet into MPEG-TS costs microseconds, so it runs on the reactor thread;
the transcode mode of issue 4 will need a worker.
"""

from __future__ import annotations

from pathlib import Path

from twisted.logger import Logger

from rtmprelay.errors import MediaError
from rtmprelay.hls.segmenter import TsSegmenter
from rtmprelay.relay.forward import StreamName


class _StreamSegmenter:
    """The MediaSink one live stream feeds; survives the stream for a reconnect."""

    log = Logger()

    def __init__(self, path: str, folder: Path, segment_s: float, window: int) -> None:
        self.path = path
        self.segmenter = TsSegmenter(folder, target_duration_s=segment_s, window=window)
        self._failing = False

    def on_metadata(self, metadata: dict) -> None:
        pass

    def on_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        try:
            self.segmenter.push(type_id, timestamp, payload)
        except MediaError as error:
            if not self._failing:  # one line per bad run, not one per frame
                self.log.warn(
                    "HLS for {path}: {what} (at {where}); resuming at the next keyframe",
                    path=self.path,
                    what=error.what,
                    where=error.where or "?",
                )
            self._failing = True
        else:
            self._failing = False

    def on_stream_end(self) -> None:
        self.segmenter.finish()


class HlsOutput:
    """Registry listener: HLS for every stream that goes live."""

    log = Logger()

    def __init__(self, hls_dir: Path, *, segment_s: float = 2.0, window: int = 5) -> None:
        self.hls_dir = Path(hls_dir)
        self.segment_s = segment_s
        self.window = window
        self._by_path: dict[str, _StreamSegmenter] = {}

    def folder_for(self, path: str) -> Path:
        name = StreamName.from_path(path)
        return self.hls_dir / (name.path or name.app)

    def stream_started(self, stream) -> None:
        sink = self._by_path.get(stream.path)
        if sink is not None and sink.segmenter.playlist.ended:
            # The same publisher back: one playlist, a discontinuity between the two.
            sink.segmenter.reopen()
        else:
            sink = _StreamSegmenter(stream.path, self.folder_for(stream.path), self.segment_s, self.window)
            self._by_path[stream.path] = sink
        stream.attach(sink)
        self.log.info("HLS for {path} in {folder}", path=stream.path, folder=str(self.folder_for(stream.path)))

    def stream_ended(self, stream) -> None:
        """The sink finished the playlist itself (on_stream_end); its files stay for players."""
