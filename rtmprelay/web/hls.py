"""HLS and DASH output files under one directory, for players on other origins.

The layout is ``hls_dir/{userId}/{streamId}/index.m3u8`` plus its segments.
Only files of the media types below are served; directories, hidden files and
anything that resolves outside ``hls_dir`` (``..``, an encoded ``/``, a symlink
pointing out) answer 404, so the response says nothing about what lies beyond.
"""

from __future__ import annotations

from pathlib import Path

import attrs
from twisted.web import pages, resource, static
from twisted.web.server import Request

__all__ = ["FileKind", "HlsResource", "MEDIA_FILES"]

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


class HlsResource(resource.Resource):
    """Serves the files under ``root``; one instance handles every path below it."""

    isLeaf = True

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = Path(root).resolve()

    def locate(self, segments: list[bytes]) -> tuple[Path, FileKind] | None:
        """The file ``segments`` names and how to serve it, or None when it must not be served."""
        names = [_safe_segment(segment) for segment in segments]
        if not names or None in names:
            return None
        kind = MEDIA_FILES.get(Path(names[-1]).suffix.lower())
        if kind is None:
            return None
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
            request.setHeader(b"cache-control", MISSING_CACHE)
            return pages.notFound().render(request)
        path, kind = found
        request.setHeader(b"cache-control", kind.cache_control)
        file = static.File(str(path))
        file.type, file.encoding = kind.content_type, None
        return file.render(request)

    render_HEAD = render_GET

    def render_OPTIONS(self, request: Request) -> bytes:
        """The CORS preflight a browser sends before a ranged or header-carrying GET."""
        _set_headers(request, _CORS_HEADERS)
        _set_headers(request, _PREFLIGHT_HEADERS)
        request.setHeader(b"allow", b"GET, HEAD, OPTIONS")
        request.setResponseCode(204)
        return b""


def _set_headers(request: Request, headers: dict[bytes, bytes]) -> None:
    for name, value in headers.items():
        request.setHeader(name, value)
