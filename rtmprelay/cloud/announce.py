"""The cloud webhooks as listeners: hls-ready when a stream's HLS is ready,
stream-ended when a stream ends.

:class:`CloudAnnouncer` is an HLS-output listener (``hls_ready(path, playlist,
manifest)``) and a registry listener (``stream_started`` / ``stream_ended``).
It announces ``hlsUrl = {public_url}/hls/{playlist}`` and ``dashUrl =
{public_url}/hls/{manifest}`` (null without a DASH manifest). One stream's
webhooks go out in order (a stream-ended never overtakes that stream's
hls-ready still being retried); a webhook that fails for good is logged and
never touches the stream.

:func:`default_public_url` makes the public URL from the ``--http`` endpoint.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from twisted.internet import defer
from twisted.logger import Logger

from rtmprelay.cloud.client import CloudClient
from rtmprelay.endpoints import ALL_INTERFACES, split_endpoint
from rtmprelay.errors import ConfigError
from rtmprelay.names import StreamName

__all__ = ["CloudAnnouncer", "default_public_url", "route_address"]


class CloudAnnouncer:
    """Posts hls-ready and stream-ended for the streams of this relay."""

    log = Logger()

    def __init__(self, client: CloudClient, public_url: str) -> None:
        self.client = client
        self.public_url = public_url.rstrip("/")
        self._queues: dict[str, deque[tuple[str, Callable[[], defer.Deferred]]]] = {}
        self._idle_waiters: list[defer.Deferred] = []

    # -- HLS output listener --------------------------------------------------------

    def hls_ready(self, path: str, playlist: str, manifest: str | None) -> None:
        name = StreamName.from_path(path)
        hls_url = self.url_for(playlist)
        dash_url = self.url_for(manifest) if manifest else None
        self._post(path, "hls-ready", lambda: self.client.hls_ready(name.user_id, name.stream_id, hls_url, dash_url))

    # -- registry listener ------------------------------------------------------------

    def stream_started(self, stream) -> None:
        pass

    def stream_ended(self, stream) -> None:
        name = StreamName.from_path(stream.path)
        self._post(stream.path, "stream-ended", lambda: self.client.stream_ended(name.user_id, name.stream_id))

    # -- helpers -----------------------------------------------------------------------

    def url_for(self, relative: str) -> str:
        """The public URL of a file under the HLS folder."""
        return f"{self.public_url}/hls/{quote(relative.lstrip('/'), safe='/')}"

    @property
    def busy(self) -> bool:
        """Whether a webhook is being sent or waits its turn."""
        return bool(self._queues)

    def when_idle(self) -> defer.Deferred:
        """Fires once no webhook is being sent or waits (a graceful stop waits for this, bounded)."""
        if not self._queues:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    def _post(self, path: str, hook: str, call: Callable[[], defer.Deferred]) -> None:
        queue = self._queues.get(path)
        if queue is not None:  # this stream's earlier webhook is still on its way
            queue.append((hook, call))
            return
        self._queues[path] = deque([(hook, call)])
        self._next(path)

    def _next(self, path: str) -> None:
        queue = self._queues[path]
        hook, call = queue[0]
        d = defer.maybeDeferred(call)
        d.addErrback(self._failed, hook, path)
        d.addBoth(self._sent, path)

    def _sent(self, _result, path: str) -> None:
        queue = self._queues[path]
        queue.popleft()
        if queue:
            self._next(path)
        else:
            del self._queues[path]
            if not self._queues:
                waiters, self._idle_waiters = self._idle_waiters, []
                for d in waiters:
                    if not d.called:  # a bounded wait may have given up on it
                        d.callback(None)

    def _failed(self, failure, hook: str, path: str) -> None:
        # The client logged every attempt; this is the one line saying the stream went on.
        self.log.warn(
            "{hook} webhook for {path} not delivered: {why}; the stream is not affected",
            hook=hook,
            path=path,
            why=failure.getErrorMessage(),
        )


def route_address(host: str, port: int = 443) -> str | None:
    """This host's address on the route to ``host`` (a UDP connect sends nothing)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    for family, kind, proto, _name, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.connect(address)
                return probe.getsockname()[0]
        except OSError:
            continue
    return None


def default_public_url(
    http_endpoint: str,
    cloud_url: str | None = None,
    *,
    route: Callable[[str, int], str | None] = route_address,
    fqdn: Callable[[], str] = socket.getfqdn,
) -> str:
    """The base URL the HTTP endpoint is fetchable at, as the cloud will fetch it.

    ``ssl:`` serves https, ``tcp:`` http. A given interface is the host; on all
    interfaces, the host is this machine's address on the route to the cloud
    (so the cloud can reach it), else its fully qualified name.
    """
    kind, args, kwargs = split_endpoint(http_endpoint)
    schemes = {"tcp": "http", "tcp6": "http", "ssl": "https"}
    if kind not in schemes:
        raise ConfigError(f"cannot make a public URL from the HTTP endpoint {http_endpoint!r}; give --public-url")
    port = kwargs.get("port") or (args[0] if args else "")
    if not port.isdigit():
        raise ConfigError(f"no port in the HTTP endpoint {http_endpoint!r}; give --public-url")
    host = kwargs.get("interface", "")
    if host in ALL_INTERFACES:
        host = ""
        if cloud_url:
            cloud = urlsplit(cloud_url)
            if cloud.hostname:
                host = route(cloud.hostname, cloud.port or (443 if cloud.scheme == "https" else 80)) or ""
        host = host or fqdn()
    if ":" in host:
        host = f"[{host.split('%')[0]}]"
    scheme = schemes[kind]
    default_port = {"http": "80", "https": "443"}[scheme]
    return f"{scheme}://{host}" + ("" if port == default_port else f":{port}")
