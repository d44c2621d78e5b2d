"""``/metrics``: the relay in the Prometheus text format, read from the live objects at scrape time.

Nothing is counted a second time for Prometheus. :class:`RelayCollector` is a
prometheus_client collector whose ``collect()`` reads what the relay already
keeps, on the reactor thread, when a scrape comes: each stream's counters and
video meters (``LiveStream``), its cleaner's counters and verdicts, the HLS
output's queue, segments and encoder counters, the stream's forwarders, the
reactor lag monitor. prometheus_client's ``ProcessCollector`` adds the
process's RSS, CPU time and open files (``process_*``).

Every per-stream series is labelled with the stream path, which the relay has
validated (``rtmprelay.names``) and which holds no secret: a query string
(``?token=``) is never part of it. Upstream URLs carry stream keys, so they
appear masked (``rtmprelay.names.mask_url``). No file path is exported.

A stream that ended stays for ``retention_s`` (5 minutes; at most
``max_ended`` of them) with its final readings and ``rtmprelay_stream_live 0``,
so that the scrape after its end still sees its last counters; then it leaves
the output, which keeps the number of series bounded by the live streams.

Given the RTMP server factory and the web site, it adds their connections by
state and what their limits refused or closed, by reason.

A reading a source does not have yet (the A/V drift before the cleaner has
measured one) is left out, never made up.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import attrs
from prometheus_client import CollectorRegistry, ProcessCollector, exposition
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from twisted.internet import threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.server import Request

import rtmprelay
from rtmprelay.names import mask_url
from rtmprelay.relay.client import UpstreamForwarder
from rtmprelay.relay.meters import KeyframeIntervals
from rtmprelay.relay.registry import LiveStream, StreamRegistry
from rtmprelay.relay.upstream import UpstreamState

__all__ = ["FAMILIES", "MAX_ENDED", "RETENTION_S", "MetricsResource", "RelayCollector", "make_metrics_registry"]

#: How long a stream that ended stays in the output, and how many such streams at most.
RETENTION_S = 300.0
MAX_ENDED = 256


@attrs.frozen
class Family:
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...] = ()


_PATH = ("path",)
_UPSTREAM = ("path", "destination")

#: Every metric /metrics can show: name -> kind, help, label names. Names follow
#: Prometheus's conventions: base units (seconds, bytes), counters end in _total.
FAMILIES: dict[str, Family] = {
    # -- per stream: the input and what the cleaner did to it
    "rtmprelay_stream_live": Family("gauge", "1 while the path is published; 0 for a stream that ended, kept a few minutes", _PATH),
    "rtmprelay_stream_publishes_total": Family(
        "counter", "Publishes of this path while the relay remembers it (more than 1: the publisher reconnected)", _PATH
    ),
    "rtmprelay_stream_input_bytes_per_second": Family("gauge", "Ingest rate of the input over its last 5 s", _PATH),
    "rtmprelay_stream_input_frames_per_second": Family("gauge", "Video frame rate of the input over its last 5 s of timestamps", _PATH),
    "rtmprelay_stream_output_frames_per_second": Family(
        "gauge", "Video frame rate the relay sends on, over the last 5 s of its timestamps", _PATH
    ),
    "rtmprelay_stream_keyframe_interval_seconds": Family(
        "histogram", "Time between keyframes in the stream's timestamps, as received (input) and as sent on (output)", _PATH + ("side",)
    ),
    "rtmprelay_stream_max_input_keyframe_interval_seconds": Family("gauge", "Longest keyframe interval of the input so far", _PATH),
    "rtmprelay_stream_frames_total": Family("counter", "Audio and video frames into and out of the cleaner", _PATH + ("track", "side")),
    "rtmprelay_stream_output_messages_total": Family(
        "counter", "Media messages (frames and sequence headers) sent on to the stream's outputs", _PATH + ("track",)
    ),
    "rtmprelay_stream_output_bytes_total": Family("counter", "Media bytes sent on to the stream's outputs", _PATH),
    "rtmprelay_stream_timestamp_repairs_total": Family(
        "counter", "Input timestamps that jumped or reset and were re-based onto the clean timeline", _PATH + ("track", "kind")
    ),
    "rtmprelay_stream_video_frames_dropped_total": Family(
        "counter",
        "Video frames the cleaner dropped: too_fast (above the output rate, unreferenced), lag (far behind), before_keyframe",
        _PATH + ("reason",),
    ),
    "rtmprelay_stream_video_frames_repeated_total": Family(
        "counter", "Skip frames repeating the last picture, inserted to keep a constant frame rate", _PATH
    ),
    "rtmprelay_stream_video_frames_retimed_total": Family("counter", "Video frames moved onto the frame-rate grid", _PATH),
    "rtmprelay_stream_video_frames_squeezed_total": Family(
        "counter",
        "Video frames whose decoding time the muxer squashed onto the previous frame's, given their own within its slot (presentation time kept)",
        _PATH,
    ),
    "rtmprelay_stream_keyframes_relabelled_total": Family(
        "counter", "Keyframes closer than the destination allows, sent on labelled as inter frames", _PATH
    ),
    "rtmprelay_stream_long_gops_total": Family("counter", "GOPs longer than the destination allows (not repairable)", _PATH),
    "rtmprelay_stream_audio_silence_frames_total": Family("counter", "Silent AAC frames inserted into audio gaps", _PATH),
    "rtmprelay_stream_audio_frames_dropped_total": Family("counter", "Audio frames dropped because the device's audio ran fast", _PATH),
    "rtmprelay_stream_malformed_messages_total": Family("counter", "Media messages the cleaner could not parse (passed through)", _PATH),
    "rtmprelay_stream_rule_verdict": Family(
        "gauge", "Destination rules checked so far: 1 for the rule's verdict (kept, repaired or broken)", _PATH + ("rule", "verdict")
    ),
    "rtmprelay_stream_av_drift_seconds": Family(
        "gauge",
        "Measured drift of the input's audio clock against its video, from arrival times "
        "(+: audio behind); the cleaner repairs it a whole AAC frame at a time",
        _PATH,
    ),
    "rtmprelay_stream_av_drift_repairs_total": Family(
        "counter", "Whole AAC frames inserted (+ silence) or dropped to follow a drifting audio clock", _PATH + ("action",)
    ),
    # -- per stream: local HLS
    "rtmprelay_stream_hls_ready": Family("gauge", "1 once the current publish has a playable playlist", _PATH),
    "rtmprelay_stream_hls_segments_total": Family("counter", "HLS segments written for this path", _PATH),
    "rtmprelay_stream_hls_queue_frames": Family("gauge", "Video frames waiting for the stream's HLS encoder", _PATH),
    "rtmprelay_stream_hls_queue_bytes": Family("gauge", "Bytes waiting for the stream's HLS encoder", _PATH),
    "rtmprelay_stream_hls_queue_peak_frames": Family("gauge", "Most video frames ever waiting for the stream's HLS encoder", _PATH),
    "rtmprelay_stream_hls_queue_dropped_messages_total": Family(
        "counter", "Media messages dropped because the HLS encoder's queue was full", _PATH + ("track",)
    ),
    "rtmprelay_stream_hls_errors_total": Family("counter", "Media errors the HLS pipeline met (it resumes at the next keyframe)", _PATH),
    "rtmprelay_stream_hls_encoder_frames_repeated_total": Family(
        "counter", "Frames the HLS encoder repeated to hold its output rate (this publish)", _PATH
    ),
    "rtmprelay_stream_hls_encoder_frames_dropped_total": Family(
        "counter", "Frames the HLS encoder dropped to hold its output rate (this publish)", _PATH
    ),
    # -- per stream and destination: forwarding
    "rtmprelay_upstream_state": Family("gauge", "1 for the upstream connection's current state", _UPSTREAM + ("state",)),
    "rtmprelay_upstream_sent_frames_total": Family(
        "counter", "Video pictures and audio frames written to the upstream (headers not counted)", _UPSTREAM + ("kind",)
    ),
    "rtmprelay_upstream_sent_bytes_total": Family("counter", "RTMP bytes written to the upstream", _UPSTREAM),
    "rtmprelay_upstream_dropped_messages_total": Family(
        "counter", "Media messages dropped for the upstream (it fell behind, or its queue overflowed)", _UPSTREAM
    ),
    "rtmprelay_upstream_reconnects_total": Family("counter", "Times the upstream connection was made again", _UPSTREAM),
    "rtmprelay_upstream_errors_total": Family(
        "counter", "Upstream attempts that failed, by kind (tls, refused, timeout, dns, rejected, closed, ...)",
        _UPSTREAM + ("kind",),
    ),
    "rtmprelay_upstream_queue_bytes": Family("gauge", "Media bytes held for the upstream while it is not live", _UPSTREAM),
    "rtmprelay_upstream_queue_limit_bytes": Family("gauge", "--upstream-queue-bytes: the bound on that queue", _UPSTREAM),
    # -- the process
    "rtmprelay_info": Family("gauge", "The relay's version", ("version",)),
    "rtmprelay_live_streams": Family("gauge", "Streams being published now"),
    "rtmprelay_reactor_lag_seconds": Family(
        "gauge", "How late a 50 ms timer ran over the last 60 s (quantile 1: the most)", ("quantile",)
    ),
    "rtmprelay_reactor_lag_worst_seconds": Family("gauge", "How late a 50 ms timer ran at worst since the start"),
    "rtmprelay_connections": Family("gauge", "Open RTMP connections by state", ("state",)),
    "rtmprelay_connections_refused_total": Family(
        "counter", "RTMP connections refused before a byte was read (a connection limit), by reason", ("reason",)
    ),
    "rtmprelay_connections_closed_total": Family(
        "counter", "RTMP connections the relay closed, by reason: a time limit, or the peer's protocol error (HandshakeError, ...)",
        ("reason",),
    ),
    "rtmprelay_requests_refused_total": Family("counter", "Publishes and plays the server refused, by reason", ("reason",)),
    "rtmprelay_messages_dropped_total": Family("counter", "Data messages dropped or cut (unreadable, over their bounds)", ("reason",)),
    "rtmprelay_faults_total": Family("counter", "Unexpected errors handling one message, contained (the connection went on)", ("where",)),
    "rtmprelay_stream_faults_total": Family(
        "counter", "Unexpected errors handling this stream's media, contained (the stream went on)", _PATH + ("where",)
    ),
    "rtmprelay_http_connections": Family("gauge", "Open HTTP connections"),
    "rtmprelay_http_refused_total": Family("counter", "HTTP requests and connections refused by a limit, by reason", ("reason",)),
}

#: One series: its family's name, its label values in the family's order, its value
#: (for a histogram: ``(buckets, sum)``, buckets as ``[(le, cumulative count), ...]``).
Sample = tuple[str, tuple[str, ...], object]

_DROP_REASONS = (("too_fast", "dropped"), ("lag", "dropped_for_lag"), ("before_keyframe", "dropped_before_keyframe"))
_CLEANER_COUNTS = (
    ("rtmprelay_stream_video_frames_repeated_total", "duplicated"),
    ("rtmprelay_stream_video_frames_retimed_total", "retimed"),
    ("rtmprelay_stream_video_frames_squeezed_total", "squeezed"),
    ("rtmprelay_stream_keyframes_relabelled_total", "keyframes_relabelled"),
    ("rtmprelay_stream_long_gops_total", "long_gops"),
    ("rtmprelay_stream_audio_silence_frames_total", "silence_inserted"),
    ("rtmprelay_stream_audio_frames_dropped_total", "audio_dropped"),
    ("rtmprelay_stream_malformed_messages_total", "malformed"),
)
_TRANSCODER_COUNTS = (
    ("rtmprelay_stream_hls_encoder_frames_repeated_total", "frames_repeated"),
    ("rtmprelay_stream_hls_encoder_frames_dropped_total", "frames_dropped"),
)
#: UpstreamState's values as label values (Prometheus's snake_case: "backing off" -> backing_off).
UPSTREAM_STATES = tuple(state.value.replace(" ", "_") for state in UpstreamState)
#: RTMPServerProtocol.state: every one is always exported, so a state with no connection reads 0.
CONNECTION_STATES = ("handshake", "connected", "admitting", "publishing", "playing", "closing")


# -- readers: one per source, each returning samples ------------------------------------


def stream_samples(stream: LiveStream) -> list[Sample]:
    """What the stream itself, its cleaner and its forwarders tell (everything but HLS)."""
    path = stream.path
    counters = stream.counters
    samples: list[Sample] = [
        ("rtmprelay_stream_output_messages_total", (path, "video"), counters.video_messages),
        ("rtmprelay_stream_output_messages_total", (path, "audio"), counters.audio_messages),
        ("rtmprelay_stream_output_bytes_total", (path,), counters.bytes_in),
        _histogram("rtmprelay_stream_keyframe_interval_seconds", (path, "input"), stream.input_keyframes),
        _histogram("rtmprelay_stream_keyframe_interval_seconds", (path, "output"), stream.output_keyframes),
    ]
    fps = stream.output_frame_rate.fps
    if fps is not None:
        samples.append(("rtmprelay_stream_output_frames_per_second", (path,), fps))
    samples += [("rtmprelay_stream_faults_total", (path, where), count) for where, count in sorted(stream.faults.items())]
    if stream.cleaner is not None:
        samples += cleaner_samples(path, stream.cleaner)
    samples += upstream_samples(stream)
    return samples


def cleaner_samples(path: str, cleaner) -> list[Sample]:
    """The cleaner's counters and verdicts: how dirty the input is and what was repaired."""
    counters = cleaner.counters
    samples: list[Sample] = [
        ("rtmprelay_stream_frames_total", (path, "video", "input"), counters.video_in),
        ("rtmprelay_stream_frames_total", (path, "video", "output"), counters.video_out),
        ("rtmprelay_stream_frames_total", (path, "audio", "input"), counters.audio_in),
        ("rtmprelay_stream_frames_total", (path, "audio", "output"), counters.audio_out),
    ]
    samples += [("rtmprelay_stream_video_frames_dropped_total", (path, reason), getattr(counters, field)) for reason, field in _DROP_REASONS]
    samples += [(name, (path,), getattr(counters, field)) for name, field in _CLEANER_COUNTS]
    for track, repairs in sorted(counters.repairs.items()):
        samples += [("rtmprelay_stream_timestamp_repairs_total", (path, track, kind), count) for kind, count in sorted(repairs.items())]
    if counters.input_bitrate is not None:
        samples.append(("rtmprelay_stream_input_bytes_per_second", (path,), counters.input_bitrate / 8))
    if counters.input_fps is not None:
        samples.append(("rtmprelay_stream_input_frames_per_second", (path,), counters.input_fps))
    if counters.max_input_keyframe_interval_s is not None:
        samples.append(("rtmprelay_stream_max_input_keyframe_interval_seconds", (path,), counters.max_input_keyframe_interval_s))
    for verdict in cleaner.verdicts():
        current = "repaired" if verdict.broken and verdict.repaired else "broken" if verdict.broken else "kept"
        samples += [
            ("rtmprelay_stream_rule_verdict", (path, verdict.rule, state), 1.0 if state == current else 0.0)
            for state in ("kept", "repaired", "broken")
        ]
    samples += av_drift_samples(path, cleaner)
    return samples


def av_drift_samples(path: str, cleaner) -> list[Sample]:
    """The cleaner's measured audio/video drift (none until it has measured one: nothing
    is made up), and the whole AAC frames it inserted or dropped to follow it."""
    counters = cleaner.counters
    if counters.audio_drift_ms is None:
        return []
    return [
        ("rtmprelay_stream_av_drift_seconds", (path,), counters.audio_drift_ms / 1000.0),
        ("rtmprelay_stream_av_drift_repairs_total", (path, "inserted"), counters.audio_drift_inserted),
        ("rtmprelay_stream_av_drift_repairs_total", (path, "dropped"), counters.audio_dropped),
    ]


def upstream_samples(stream: LiveStream) -> list[Sample]:
    """Each destination of the stream, from ``UpstreamForwarder.status()`` (the value
    ``/api/streams`` shows): state, frames and bytes sent, drops, reconnects, failures by
    kind, queue fill. The destination label is the URL with its key masked."""
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for sink in stream.sinks:
        if not isinstance(sink, UpstreamForwarder) or sink.closed:
            continue
        destination = mask_url(sink.url)
        seen[destination] = seen.get(destination, 0) + 1
        if seen[destination] > 1:  # two keys that mask alike must still be two series
            destination = f"{destination} #{seen[destination]}"
        labels = (stream.path, destination)
        status = sink.status()
        current = status.state.value.replace(" ", "_")
        samples += [("rtmprelay_upstream_state", (*labels, state), 1.0 if state == current else 0.0) for state in UPSTREAM_STATES]
        samples.append(("rtmprelay_upstream_sent_frames_total", (*labels, "video"), status.frames_sent))
        samples.append(("rtmprelay_upstream_sent_frames_total", (*labels, "audio"), status.audio_frames_sent))
        samples.append(("rtmprelay_upstream_sent_bytes_total", labels, status.bytes_sent))
        samples.append(("rtmprelay_upstream_dropped_messages_total", labels, status.dropped))
        samples.append(("rtmprelay_upstream_reconnects_total", labels, max(status.attempts - 1, 0)))
        samples += [("rtmprelay_upstream_errors_total", (*labels, kind), count) for kind, count in status.errors]
        samples.append(("rtmprelay_upstream_queue_bytes", labels, status.queue_bytes))
        samples.append(("rtmprelay_upstream_queue_limit_bytes", labels, status.queue_limit))
    return samples


def hls_samples(path: str, info: dict) -> list[Sample]:
    """What ``HlsOutput.info(path)`` tells: readiness, segments, the encoder's queue and drops."""
    queue = info["queue"]
    samples: list[Sample] = [
        ("rtmprelay_stream_hls_ready", (path,), 1.0 if info["ready"] else 0.0),
        ("rtmprelay_stream_hls_segments_total", (path,), info["segments"]),
        ("rtmprelay_stream_hls_queue_frames", (path,), queue["frames_queued"]),
        ("rtmprelay_stream_hls_queue_bytes", (path,), queue["bytes_queued"]),
        ("rtmprelay_stream_hls_queue_peak_frames", (path,), queue["max_frames_queued"]),
        ("rtmprelay_stream_hls_queue_dropped_messages_total", (path, "video"), queue["video_dropped"]),
        ("rtmprelay_stream_hls_queue_dropped_messages_total", (path, "audio"), queue["audio_dropped"]),
        ("rtmprelay_stream_hls_errors_total", (path,), queue["errors"]),
    ]
    transcoder = info.get("transcoder") or {}
    samples += [(name, (path,), transcoder[key]) for name, key in _TRANSCODER_COUNTS if key in transcoder]
    return samples


def lag_samples(lag) -> list[Sample]:
    summary = lag.summary()
    return [
        ("rtmprelay_reactor_lag_seconds", ("0.5",), summary["p50_ms"] / 1000),
        ("rtmprelay_reactor_lag_seconds", ("0.99",), summary["p99_ms"] / 1000),
        ("rtmprelay_reactor_lag_seconds", ("1",), summary["max_ms"] / 1000),
        ("rtmprelay_reactor_lag_worst_seconds", (), summary["worst_ms"] / 1000),
    ]


def server_samples(server) -> list[Sample]:
    """The RTMP server factory: its connections by state, and what its limits refused or closed, by reason.

    ``rtmprelay_requests_refused_total`` holds every publish and play the server
    refused, as ``{action}_{kind}`` (a bad name, a taken path, a missing or wrong
    signature, the HTTP hook, the upstream lookup, a per-address limit)."""
    by_state = server.connections_by_state()
    samples: list[Sample] = [
        ("rtmprelay_connections", (state,), by_state.get(state, 0)) for state in sorted(set(CONNECTION_STATES) | set(by_state))
    ]
    counters = server.counters
    for name, counter in (
        ("rtmprelay_connections_refused_total", counters.connections_refused),
        ("rtmprelay_connections_closed_total", counters.connections_closed),
        ("rtmprelay_requests_refused_total", counters.requests_refused),
        ("rtmprelay_messages_dropped_total", counters.messages_dropped),
        ("rtmprelay_faults_total", counters.faults),
    ):
        samples += [(name, (reason,), count) for reason, count in sorted(counter.items())]
    return samples


def http_samples(site) -> list[Sample]:
    """The web server's own limits (``LimitedSite``): open connections, refusals by reason."""
    samples: list[Sample] = [("rtmprelay_http_connections", (), site.open_connections)]
    samples += [("rtmprelay_http_refused_total", (reason,), count) for reason, count in sorted(site.http_counters.items())]
    return samples


def _histogram(name: str, labels: tuple[str, ...], intervals: KeyframeIntervals) -> Sample:
    bounds = _le_labels(intervals.buckets_s)
    buckets = [(bound, count) for bound, (_upper, count) in zip(bounds, intervals.cumulative())]
    return (name, labels, (buckets, intervals.sum_s))


@functools.cache
def _le_labels(buckets_s: tuple[float, ...]) -> tuple[str, ...]:
    """The ``le`` label of each bucket, +Inf last (made once, not at every scrape)."""
    return tuple(floatToGoString(bound) for bound in (*buckets_s, float("inf")))


# -- the collector -----------------------------------------------------------------------


@attrs.define
class _Ended:
    at: float
    publishes: int
    samples: tuple  # the stream's last readings
    #: Its HLS readings, read anew while the HLS output still has the path (the last
    #: segment is written after the stream ended), the last ones kept after that.
    hls: tuple


class RelayCollector:
    """The prometheus_client collector (``collect``), and a registry listener
    (``stream_started`` / ``stream_ended``) that remembers streams that ended."""

    def __init__(
        self,
        registry: StreamRegistry,
        *,
        clock: IReactorTime,
        hls=None,
        lag=None,
        server=None,
        retention_s: float = RETENTION_S,
        max_ended: int = MAX_ENDED,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.hls = hls
        self.lag = lag
        #: The RTMPServerFactory, and the web site (``LimitedSite``) once it is made.
        self.server = server
        self.http_site = None
        self.retention_s = retention_s
        self.max_ended = max_ended
        self._publishes: dict[str, int] = {}  # live paths
        self._ended: OrderedDict[str, _Ended] = OrderedDict()  # oldest first
        registry.add_listener(self)

    # -- registry listener

    def stream_started(self, stream: LiveStream) -> None:
        self._forget_old()
        before = self._ended.pop(stream.path, None)
        self._publishes[stream.path] = 1 + (before.publishes if before is not None else 0)

    def stream_ended(self, stream: LiveStream) -> None:
        publishes = self._publishes.pop(stream.path, 1)
        samples = self._samples_of(stream, publishes, live=False)
        hls = self._hls_samples(stream.path) or []
        self._ended[stream.path] = _Ended(self.clock.seconds(), publishes, tuple(samples), tuple(hls))
        self._forget_old()

    # -- prometheus_client

    def collect(self) -> list[Metric]:
        self._forget_old()
        live = sorted(self.registry.streams(), key=lambda stream: stream.path)
        samples: list[Sample] = []
        for stream in live:
            samples += self._samples_of(stream, self._publishes.get(stream.path, 1), live=True)
            samples += self._hls_samples(stream.path) or []
        live_paths = {stream.path for stream in live}
        for path, ended in self._ended.items():
            if path not in live_paths:
                ended.hls = tuple(self._hls_samples(path) or ended.hls)
                samples += ended.samples
                samples += ended.hls
        samples += [
            ("rtmprelay_info", (rtmprelay.__version__,), 1.0),
            ("rtmprelay_live_streams", (), len(live)),
        ]
        if self.lag is not None:
            samples += lag_samples(self.lag)
        if self.server is not None:
            samples += server_samples(self.server)
        if self.http_site is not None:
            samples += http_samples(self.http_site)
        return families(samples)

    def _samples_of(self, stream: LiveStream, publishes: int, *, live: bool) -> list[Sample]:
        path = stream.path
        samples: list[Sample] = [
            ("rtmprelay_stream_live", (path,), 1.0 if live else 0.0),
            ("rtmprelay_stream_publishes_total", (path,), publishes),
        ]
        samples += stream_samples(stream)
        return samples

    def _hls_samples(self, path: str) -> list[Sample] | None:
        info = None if self.hls is None else self.hls.info(path)
        return None if info is None else hls_samples(path, info)

    def _forget_old(self) -> None:
        horizon = self.clock.seconds() - self.retention_s
        ended = self._ended
        while ended and (len(ended) > self.max_ended or next(iter(ended.values())).at < horizon):
            ended.popitem(last=False)


def families(samples: list[Sample]) -> list[Metric]:
    """Samples grouped into prometheus_client metric families, in :data:`FAMILIES` order."""
    by_name: dict[str, Metric] = {}
    for name, labels, value in samples:
        metric = by_name.get(name)
        if metric is None:
            metric = by_name[name] = _new_family(name, FAMILIES[name])
        if isinstance(metric, HistogramMetricFamily):
            buckets, sum_value = value
            metric.add_metric(list(labels), buckets, sum_value)
        else:
            metric.add_metric(list(labels), value)
    return [by_name[name] for name in FAMILIES if name in by_name]


def _new_family(name: str, family: Family) -> Metric:
    kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}
    return kinds[family.kind](name, family.help, labels=list(family.labels))


def make_metrics_registry(collector: RelayCollector) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one): the relay's collector and the process's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


class _Snapshot:
    """Metric families already read: what the encoders take (``collect()``), safe on any thread."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


class MetricsResource(resource.Resource):
    """``GET /metrics``: the text format, or OpenMetrics when the scraper asks for it.

    The relay's objects are read on the reactor thread, where they live and
    change (prometheus_client's own Twisted resource would read them from a
    worker thread, racing the reactor). Turning the readings into text, most
    of a scrape's cost (escaping every label), is done on a worker thread.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> int:
        accept = request.getHeader(b"accept")
        encoder, content_type = exposition.choose_encoder(accept.decode("latin-1") if accept else "")
        snapshot = _Snapshot(list(self._registry.collect()))
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        gone = []
        request.notifyFinish().addErrback(gone.append)  # the scraper hung up meanwhile

        def answer(body: bytes) -> None:
            if not gone:
                request.write(body)
                request.finish()

        def failed(failure) -> None:
            self.log.failure("/metrics could not be rendered", failure)
            if not gone:
                request.setResponseCode(500)
                request.finish()

        threads.deferToThread(encoder, snapshot).addCallbacks(answer, failed)
        return server.NOT_DONE_YET
