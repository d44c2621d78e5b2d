"""JSON views of the relay: liveness for load balancers, live streams for operators."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web import resource
from twisted.web.server import Request

from rtmprelay.names import StreamName
from rtmprelay.relay.client import UpstreamForwarder
from rtmprelay.relay.registry import LiveStream, StreamRegistry

__all__ = ["HealthResource", "StreamsResource", "json_safe", "stream_info"]


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot carry (bytes, AMF undefined, NaN, dates) turned into ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return str(value)


def stream_info(stream: LiveStream, hls=None) -> dict:
    """What ``/api/streams`` says about one stream (``hls``: the HlsOutput, if any)."""
    name = StreamName.from_path(stream.path)
    cleaner = stream.cleaner
    return json_safe(
        {
            "path": stream.path,
            "app": name.app,
            "userId": name.user_id,
            "streamId": name.stream_id,
            "counters": attrs.asdict(stream.counters),
            "cleaner": None if cleaner is None else cleaner.counters.as_dict(),
            "verdicts": [] if cleaner is None else [attrs.asdict(verdict) for verdict in cleaner.verdicts()],
            "metadata": stream.metadata,
            "hls": None if hls is None else hls.info(stream.path),
            "upstreams": [sink.info() for sink in stream.sinks if isinstance(sink, UpstreamForwarder)],
            "bridge": stream.bridge_info(),
        }
    )


class _JsonResource(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self.body(), allow_nan=False).encode("utf-8")

    def body(self) -> Any:
        raise NotImplementedError


class HealthResource(_JsonResource):
    """``{"status": "ok", "uptime_s": ..., "streams": N, "reactor_lag": {...}}``: answering at all is the health."""

    def __init__(self, registry: StreamRegistry, *, started_at: float, clock: IReactorTime, lag=None) -> None:
        super().__init__()
        self._registry = registry
        self._started_at = started_at
        self._clock = clock
        self._lag = lag

    def body(self) -> dict:
        body = {
            "status": "ok",
            "uptime_s": round(self._clock.seconds() - self._started_at, 3),
            "streams": len(self._registry.streams()),
        }
        if self._lag is not None:
            body["reactor_lag"] = self._lag.summary()
        return body


class StreamsResource(_JsonResource):
    """Every live stream, by path: counters, cleaner counters and verdicts, metadata."""

    def __init__(self, registry: StreamRegistry, hls=None) -> None:
        super().__init__()
        self._registry = registry
        self._hls = hls

    def body(self) -> list:
        return [stream_info(stream, self._hls) for stream in sorted(self._registry.streams(), key=lambda s: s.path)]
