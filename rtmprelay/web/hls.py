"""HLS and DASH output files under one directory, for players on other origins.

The layout is ``hls_dir/{userId}/{streamId}/index.m3u8`` plus its segments.
Only files of the media types below are served; directories, hidden files and
anything that resolves outside ``hls_dir`` (``..``, an encoded ``/``, a symlink
pointing out) answer 404, so the response says nothing about what lies beyond.

Blocking playlist reloads (LL-HLS, draft-pantos-hls-rfc8216bis 6.2.5.2): a
media playlist asked for with ``_HLS_msn=M`` (and ``_HLS_part=N``) is answered
once it holds segment M, or part N of segment M, or something later.
``BlockingReloads`` knows each LL-HLS playlist's ``Position`` from the HLS
output (told on the reactor thread after the file is written, so the file
read then is at least that new) and holds the requests that ask for more as
Deferreds, no thread each:

- at most ``max_held`` requests are held at once; one more is answered 503
  with ``Retry-After`` at once;
- a held request is answered 503 when its part has not come within three
  target durations (the spec's bound), and 404 if the stream's files go;
- a request for a segment more than two past the last one, or a part further
  ahead than the advance part limit, is answered 400 at once, as is
  ``_HLS_part`` without ``_HLS_msn`` or a value that is not a whole number;
- a client that goes away releases its place; directives on a playlist that
  has no parts (MPEG-TS, a stream not live) are ignored.

A request for the part a playlist's ``EXT-X-PRELOAD-HINT`` names, before it
is written, is held the same way (4.4.5.3: a client may ask for it at once and
the server answers when it can) and answered with the part as soon as the
playlist moves on; any other missing file is 404 at once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import pages, resource, server, static
from twisted.web.server import Request

from rtmprelay.hls.playlist import Position

__all__ = ["BlockingReloads", "FileKind", "HlsResource", "MAX_HELD_RELOADS", "MEDIA_FILES"]

#: Blocking reloads held at once, every stream together (each holds a connection open).
MAX_HELD_RELOADS = 500
#: The spec's bound on holding a blocking reload, in target durations.
HOLD_TARGET_DURATIONS = 3

#: Playlists and manifests are rewritten as segments arrive: revalidate each time.
LIVE_CACHE = b"no-cache"
#: A segment never changes once a playlist lists it.
SEGMENT_CACHE = b"public, max-age=3600"
#: A file not written yet may be there a moment later: never cache the 404.
MISSING_CACHE = b"no-store"


@attrs.frozen
class FileKind:
    content_type: str
    cache_control: bytes


MEDIA_FILES: dict[str, FileKind] = {
    ".m3u8": FileKind("application/vnd.apple.mpegurl", LIVE_CACHE),
    ".mpd": FileKind("application/dash+xml", LIVE_CACHE),
    ".ts": FileKind("video/mp2t", SEGMENT_CACHE),
    ".m4s": FileKind("video/iso.segment", SEGMENT_CACHE),
    ".mp4": FileKind("video/mp4", SEGMENT_CACHE),
}

_CORS_HEADERS = {
    b"access-control-allow-origin": b"*",
    b"access-control-expose-headers": b"Content-Length, Content-Range, Accept-Ranges",
}
_PREFLIGHT_HEADERS = {
    b"access-control-allow-methods": b"GET, HEAD, OPTIONS",
    b"access-control-allow-headers": b"Range, If-Modified-Since, Cache-Control",
    b"access-control-max-age": b"86400",
}


def _safe_segment(segment: bytes) -> str | None:
    """One decoded path segment as text, or None if it could name anything but a plain child."""
    try:
        name = segment.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not name or name.startswith(".") or any(c in name for c in "/\\\x00"):
        return None
    return name


@attrs.define(eq=False)
class _Held:
    msn: int
    part: int | None
    deferred: defer.Deferred
    timeout: object = None  # the IDelayedCall that answers 503
    hinted: Path | None = None  # waits for this preload-hinted part, not for the playlist

    def ready(self, file: Path, position: Position) -> bool:
        if self.hinted is None:
            return position.has(self.msn, self.part)
        # the hint moved on: the part it named is written (or will never be)
        return position.preload_hint is None or file.parent / position.preload_hint != self.hinted


class BlockingReloads:
    """The LL-HLS playlists' positions and the reloads waiting on them (see the module doc).

    ``playlist_written`` and ``folder_removed`` are the ``HlsOutput`` playlist
    watcher's calls; ``hold`` (a playlist) and ``hold_hinted`` (a
    preload-hinted part) give a Deferred that fires True when the request can
    be answered, False on timeout, None when the stream's files went away."""

    def __init__(self, clock: IReactorTime, max_held: int = MAX_HELD_RELOADS) -> None:
        if max_held < 1:
            raise ValueError(f"max_held must be positive, not {max_held!r}")
        self.clock = clock
        self.max_held = max_held
        self.held = 0
        #: answered (the part came), timed_out, refused_busy, too_far, bad_request, gone
        self.counters: Counter[str] = Counter()
        self._positions: dict[Path, Position] = {}
        self._waiting: dict[Path, list[_Held]] = {}
        self._hints: dict[Path, Path] = {}  # a preload-hinted part -> its playlist

    def position(self, file: Path) -> Position | None:
        return self._positions.get(file)

    def playlist_written(self, file: Path, position: Position) -> None:
        before = self._positions.get(file)
        if before is not None and before.preload_hint is not None:
            self._hints.pop(file.parent / before.preload_hint, None)
        if position.preload_hint is not None:
            self._hints[file.parent / position.preload_hint] = file
        self._positions[file] = position
        waiting = self._waiting.get(file)
        if not waiting:
            return
        ready = [held for held in waiting if held.ready(file, position)]
        for held in ready:
            self.counters["answered"] += 1
            self._release(file, held, True)

    def folder_removed(self, folder: Path) -> None:
        for part in [p for p in self._hints if p.parent == folder]:
            del self._hints[part]
        for file in [f for f in self._positions if f.parent == folder]:
            del self._positions[file]
            for held in list(self._waiting.get(file, ())):
                self.counters["gone"] += 1
                self._release(file, held, None)

    def hinted(self, part: Path) -> bool:
        """Whether ``part`` is what a playlist's preload hint names now."""
        return part in self._hints

    def hold_hinted(self, part: Path) -> defer.Deferred | None:
        """A Deferred for a request of the preload-hinted ``part``; None when full."""
        return self.hold(self._hints[part], -1, None, hinted=part)

    def hold(self, file: Path, msn: int, part: int | None, *, hinted: Path | None = None) -> defer.Deferred | None:
        """A Deferred for the request, or None when ``max_held`` are held already."""
        if self.held >= self.max_held:
            self.counters["refused_busy"] += 1
            return None
        held = _Held(msn, part, defer.Deferred(lambda _: self._cancelled(file, held)), hinted=hinted)
        position = self._positions[file]
        held.timeout = self.clock.callLater(
            HOLD_TARGET_DURATIONS * position.target_duration_s, self._timed_out, file, held
        )
        self._waiting.setdefault(file, []).append(held)
        self.held += 1
        return held.deferred

    def _timed_out(self, file: Path, held: _Held) -> None:
        held.timeout = None
        self.counters["timed_out"] += 1
        self._release(file, held, False)

    def _cancelled(self, file: Path, held: _Held) -> None:
        self._forget(file, held)

    def _release(self, file: Path, held: _Held, outcome: bool | None) -> None:
        self._forget(file, held)
        held.deferred.callback(outcome)

    def _forget(self, file: Path, held: _Held) -> None:
        waiting = self._waiting.get(file, [])
        if held not in waiting:
            return
        waiting.remove(held)
        if not waiting:
            del self._waiting[file]
        self.held -= 1
        if held.timeout is not None and held.timeout.active():
            held.timeout.cancel()
        held.timeout = None


def _named_media(segments: list[bytes]) -> tuple[list[str], FileKind] | None:
    """The path segments as plain names and the media kind of the last, or None."""
    names = [_safe_segment(segment) for segment in segments]
    if not names or None in names:
        return None
    kind = MEDIA_FILES.get(Path(names[-1]).suffix.lower())
    return None if kind is None else (names, kind)


def _directive(request: Request, name: bytes) -> int | None:
    """A delivery directive's value; ValueError when it is not one whole number >= 0."""
    values = request.args.get(name)
    if values is None:
        return None
    if len(values) != 1 or not values[0].isdigit() or len(values[0]) > 18:
        raise ValueError(name)
    return int(values[0])


class HlsResource(resource.Resource):
    """Serves the files under ``root``; one instance handles every path below it.
    With ``reloads``, LL-HLS playlists answer blocking reloads (see the module doc)."""

    isLeaf = True
    log = Logger()

    def __init__(self, root: Path, reloads: BlockingReloads | None = None) -> None:
        super().__init__()
        self._root = Path(root).resolve()
        self.reloads = reloads

    def locate(self, segments: list[bytes]) -> tuple[Path, FileKind] | None:
        """The file ``segments`` names and how to serve it, or None when it must not be served."""
        named = _named_media(segments)
        if named is None:
            return None
        names, kind = named
        try:
            path = self._root.joinpath(*names).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            return None
        if not path.is_relative_to(self._root) or not path.is_file():
            return None
        return path, kind

    def render_GET(self, request: Request) -> bytes | int:
        _set_headers(request, _CORS_HEADERS)
        found = self.locate(request.postpath)
        if found is None:
            hinted = self._hinted_part(request.postpath)
            if hinted is not None:
                request.setHeader(b"cache-control", hinted[1].cache_control)
                return self._hold(request, self.reloads.hold_hinted(hinted[0]), *hinted)
            request.setHeader(b"cache-control", MISSING_CACHE)
            return pages.notFound().render(request)
        path, kind = found
        request.setHeader(b"cache-control", kind.cache_control)
        if self.reloads is not None and (b"_HLS_msn" in request.args or b"_HLS_part" in request.args):
            blocked = self._blocking_reload(request, path, kind)
            if blocked is not None:
                return blocked
        return _serve(request, path, kind)

    def _blocking_reload(self, request: Request, path: Path, kind: FileKind) -> bytes | int | None:
        """Hold or refuse a reload with delivery directives; None: answer it now."""
        reloads = self.reloads
        position = reloads.position(path)
        if position is None:
            return None  # not an LL-HLS playlist: the directives mean nothing here
        try:
            msn = _directive(request, b"_HLS_msn")
            part = _directive(request, b"_HLS_part")
        except ValueError:
            msn = None
        if msn is None:
            reloads.counters["bad_request"] += 1
            return _refuse(request, 400, b"_HLS_msn must be one whole number, given with any _HLS_part\n")
        if position.has(msn, part):
            return None
        if position.too_far(msn, part):
            reloads.counters["too_far"] += 1
            return _refuse(request, 400, b"the segment or part asked for is too far ahead\n")
        return self._hold(request, reloads.hold(path, msn, part), path, kind)

    def _hinted_part(self, segments: list[bytes]) -> tuple[Path, FileKind] | None:
        """The missing file ``segments`` name, if it is a part a preload hint names now."""
        named = None if self.reloads is None else _named_media(segments)
        if named is None:
            return None
        names, kind = named
        try:
            folder = self._root.joinpath(*names[:-1]).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        part = folder / names[-1]
        if not folder.is_relative_to(self._root) or not self.reloads.hinted(part):
            return None
        return part, kind

    def _hold(self, request: Request, waiting: defer.Deferred | None, path: Path, kind: FileKind) -> bytes | int:
        """Answer with ``path`` when ``waiting`` fires (see ``BlockingReloads``)."""
        if waiting is None:
            request.setHeader(b"retry-after", b"1")
            return _refuse(request, 503, b"too many blocking requests held\n")
        request.notifyFinish().addErrback(lambda _: waiting.cancel())

        def answer(outcome: bool | None) -> None:
            if request.finished or request._disconnected:
                return
            data = None
            if outcome:
                try:
                    data = path.read_bytes()
                except OSError:
                    pass
            if data is not None:
                request.setHeader(b"content-type", kind.content_type.encode())
                request.setHeader(b"content-length", str(len(data)).encode())
            elif outcome is False:
                data = _refuse(request, 503, b"the part asked for did not come in time\n")
            else:  # the stream's files went
                request.setHeader(b"cache-control", MISSING_CACHE)
                pages.notFound().render(request)  # writes and finishes the request itself
                return
            request.write(data)
            request.finish()

        waiting.addCallback(answer)
        waiting.addErrback(lambda failure: failure.trap(defer.CancelledError))
        return server.NOT_DONE_YET

    render_HEAD = render_GET

    def render_OPTIONS(self, request: Request) -> bytes:
        """The CORS preflight a browser sends before a ranged or header-carrying GET."""
        _set_headers(request, _CORS_HEADERS)
        _set_headers(request, _PREFLIGHT_HEADERS)
        request.setHeader(b"allow", b"GET, HEAD, OPTIONS")
        request.setResponseCode(204)
        return b""


def _serve(request: Request, path: Path, kind: FileKind) -> bytes | int:
    file = static.File(str(path))
    file.type, file.encoding = kind.content_type, None
    return file.render(request)


def _refuse(request: Request, code: int, body: bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"cache-control", MISSING_CACHE)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return body


def _set_headers(request: Request, headers: dict[bytes, bytes]) -> None:
    for name, value in headers.items():
        request.setHeader(name, value)
