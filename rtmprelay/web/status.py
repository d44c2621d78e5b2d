"""The status page at ``/`` and its files at ``/static/``, shipped inside the package.

The page is static: it asks ``/api/streams`` every second and draws the table
itself (``static/status.js``), so there is no template and no build step.
Files are read once, when the site is made, and served by exact name from
memory: nothing on disk is looked up per request, so there is no listing and
no path to traverse. ``static/vendor/`` holds hls.js, shipped with its licence
(see ``static/vendor/README.txt`` for its version and where it came from).
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

import attrs
from twisted.web import pages, resource
from twisted.web.server import Request

__all__ = ["CONTENT_SECURITY_POLICY", "StaticFile", "StaticFiles", "load_static"]

STATIC_ROOT = resources.files("rtmprelay.web") / "static"
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
#: The page runs only its own scripts, talks only to this relay, and plays HLS
#: through Media Source Extensions, whose media and worker URLs are blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@attrs.frozen
class StaticFile:
    body: bytes
    content_type: str


def load_static(root: Traversable = STATIC_ROOT) -> dict[str, StaticFile]:
    """Every servable file below ``root`` by its relative path (``vendor/hls.light.min.js``)."""
    files: dict[str, StaticFile] = {}
    pending = [("", root)]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((f"{prefix}{entry.name}/", entry))
                continue
            suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
            if suffix in _CONTENT_TYPES and not entry.name.startswith("."):
                files[prefix + entry.name] = StaticFile(entry.read_bytes(), _CONTENT_TYPES[suffix])
    return files


class StaticFileResource(resource.Resource):
    """One file; revalidated on every load (``no-cache``) so an upgraded relay serves its new page."""

    isLeaf = True

    def __init__(self, file: StaticFile) -> None:
        super().__init__()
        self.file = file

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.file.content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if self.file.content_type.startswith("text/html"):
            request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii"))
            request.setHeader(b"referrer-policy", b"no-referrer")
        return self.file.body


class StaticFiles(resource.Resource):
    """``/static/<relative path>``: only the files :func:`load_static` found; 404 for anything else."""

    def __init__(self, files: dict[str, StaticFile]) -> None:
        super().__init__()
        self._files = {name: StaticFileResource(file) for name, file in files.items()}

    def getChild(self, path: bytes, request: Request) -> resource.IResource:
        parts = [path, *request.postpath]
        request.postpath = []
        try:
            name = b"/".join(parts).decode("ascii")
        except UnicodeDecodeError:
            return pages.notFound()
        return self._files.get(name) or pages.notFound()

    def render(self, request: Request) -> bytes:
        return pages.notFound().render(request)
