"""Local HLS for every live stream: the registry listener that gives each stream
path an HLS pipeline on its own worker thread, writing under
``hls_dir/{path below the app}/``.

- *Transcode mode* (the default) decodes the cleaned stream and encodes it
  again with the old relay's settings; *copy mode* cuts the cleaned stream at
  its keyframes. Either way the work runs on the path's ``StreamWorker``; the
  reactor only queues messages (bounded; see ``rtmprelay.hls.worker``).
- A publisher that comes back to the same path before its files are removed
  continues the playlist after EXT-X-DISCONTINUITY. On unpublish the playlist
  gets EXT-X-ENDLIST and everything is removed ``cleanup_after_s`` later
  (``None`` keeps the files).
- Once a publish's first segment is listed, every listener added with
  ``add_listener`` hears ``hls_ready(path, playlist, manifest)`` on the
  reactor thread (paths relative to ``hls_dir``; ``manifest`` is the DASH
  manifest or None): the cloud's hls-ready webhook hangs there.
- With LL-HLS (fmp4 and ``part_s``), every media playlist the worker writes
  is announced on the reactor thread to the watchers added with
  ``add_playlist_watcher``: ``playlist_written(file, position)`` (the file's
  absolute path, ``rtmprelay.hls.playlist.Position``), and
  ``folder_removed(folder)`` when a stream's files go. Blocking playlist
  reloads (``rtmprelay.web.hls``) wait on these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.application import service
from twisted.internet import threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from rtmprelay.errors import ConfigError, MediaError, ParseError
from rtmprelay.hls.playlist import Position
from rtmprelay.hls.segmenter import FlvSegmenter, Segmenter, SegmentSettings
from rtmprelay.hls.encoding import TranscodeSettings
from rtmprelay.hls.worker import DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_FRAMES, StreamWorker
from rtmprelay.media.message import MediaMessage
from rtmprelay.names import StreamName, path_below

__all__ = ["HLS_MODES", "HlsOutput", "HlsSettings"]

HLS_MODES = ("transcode", "copy")
#: With files kept for good, how long a path's worker waits for its publisher to come back.
RECONNECT_GRACE_S = 60.0
#: Seconds between two log lines about the same stream's bad media.
_ERROR_LOG_INTERVAL = 10.0


def _mode(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in HLS_MODES:
        raise ConfigError(f"HLS mode {value!r}: choose one of {', '.join(HLS_MODES)}")


@attrs.frozen
class HlsSettings:
    mode: str = attrs.field(default="transcode", validator=_mode)
    container: str = "mpegts"
    segment_s: float = 2.0
    #: LL-HLS part target (seconds) when the container is fmp4; None: whole segments only.
    part_s: float | None = 0.2
    window: int = 5
    transcode: TranscodeSettings = TranscodeSettings()
    queue_frames: int = DEFAULT_QUEUE_FRAMES
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    #: Seconds after unpublish before the stream's files are removed; None keeps them.
    cleanup_after_s: float | None = 60.0

    def __attrs_post_init__(self) -> None:
        self.segment_settings()  # the segmenter's own checks of container, length and window

    def segment_settings(self) -> SegmentSettings:
        return SegmentSettings(
            container=self.container,
            target_duration_s=self.segment_s,
            window=self.window,
            part_target_s=self.part_s if self.container == "fmp4" else None,
        )

    @property
    def low_latency(self) -> bool:
        return self.segment_settings().part_target_s is not None


#: What a segmenter writes; only these are removed from a folder an earlier run left behind.
_HLS_SUFFIXES = (".ts", ".m4s", ".mp4", ".m3u8", ".mpd", ".tmp")


def _remove_stale_files(folder: Path) -> int:
    """Files of an earlier daemon run in ``folder`` (they would never be cleaned up
    otherwise, and a player must not mix them with the new playlist's)."""
    removed = 0
    if folder.is_dir():
        for file in folder.iterdir():
            if file.suffix in _HLS_SUFFIXES and file.is_file():
                file.unlink(missing_ok=True)
                removed += 1
    return removed


class _PathOutput:
    """One stream path's pipeline and worker; outlives a publish so a reconnect continues."""

    log = Logger()

    def __init__(self, owner: "HlsOutput", path: str, folder: Path) -> None:
        self.owner = owner
        self.path = path
        self.folder = folder
        self._resolved = folder.resolve()  # how the web server names the files
        settings = owner.settings
        segment_settings = settings.segment_settings()
        stale = _remove_stale_files(folder)
        if stale:
            self.log.info("HLS for {path}: removed {count} files an earlier run left in {folder}", path=path, count=stale, folder=str(folder))
        on_playlist = self._playlist_written if segment_settings.part_target_s is not None else None
        if settings.mode == "copy":
            self.pipeline = FlvSegmenter(folder, segment_settings, on_segment=self._segment_closed, on_playlist=on_playlist)
            self.segmenter = self.pipeline
        else:
            from rtmprelay.hls.pipeline import TranscodePipeline  # PyAV: loaded by the first transcode only

            self.segmenter = Segmenter(folder, segment_settings, on_segment=self._segment_closed, on_playlist=on_playlist)
            self.pipeline = TranscodePipeline(self.segmenter, settings.transcode)
        self.worker = StreamWorker(
            self.pipeline,
            name=path,
            max_frames=settings.queue_frames,
            max_bytes=settings.queue_bytes,
            on_media_error=self._media_error,
            on_crash=self._crashed,
        )
        self.generation = 0  # publishes of this path so far, minus one
        self._worker_generation = 0  # the same, as the worker thread has seen it
        self.segments = 0
        self.ready = False
        self.live = True
        self.cleanup = None
        self._last_error_log = float("-inf")

    # -- MediaSink (reactor thread) ----------------------------------------------

    def on_metadata(self, metadata: dict) -> None:
        pass

    def on_media(self, message: MediaMessage) -> None:
        self.worker.push(message)

    def on_stream_end(self) -> None:
        self.live = False
        self.worker.call(self.pipeline.finish)

    def republished(self) -> None:
        self.generation += 1
        self.ready = False
        self.live = True
        self.worker.call(self._reopen, self.generation)

    # -- worker thread -----------------------------------------------------------

    def _reopen(self, generation: int) -> None:
        self._worker_generation = generation
        self.pipeline.reopen()

    def _segment_closed(self, info) -> None:
        self.owner.clock.callFromThread(self._segment_listed, self._worker_generation)

    def _playlist_written(self, name: str, position: Position) -> None:
        self.owner.clock.callFromThread(self.owner.playlist_written, self._resolved / name, position)

    def _media_error(self, error: MediaError) -> None:
        self.owner.clock.callFromThread(self._log_media_error, error)

    def _crashed(self, error: BaseException) -> None:
        self.owner.clock.callFromThread(self._log_crash, error)

    # -- back on the reactor thread ---------------------------------------------

    def _segment_listed(self, generation: int) -> None:
        self.segments += 1
        if generation != self.generation or self.ready:
            return
        self.ready = True
        self.owner.announce_ready(self)

    def _should_log(self) -> bool:
        """At most one line per stream every few seconds: a full disk fails every packet.
        Every error is counted in ``worker.counters.errors`` (``/api/streams``)."""
        now = self.owner.clock.seconds()
        if now - self._last_error_log < _ERROR_LOG_INTERVAL:
            return False
        self._last_error_log = now
        return True

    def _log_media_error(self, error: MediaError) -> None:
        if self._should_log():
            self.log.warn(
                "HLS for {path}: {what} (at {where}); resuming at the next keyframe",
                path=self.path,
                what=error.what,
                where=error.where or "?",
            )

    def _log_crash(self, error: BaseException) -> None:
        if isinstance(error, OSError):
            if self._should_log():  # the disk, not a bug: no traceback
                self.log.error("HLS for {path} cannot write its files: {error}", path=self.path, error=str(error))
        elif self._should_log():
            self.log.failure("HLS pipeline for {path} failed; it goes on with the next message", Failure(error), path=self.path)

    def relative(self, file: Path | None) -> str | None:
        return None if file is None else file.relative_to(self.owner.hls_dir).as_posix()

    def info(self) -> dict:
        counters = attrs.asdict(self.worker.counters)
        transcoder = getattr(self.pipeline, "counters", None)
        return {
            "mode": self.owner.settings.mode,
            "container": self.owner.settings.container,
            "part_s": self.owner.settings.segment_settings().part_target_s,  # LL-HLS part target, or None
            "playlist": self.relative(self.segmenter.playlist_path),
            "manifest": self.relative(self.segmenter.manifest_path),
            "ready": self.ready,
            "segments": self.segments,
            "queue": counters,
            "transcoder": transcoder,
        }


class HlsOutput(service.Service):
    """Registry listener (HLS for every stream that goes live) and the service that
    finishes every pipeline when the daemon stops."""

    log = Logger()

    def __init__(self, hls_dir: Path, settings: HlsSettings = HlsSettings(), clock=None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.hls_dir = Path(hls_dir)
        self.settings = settings
        self.clock = clock
        self._by_path: dict[str, _PathOutput] = {}
        self._listeners: list = []
        self._playlist_watchers: list = []

    def add_listener(self, listener) -> None:
        """``listener.hls_ready(path, playlist, manifest)`` once per publish."""
        self._listeners.append(listener)

    def add_playlist_watcher(self, watcher) -> None:
        """``watcher.playlist_written(file, position)`` for every LL-HLS media playlist
        written, ``watcher.folder_removed(folder)`` when a stream's files are removed."""
        self._playlist_watchers.append(watcher)

    def playlist_written(self, file: Path, position: Position) -> None:
        for watcher in list(self._playlist_watchers):
            watcher.playlist_written(file, position)

    def folder_for(self, path: str) -> Path:
        """The stream's folder: its validated path below the app, checked to stay under ``hls_dir``."""
        return path_below(self.hls_dir, StreamName.from_path(path).path)

    def info(self, path: str) -> dict | None:
        output = self._by_path.get(path)
        return None if output is None else output.info()

    # -- registry listener -------------------------------------------------------

    def stream_started(self, stream) -> None:
        output = self._by_path.get(stream.path)
        if output is None:
            try:
                folder = self.folder_for(stream.path)
            except ParseError as error:
                self.log.error("no HLS for {path}: {error}", path=stream.path, error=str(error))
                return
            other = next((o.path for o in self._by_path.values() if o.folder == folder), None)
            if other is not None:
                # /hls/ names streams below their app: live/u/s and live2/u/s would share files.
                self.log.error(
                    "no HLS for {path}: its folder {folder} belongs to {other}", path=stream.path, folder=str(folder), other=other
                )
                return
            try:
                output = _PathOutput(self, stream.path, folder)
            except OSError as error:
                # HLS is one output among others: the stream goes on to its players and upstream.
                self.log.error("no HLS for {path}: {error}", path=stream.path, error=str(error))
                return
            self._by_path[stream.path] = output
        else:
            # The same path back before its files were removed: one playlist, a discontinuity.
            if output.cleanup is not None and output.cleanup.active():
                output.cleanup.cancel()
            output.cleanup = None
            output.republished()
        stream.attach(output)
        self.log.info(
            "HLS ({mode}, {container}) for {path} in {folder}",
            mode=self.settings.mode,
            container=self.settings.container,
            path=stream.path,
            folder=str(output.folder),
        )

    def stream_ended(self, stream) -> None:
        """The sink finished the playlist itself (on_stream_end); remove the files later.

        Files kept for good (``cleanup_after_s=None``) still free the path's worker
        thread after a grace period for a reconnect, so paths never seen again do
        not each keep a thread."""
        output = self._by_path.get(stream.path)
        if output is None:
            return
        keep = self.settings.cleanup_after_s is None
        delay = RECONNECT_GRACE_S if keep else self.settings.cleanup_after_s
        output.cleanup = self.clock.callLater(delay, self._release, stream.path, not keep)

    def announce_ready(self, output: _PathOutput) -> None:
        playlist = output.relative(output.segmenter.playlist_path)
        manifest = output.relative(output.segmenter.manifest_path)
        self.log.info("HLS for {path} ready: {playlist}", path=output.path, playlist=playlist)
        for listener in list(self._listeners):
            listener.hls_ready(output.path, playlist, manifest)

    def _release(self, path: str, remove_files: bool) -> None:
        output = self._by_path.pop(path, None)
        if output is None:
            return
        if remove_files:
            output.worker.call(output.pipeline.remove_files)
            self.log.info("HLS files of {path} removed", path=path)
            for watcher in list(self._playlist_watchers):
                watcher.folder_removed(output.folder.resolve())
        output.worker.stop()

    # -- service -----------------------------------------------------------------

    def stopService(self):
        """End every playlist and let the workers write what they hold (bounded wait)."""
        super().stopService()
        workers = []
        for output in self._by_path.values():
            if output.cleanup is not None and output.cleanup.active():
                output.cleanup.cancel()
            if output.live:
                output.worker.call(output.pipeline.finish)
            output.worker.stop()
            workers.append(output.worker)
        return threads.deferToThread(lambda: [worker.join(10.0) for worker in workers])
