"""Stream names: the one grammar a stream path must match, checked once where it enters.

A stream is known by its path, ``app/element/.../name``: the old cloud's
``live/{userId}/{streamId}`` (user ids had their ``@`` replaced before they
reached RTMP), however the client splits it between the RTMP app and the stream
name (see :func:`parse_stream_path`). The grammar:

* elements of ``[A-Za-z0-9._-]``, 1 to :data:`MAX_ELEMENT_LENGTH` characters
  each, none of them ``.`` or ``..``;
* at least 2 elements (an app and a name), at most :data:`MAX_DEPTH`;
* at most :data:`MAX_PATH_LENGTH` characters in all;
* empty elements (``live//user1/``) are dropped, as ffmpeg's and librtmp's URL
  splitting produces them;
* a query string (``?token=...``) on the app or on the name is not part of the
  path; it is returned apart, parsed, for authorization;
* nothing is percent-decoded: ``%`` is simply not a name character, so
  ``%2e%2e`` is refused, never turned into ``..``.

Every file name the relay builds (the HLS folder of a stream) comes from a
path that passed this check, and :func:`path_below` checks again that the
result stays under its root. Names that fail are refused with a reason that is
safe to log and to send back (:func:`printable` escapes what a peer sent).

A name also shows in URLs, both ways: :meth:`StreamName.fill` puts its parts
into a URL template (``rtmp://up/live/{path}``: the ``--forward`` destinations,
checked by :func:`check_url_template`), and :func:`mask_url` hides the stream
key of a URL for logs and the API (:func:`shown_url` the token a webhook URL may
carry).
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, quote, urlsplit, urlunsplit

import attrs

from rtmprelay.errors import ConfigError, ParseError

__all__ = [
    "MAX_DEPTH",
    "MAX_ELEMENT_LENGTH",
    "MAX_PATH_LENGTH",
    "URL_PLACEHOLDERS",
    "BadStreamName",
    "StreamName",
    "check_url_template",
    "mask_url",
    "parse_stream_path",
    "path_below",
    "printable",
    "shown_url",
]

MAX_ELEMENT_LENGTH = 128
MAX_DEPTH = 8
MAX_PATH_LENGTH = 255
#: Query strings are only read for a few short parameters (exp, sig, token).
MAX_QUERY_LENGTH = 2048
_ELEMENT = re.compile(r"[A-Za-z0-9._-]+")
_PRINTABLE_LIMIT = 80
#: What a URL template may name: the parts of a stream name (see :meth:`StreamName.fill`).
URL_PLACEHOLDERS = ("app", "path", "userId", "streamId")


class BadStreamName(ParseError):
    """A stream path that does not match the grammar; the message says why and is safe to log."""


def printable(value: object, limit: int = _PRINTABLE_LIMIT) -> str:
    """``value`` as a short, quoted, escaped string for a log line: no control bytes, bounded length."""
    text = value if isinstance(value, str) else str(value)
    shown = ascii(text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"


@attrs.frozen
class StreamName:
    """A validated stream path and its parts: ``live/u1/s1`` is app ``live``, path ``u1/s1``,
    user ``u1``, stream ``s1`` (user is empty for a two-element path)."""

    app: str
    path: str
    user_id: str
    stream_id: str

    @property
    def full(self) -> str:
        return f"{self.app}/{self.path}"

    @classmethod
    def from_path(cls, full_path: str) -> "StreamName":
        """The parts of a stream path; raises :class:`BadStreamName` if it breaks the grammar."""
        return cls._from_elements(_elements(full_path, "stream path"))

    @classmethod
    def _from_elements(cls, elements: list[str]) -> "StreamName":
        app, rest = elements[0], elements[1:]
        return cls(app=app, path="/".join(rest), user_id=rest[-2] if len(rest) >= 2 else "", stream_id=rest[-1])

    def fill(self, template: str) -> str:
        """``template`` with ``{app}``, ``{path}``, ``{userId}`` and ``{streamId}`` replaced by
        this name's parts, URL-quoted (``/`` kept in the path): ``rtmp://up/live/{path}`` for
        ``live/u1/s1`` is ``rtmp://up/live/u1/s1``. See :func:`check_url_template`."""
        return template.format(
            app=quote(self.app, safe=""),
            path=quote(self.path, safe="/"),
            userId=quote(self.user_id, safe=""),
            streamId=quote(self.stream_id, safe=""),
        )


def parse_stream_path(app: str, name: str) -> tuple[StreamName, dict[str, str]]:
    """The stream a client means by ``app`` (from connect) and ``name`` (from publish/play),
    and the parameters of their query strings (the name's win over the app's).

    ffmpeg and librtmp put everything but the last URL segment into the app
    (``live/user1`` + ``stream1``); some Android libraries keep the app to one
    segment (``live`` + ``user1/stream1``): both give ``live/user1/stream1``.
    Raises :class:`BadStreamName` naming what was wrong.
    """
    app_part, app_query = _split_query(app, "app")
    name_part, name_query = _split_query(name, "stream name")
    if not name_part.strip("/"):
        raise BadStreamName("no stream name given", where="stream name")
    stream = StreamName._from_elements(_elements(f"{app_part}/{name_part}", "stream path"))
    query = dict(_parse_query(app_query))
    query.update(_parse_query(name_query))
    return stream, query


def path_below(root: Path, relative: str) -> Path:
    """``root / relative`` for a validated relative path, refusing anything that would leave ``root``
    (an absolute path, ``..``, a symlink pointing out)."""
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if relative.startswith("/") or not target.is_relative_to(base) or target == base:
        raise BadStreamName(f"{printable(relative)} is not a folder below {base}", where="file path")
    return Path(root) / relative


def check_url_template(template: str) -> None:
    """Raise ``ConfigError`` for a placeholder of ``template`` that is not in :data:`URL_PLACEHOLDERS`
    (the template masked in the message, as it may hold a stream key)."""
    for _literal, field, _spec, _conversion in string.Formatter().parse(template):
        if field is not None and field not in URL_PLACEHOLDERS:
            raise ConfigError(
                f"unknown placeholder {{{field}}} in forward URL {mask_url(template)}; use {URL_PLACEHOLDERS}"
            )


def mask_url(url: str) -> str:
    """An RTMP URL with its stream key (the last path element, and any query) masked for logs and APIs.

    ``rtmps://live.cloudflare.com:443/live/abcdef0123456789`` becomes
    ``rtmps://live.cloudflare.com:443/live/abcd…``; user info is dropped.
    """
    split = _split_without_user_info(url)
    if split is None:
        return "(unparsable URL)"
    parts, netloc = split
    path = parts.path
    head, _, key = path.rpartition("/")
    if key:
        path = f"{head}/{key[:4]}…" if len(key) > 4 else f"{head}/…"
    return urlunsplit((parts.scheme, netloc, path, "…" if parts.query else "", ""))


def shown_url(url: str) -> str:
    """A URL whose path is no secret (a webhook's) for a log line: user info, query and
    fragment dropped, as either may hold a token."""
    split = _split_without_user_info(url)
    if split is None:
        return "(unparsable URL)"
    parts, netloc = split
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- helpers ----------------------------------------------------------------------------


def _split_without_user_info(url: str) -> tuple[SplitResult, str] | None:
    """The URL's parts and its ``host[:port]``; None when it cannot be read."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return None
    return parts, netloc


def _split_query(value: str, what: str) -> tuple[str, str]:
    if not isinstance(value, str):
        raise BadStreamName(f"{what} is not a string", where=what)
    part, _, query = value.partition("?")
    if len(query) > MAX_QUERY_LENGTH:
        raise BadStreamName(f"query string of {len(query)} characters (at most {MAX_QUERY_LENGTH})", where=what)
    return part, query


def _parse_query(query: str) -> list[tuple[str, str]]:
    if not query:
        return []
    try:
        return parse_qsl(query, keep_blank_values=True, max_num_fields=32)
    except ValueError as error:
        raise BadStreamName(f"unreadable query string: {error}", where="query string") from None


def _elements(path: str, where: str) -> list[str]:
    if len(path) > MAX_PATH_LENGTH + 2:  # room for the slashes that are dropped
        raise BadStreamName(f"stream path of {len(path)} characters (at most {MAX_PATH_LENGTH})", where=where)
    elements = [element for element in path.split("/") if element]
    joined = "/".join(elements)
    if len(joined) > MAX_PATH_LENGTH:
        raise BadStreamName(f"stream path of {len(joined)} characters (at most {MAX_PATH_LENGTH})", where=where)
    if len(elements) < 2:
        raise BadStreamName(f"stream path {printable(joined)} needs an app and a name", where=where)
    if len(elements) > MAX_DEPTH:
        raise BadStreamName(f"stream path of {len(elements)} elements (at most {MAX_DEPTH})", where=where)
    for index, element in enumerate(elements):
        if not _ELEMENT.fullmatch(element):
            bad = next(ch for ch in element if not _ELEMENT.fullmatch(ch))
            raise BadStreamName(
                f"element {printable(element)} has the character {ascii(bad)}; names take A-Z a-z 0-9 . _ -",
                where=f"{where} element {index + 1}",
            )
        if element in (".", ".."):
            raise BadStreamName(f"element {element!r} is not a name", where=f"{where} element {index + 1}")
        if len(element) > MAX_ELEMENT_LENGTH:
            raise BadStreamName(
                f"element of {len(element)} characters (at most {MAX_ELEMENT_LENGTH})", where=f"{where} element {index + 1}"
            )
    return elements
