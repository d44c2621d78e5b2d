"""Forwarding: every stream that goes live is published to an upstream URL.

The URL comes from an :class:`UpstreamSource`: ``resolve(path) -> Deferred[str]``.
Two exist: :class:`UrlTemplate` (``--forward``, answers at once) and the cloud
lookup (``rtmprelay.cloud.routing.CloudLookup``, ``--cloud``). A source that
cannot name an upstream fails with :class:`UpstreamUnavailable`, whose message
is what the publisher is told.

``Forwarding.admit`` is the server's admission hook: the publish waits for the
source, is refused when it fails, and the URL it gave travels on the stream
(``LiveStream.admission``) to ``stream_started``.

Template placeholders: ``{app}`` (the first path segment, e.g. ``live``), ``{path}``
(the stream path below the app, e.g. ``user1/stream1``), ``{userId}`` and
``{streamId}`` (the last two segments). ``rtmp://relay/live/u1/s1`` with the
template ``rtmps://live.cloudflare.com:443/live/{streamId}`` goes to
``rtmps://live.cloudflare.com:443/live/s1``.
"""

from __future__ import annotations

import string
from typing import Protocol
from urllib.parse import quote

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rtmprelay.errors import ConfigError, RelayError
from rtmprelay.names import StreamName
from rtmprelay.relay.client import UpstreamConfig, UpstreamForwarder
from rtmprelay.rtmp.session import split_rtmp_url

PLACEHOLDERS = ("app", "path", "userId", "streamId")


class UpstreamUnavailable(RelayError):
    """No upstream URL for a stream; the message is what its publisher is told."""


class UpstreamSource(Protocol):
    """Where a stream's upstream URL comes from."""

    def resolve(self, path: str) -> Deferred[str]:
        """The rtmp:// or rtmps:// URL for the stream at ``path``; fails with UpstreamUnavailable."""
        ...


@attrs.frozen
class UpstreamGrant:
    """What ``Forwarding.admit`` answers: the URL the stream is forwarded to."""

    url: str


@attrs.frozen
class UrlTemplate:
    template: str

    def __attrs_post_init__(self) -> None:
        for _literal, field, _spec, _conv in string.Formatter().parse(self.template):
            if field is not None and field not in PLACEHOLDERS:
                raise ConfigError(f"unknown placeholder {{{field}}} in forward URL {self.template!r}; use {PLACEHOLDERS}")
        try:
            split_rtmp_url(self.render("live/user/stream"))
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def render(self, full_path: str) -> str:
        name = StreamName.from_path(full_path)
        return self.template.format(
            app=quote(name.app, safe=""),
            path=quote(name.path, safe="/"),
            userId=quote(name.user_id, safe=""),
            streamId=quote(name.stream_id, safe=""),
        )

    def resolve(self, path: str) -> Deferred[str]:
        return defer.succeed(self.render(path))


class Forwarding:
    """A registry listener that starts a forwarder for each stream that goes live.

    Given to the server as its admission hook (``admit``), it resolves the
    upstream URL before the publish is accepted; a stream started without it
    (a test, or a registry used directly) is resolved when it starts.
    """

    log = Logger()

    def __init__(self, reactor, source: UpstreamSource, config: UpstreamConfig = UpstreamConfig()) -> None:
        self.reactor = reactor
        self.source = source
        self.config = config
        self.forwarders: dict[str, UpstreamForwarder] = {}
        self._resolving: dict[str, object] = {}  # streams started without a grant, by path

    def admit(self, path: str) -> Deferred[UpstreamGrant]:
        """The server's admission hook: the publish of ``path`` waits for its upstream URL."""
        return self.source.resolve(path).addCallback(UpstreamGrant)

    def stream_started(self, stream) -> None:
        grant = stream.admission
        if isinstance(grant, UpstreamGrant):
            self._forward(stream, grant.url)
            return
        self._resolving[stream.path] = stream
        d = self.source.resolve(stream.path)
        d.addCallbacks(self._resolved_late, self._unresolved, callbackArgs=(stream,), errbackArgs=(stream,))

    def stream_ended(self, stream) -> None:
        if self._resolving.get(stream.path) is stream:
            del self._resolving[stream.path]
        forwarder = self.forwarders.pop(stream.path, None)
        if forwarder is not None:
            forwarder.stop()

    def _forward(self, stream, url: str) -> None:
        forwarder = UpstreamForwarder(self.reactor, stream, url, self.config)
        self.forwarders[stream.path] = forwarder
        stream.attach(forwarder)
        forwarder.start()

    def _resolved_late(self, url: str, stream) -> None:
        if self._resolving.get(stream.path) is not stream:
            return  # it ended meanwhile
        del self._resolving[stream.path]
        self._forward(stream, url)

    def _unresolved(self, failure, stream) -> None:
        if self._resolving.get(stream.path) is stream:
            del self._resolving[stream.path]
        self.log.warn(
            "not forwarding {path}: {why}",
            path=stream.path,
            why=failure.getErrorMessage(),
        )
