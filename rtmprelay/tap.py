"""twistd plugin options and service, and the ``rtmprelay`` console script."""

from __future__ import annotations

import sys

from twisted.application import service, strports
from twisted.python import usage

from rtmprelay.errors import ConfigError
from rtmprelay.relay.client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_UPSTREAM_QUEUE_BYTES, UpstreamConfig
from rtmprelay.relay.forward import Forwarding, UrlTemplate
from rtmprelay.relay.registry import DEFAULT_GOP_CACHE_BYTES, StreamRegistry
from rtmprelay.relay.server import DEFAULT_HANDSHAKE_TIMEOUT, RTMPServerFactory, ServerConfig
from rtmprelay.rtmp.connection import DEFAULT_MAX_MESSAGE_SIZE, ConnectionConfig

DEFAULT_RTMP_ENDPOINT = "tcp:1935"


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"{value} is not a positive whole number")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"{value} is not a positive number")
    return number


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "An RTMP relay. It accepts publishes on the RTMP endpoints, serves them to "
        "players (rtmp://HOST/APP/PATH), and with --forward publishes every stream "
        "to an upstream rtmp:// or rtmps:// URL made from a template. Endpoints are "
        "Twisted endpoint strings: tcp:1935, tcp:1935:interface=127.0.0.1, "
        "ssl:1936:privateKey=key.pem:certKey=cert.pem (RTMPS ingest)."
    )
    optParameters = [
        ["forward", "f", None,
         "Forward every stream to this URL template; placeholders {app}, {path} "
         "(stream path below the app), {userId}, {streamId}. "
         "E.g. 'rtmps://live.cloudflare.com:443/live/{streamId}'."],
        ["upstream-ca", None, None, "PEM file of the CA that signs upstream certificates (default: the system's trust store)."],
        ["upstream-timeout", None, DEFAULT_CONNECT_TIMEOUT, "Seconds to wait for an upstream TCP/TLS connection.", _positive_float],
        ["upstream-queue-bytes", None, DEFAULT_UPSTREAM_QUEUE_BYTES,
         "Bound on media held for one upstream that is connecting or slow.", _positive_int],
        ["max-message-size", None, DEFAULT_MAX_MESSAGE_SIZE, "Largest RTMP message accepted, in bytes.", _positive_int],
        ["handshake-timeout", None, DEFAULT_HANDSHAKE_TIMEOUT, "Seconds a client has to finish the handshake.", _positive_float],
        ["gop-cache-bytes", None, DEFAULT_GOP_CACHE_BYTES,
         "Bound on the frames kept since the last keyframe for players that join late.", _positive_int],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["rtmp"] = []

    def opt_rtmp(self, endpoint: str) -> None:
        """RTMP listen endpoint (repeatable). Default: tcp:1935."""
        self["rtmp"].append(endpoint)

    def postOptions(self) -> None:
        if not self["rtmp"]:
            self["rtmp"] = [DEFAULT_RTMP_ENDPOINT]
        if self["forward"]:
            try:
                self["forward"] = UrlTemplate(self["forward"])
            except ConfigError as error:
                raise usage.UsageError(str(error)) from None


def makeService(options: Options) -> service.MultiService:
    from twisted.internet import reactor

    top = service.MultiService()
    registry = StreamRegistry(gop_cache_bytes=options["gop-cache-bytes"])
    if options["forward"]:
        upstream = UpstreamConfig(
            ca_file=options["upstream-ca"],
            queue_bytes=options["upstream-queue-bytes"],
            connect_timeout=options["upstream-timeout"],
        )
        registry.add_listener(Forwarding(reactor, options["forward"], upstream))
    config = ServerConfig(
        connection=ConnectionConfig(max_message_size=options["max-message-size"]),
        handshake_timeout=options["handshake-timeout"],
    )
    factory = RTMPServerFactory(registry, config, reactor)
    for endpoint in options["rtmp"]:
        strports.service(endpoint, factory).setServiceParent(top)
    top.registry = registry
    return top


def main(argv: list[str] | None = None) -> None:
    """The ``rtmprelay`` console script: the twistd plugin in the foreground."""
    from twisted.scripts.twistd import run

    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "rtmprelay", *args]
    run()
