"""Relay routing by the cloud: each stream's upstream URL from the lookup route.

:class:`CloudLookup` is an ``UpstreamSource`` (``rtmprelay.relay.forward``): it
asks ``GET {cloud}/api/rtmp-relay/cf-url/{userId}/{streamId}`` (with the
client's retries) and fails with ``UpstreamUnavailable`` naming the reason, which
the server puts in the publisher's ``NetStream.Publish.Rejected``.

With a ``fallback`` source (``--forward`` given with ``--cloud``) the cloud still
decides: the fallback is used only when the cloud could not be reached (every
attempt timed out, failed to connect or got a 5xx). When the cloud answered and
refused (4xx) or gave no usable URL, the publish is refused: a cloud that says
no must not be bypassed, as it is the cloud that knows which streams exist.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rtmprelay.cloud.client import CloudClient, CloudError
from rtmprelay.names import StreamName
from rtmprelay.relay.forward import UpstreamSource, UpstreamUnavailable

__all__ = ["CloudLookup"]


def _unreachable(error: CloudError) -> bool:
    """The cloud gave no answer at all (as opposed to answering no)."""
    return error.status is None or error.status >= 500


class CloudLookup:
    """``resolve(path)``: the upstream URL the cloud names for this stream."""

    log = Logger()

    def __init__(self, client: CloudClient, fallback: UpstreamSource | None = None) -> None:
        self.client = client
        self.fallback = fallback

    def resolve(self, path: str) -> Deferred[str]:
        name = StreamName.from_path(path)
        who = f"{name.user_id}/{name.stream_id}" if name.user_id else name.stream_id
        if not name.stream_id:
            return defer.fail(UpstreamUnavailable(f"upstream lookup for {path!r} failed: no stream id in the path"))
        d = self.client.lookup_upstream(name.user_id, name.stream_id)
        d.addErrback(self._lookup_failed, path, who)
        return d

    def _lookup_failed(self, failure, path: str, who: str):
        failure.trap(CloudError)
        error: CloudError = failure.value
        if self.fallback is not None and _unreachable(error):
            self.log.warn(
                "upstream lookup for {who} failed ({what}); forwarding by the --forward template instead",
                who=who,
                what=error.what,
            )
            return self.fallback.resolve(path)
        raise UpstreamUnavailable(
            f"upstream lookup for {who} failed after {error.attempts} attempt(s): {error.what}"
        ) from error

