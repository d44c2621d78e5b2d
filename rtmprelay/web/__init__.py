"""twisted.web resources: HLS/DASH files, health, the streams API, Prometheus metrics, the status page."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.interfaces import IReactorTime
from twisted.web import pages, resource, server

from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.web.api import HealthResource, StreamsResource, json_safe, stream_info
from rtmprelay.web.hls import MEDIA_FILES, BlockingReloads, HlsResource
from rtmprelay.web.limits import HttpLimits, LimitedSite
from rtmprelay.web.metrics import MetricsResource, RelayCollector, make_metrics_registry
from rtmprelay.web.status import StaticFileResource, StaticFiles, load_static

__all__ = [
    "BlockingReloads",
    "HealthResource",
    "HlsResource",
    "HttpLimits",
    "LimitedSite",
    "MEDIA_FILES",
    "StreamsResource",
    "json_safe",
    "make_site",
    "stream_info",
]


class _Folder(resource.Resource):
    """A node that only holds children: 404 for itself, never a listing."""

    def getChild(self, path: bytes, request: server.Request) -> resource.IResource:
        return pages.notFound()

    def render(self, request: server.Request) -> bytes:
        return pages.notFound().render(request)


def make_site(
    registry: StreamRegistry,
    hls_dir: Path,
    *,
    started_at: float,
    clock: IReactorTime,
    lag=None,
    hls=None,
    limits: HttpLimits = HttpLimits(),
    rtmp_server=None,
) -> server.Site:
    """``/hls/...``, ``/health``, ``/api/streams``, ``/metrics`` and the status page at ``/``;
    ``clock.seconds() - started_at`` is the uptime.

    ``lag`` (a ReactorLagMonitor) adds the reactor's lateness to /health and /metrics;
    ``hls`` (an HlsOutput) adds each stream's HLS state to /api/streams and /metrics;
    ``rtmp_server`` (the RTMPServerFactory) adds its connections and refusals to /metrics."""
    root = _Folder()
    reloads = None
    if hls is not None and hls.settings.low_latency:
        reloads = BlockingReloads(clock)
        hls.add_playlist_watcher(reloads)
    root.putChild(b"hls", HlsResource(hls_dir, reloads))
    root.putChild(b"health", HealthResource(registry, started_at=started_at, clock=clock, lag=lag))
    api = _Folder()
    api.putChild(b"streams", StreamsResource(registry, hls=hls))
    root.putChild(b"api", api)
    collector = RelayCollector(registry, clock=clock, hls=hls, lag=lag, server=rtmp_server)
    root.putChild(b"metrics", MetricsResource(make_metrics_registry(collector)))
    static = load_static()
    root.putChild(b"", StaticFileResource(static["index.html"]))
    root.putChild(b"static", StaticFiles(static))
    site = LimitedSite(root, limits, reactor=clock)
    collector.http_site = site
    site.displayTracebacks = False
    site.noisy = False
    return site
