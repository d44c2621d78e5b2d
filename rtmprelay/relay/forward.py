"""Forwarding: every stream that goes live is published to its destinations.

The destinations come from an :class:`UpstreamSource`: ``resolve(path) ->
Deferred`` of one URL, one :class:`Destination` or a list of them. Two exist:
:class:`ForwardTemplates` (``--forward``, repeatable, answers at once) and the
cloud lookup (``rtmprelay.cloud.routing.CloudLookup``, ``--cloud``). A source
that cannot name an upstream fails with :class:`UpstreamUnavailable`, whose
message is what the publisher is told.

``Forwarding.admit`` is the server's admission hook: the publish waits for the
source, is refused when it fails, and the destinations it gave travel on the
stream (``LiveStream.admission``, an :class:`UpstreamGrant`) to
``stream_started``. Each destination gets its own ``UpstreamForwarder``: its own
connection, queue, reconnection, keyframe spacing and state, so one failing
destination never touches the others or the ingest (as nginx-rtmp's ``push``
lines and Cloudflare's simulcast outputs behave).

A ``--forward`` is a URL template, then optionally options as librtmp takes
them after a URL: ``rtmp://host/live/{path} app=live profile=youtube``.
Placeholders: ``{app}`` (the first path segment, e.g. ``live``), ``{path}``
(the stream path below the app, e.g. ``user1/stream1``), ``{userId}`` and
``{streamId}`` (the last two segments). ``rtmp://relay/live/u1/s1`` with
``rtmps://live.cloudflare.com:443/live/{streamId}`` goes to application ``live``,
stream ``s1``; with ``rtmp://nginx/live/{path}`` to application ``live``, stream
``u1/s1`` (see ``upstream`` for how a URL is split, and ``app=``). ``profile=``
names the destination profile whose keyframe spacing this destination gets.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rtmprelay.errors import ConfigError, RelayError
from rtmprelay.media.profiles import get_profile
from rtmprelay.names import StreamName, check_url_template
from rtmprelay.relay.client import UpstreamConfig, UpstreamForwarder
from rtmprelay.relay.upstream import Destination

#: What may follow the URL in a --forward.
FORWARD_OPTIONS = ("app", "profile")


class UpstreamUnavailable(RelayError):
    """No upstream URL for a stream; the message is what its publisher is told."""


class UpstreamSource(Protocol):
    """Where a stream's destinations come from."""

    def resolve(self, path: str) -> Deferred:
        """The URL, Destination or list of them for the stream at ``path``; fails with UpstreamUnavailable."""
        ...


def destinations_of(answer) -> tuple[Destination, ...]:
    """What a source answered as destinations: a URL, a Destination, or a sequence of them."""
    if isinstance(answer, (str, Destination)):
        answer = (answer,)
    return tuple(item if isinstance(item, Destination) else Destination(item) for item in answer)


@attrs.frozen
class UpstreamGrant:
    """What ``Forwarding.admit`` answers: where the stream is forwarded."""

    destinations: tuple[Destination, ...] = attrs.field(converter=destinations_of)

    @property
    def url(self) -> str:
        return self.destinations[0].url


@attrs.frozen
class UrlTemplate:
    template: str

    def __attrs_post_init__(self) -> None:
        check_url_template(self.template)
        Destination(self.render("live/user/stream"))  # an URL that cannot be published to fails here

    def render(self, full_path: str) -> str:
        return StreamName.from_path(full_path).fill(self.template)

    def resolve(self, path: str) -> Deferred[str]:
        return defer.succeed(self.render(path))


@attrs.frozen
class ForwardTemplate:
    """One ``--forward``: a URL template and its options (``app=``, ``profile=``)."""

    template: UrlTemplate
    app: str | None = None
    profile: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.profile is not None:
            get_profile(self.profile)  # ConfigError naming the known ones
        self.destination("live/user/stream")

    @classmethod
    def parse(cls, spec: str) -> "ForwardTemplate":
        words = spec.split()
        if not words:
            raise ConfigError("--forward needs a URL")
        url, words = words[0], words[1:]
        options: dict[str, str] = {}
        for word in words:
            key, equals, value = word.partition("=")
            if not equals or key not in FORWARD_OPTIONS or not value:
                raise ConfigError(f"--forward option {word!r} is not one of {', '.join(k + '=...' for k in FORWARD_OPTIONS)}")
            options[key] = value
        return cls(UrlTemplate(url), **options)

    def destination(self, path: str) -> Destination:
        return Destination(self.template.render(path), app=self.app, profile=self.profile)


@attrs.frozen
class ForwardTemplates:
    """Every ``--forward``: the source that gives each stream one destination per template."""

    templates: tuple[ForwardTemplate, ...] = attrs.field(converter=tuple)

    def resolve(self, path: str) -> Deferred[list[Destination]]:
        return defer.succeed([template.destination(path) for template in self.templates])


class Forwarding:
    """A registry listener that starts a forwarder per destination for each stream that goes live.

    Given to the server as its admission hook (``admit``), it resolves the
    destinations before the publish is accepted; a stream started without it
    (a test, or a registry used directly) is resolved when it starts.

    Keyframe spacing: a stream is cleaned once, for the laxest minimum keyframe
    interval any destination wants; each destination's forwarder relabels the
    keyframes its own profile (or, without one, ``min_keyframe_interval_s``,
    the relay's) finds too close.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        source: UpstreamSource,
        config: UpstreamConfig = UpstreamConfig(),
        *,
        min_keyframe_interval_s: float | None = None,
        connect=None,
    ) -> None:
        self.reactor = reactor
        self.source = source
        self.config = config
        self.min_keyframe_interval_s = min_keyframe_interval_s
        self._connect = connect  # how forwarders connect (default: real endpoints); tests hand in their own
        self.forwarders: dict[str, list[UpstreamForwarder]] = {}
        self._resolving: dict[str, object] = {}  # streams started without a grant, by path
        self._closing: list[Deferred] = []

    def admit(self, path: str) -> Deferred[UpstreamGrant]:
        """The server's admission hook: the publish of ``path`` waits for its destinations."""
        return self.source.resolve(path).addCallback(UpstreamGrant)

    def stream_started(self, stream) -> None:
        grant = stream.admission
        if isinstance(grant, UpstreamGrant):
            self._forward(stream, grant.destinations)
            return
        self._resolving[stream.path] = stream
        d = self.source.resolve(stream.path)
        d.addCallbacks(self._resolved_late, self._unresolved, callbackArgs=(stream,), errbackArgs=(stream,))

    def stream_ended(self, stream) -> None:
        if self._resolving.get(stream.path) is stream:
            del self._resolving[stream.path]
        for forwarder in self.forwarders.pop(stream.path, []):
            forwarder.stop()
            wait_closed = getattr(forwarder, "wait_closed", None)
            if wait_closed is not None:
                d = wait_closed()
                if not d.called:
                    self._closing.append(d)
                    d.addBoth(self._closed, d)

    def wait_closed(self) -> Deferred:
        """Fires when every upstream connection of a stopped forwarder has closed."""
        return defer.DeferredList(list(self._closing), consumeErrors=True)

    def forwarders_of(self, path: str) -> list[UpstreamForwarder]:
        return list(self.forwarders.get(path, ()))

    def _closed(self, _result, d: Deferred) -> None:
        if d in self._closing:
            self._closing.remove(d)

    def _forward(self, stream, destinations: tuple[Destination, ...]) -> None:
        forwarders = self.forwarders.setdefault(stream.path, [])
        for destination in destinations:
            options = {"min_keyframe_interval_s": self._spacing(stream, destination)}
            if self._connect is not None:
                options["connect"] = self._connect
            forwarder = UpstreamForwarder(self.reactor, stream, destination, self.config, **options)
            forwarders.append(forwarder)
            stream.attach(forwarder)
            forwarder.start()

    def _spacing(self, stream, destination: Destination) -> float | None:
        """The keyframe interval this destination needs beyond what the stream is cleaned for."""
        cleaner = getattr(stream, "cleaner", None)
        if cleaner is None:
            return None  # --no-clean: streams go through untouched
        if destination.profile is not None:
            wanted = get_profile(destination.profile).min_keyframe_interval_s
        else:
            wanted = self.min_keyframe_interval_s
        if wanted is None or wanted <= cleaner.config.min_keyframe_interval_s:
            return None
        return wanted

    def _resolved_late(self, answer, stream) -> None:
        if self._resolving.get(stream.path) is not stream:
            return  # it ended meanwhile
        del self._resolving[stream.path]
        self._forward(stream, destinations_of(answer))

    def _unresolved(self, failure, stream) -> None:
        if self._resolving.get(stream.path) is stream:
            del self._resolving[stream.path]
        self.log.warn(
            "not forwarding {path}: {why}",
            path=stream.path,
            why=failure.getErrorMessage(),
        )
