"""Forwarding: every stream that goes live is published to an upstream URL made
from a template.

Placeholders: ``{app}`` (the first path segment, e.g. ``live``), ``{path}``
(the stream path below the app, e.g. ``user1/stream1``), ``{userId}`` and
``{streamId}`` (the last two segments). ``rtmp://relay/live/u1/s1`` with the
template ``rtmps://live.cloudflare.com:443/live/{streamId}`` goes to
``rtmps://live.cloudflare.com:443/live/s1``.
"""

from __future__ import annotations

import string
from urllib.parse import quote

import attrs
from twisted.logger import Logger

from rtmprelay.errors import ConfigError
from rtmprelay.relay.client import UpstreamConfig, UpstreamForwarder
from rtmprelay.rtmp.session import split_rtmp_url

PLACEHOLDERS = ("app", "path", "userId", "streamId")


@attrs.frozen
class StreamName:
    app: str
    path: str
    user_id: str
    stream_id: str

    @classmethod
    def from_path(cls, full_path: str) -> "StreamName":
        segments = full_path.split("/")
        app, rest = segments[0], segments[1:]
        return cls(
            app=app,
            path="/".join(rest),
            user_id=rest[-2] if len(rest) >= 2 else "",
            stream_id=rest[-1] if rest else "",
        )


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


class Forwarding:
    """A registry listener that starts a forwarder for each stream that goes live."""

    log = Logger()

    def __init__(self, reactor, template: UrlTemplate, config: UpstreamConfig = UpstreamConfig()) -> None:
        self.reactor = reactor
        self.template = template
        self.config = config
        self.forwarders: dict[str, UpstreamForwarder] = {}

    def stream_started(self, stream) -> None:
        url = self.template.render(stream.path)
        forwarder = UpstreamForwarder(self.reactor, stream, url, self.config)
        self.forwarders[stream.path] = forwarder
        stream.attach(forwarder)
        forwarder.start()

    def stream_ended(self, stream) -> None:
        forwarder = self.forwarders.pop(stream.path, None)
        if forwarder is not None:
            forwarder.stop()
