"""What one /metrics scrape costs, against /api/streams for the same streams (the anchor).

For N live streams (cleaned, each with 2 s of 30 fps video and audio through
its cleaner), in process:

* read:   RelayCollector.collect(), on the reactor thread (it reads the live objects);
* encode: prometheus_client's text encoder on the readings, on a worker thread;
* api:    json.dumps of /api/streams' body for the same streams, all on the reactor thread.

    .venv/bin/python bench/metrics_scrape.py --streams 1,10,100,500 --repeats 21
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from prometheus_client import generate_latest
from twisted.internet.task import Clock

from rtmprelay.media.cleaner import CleanerConfig
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.web.api import stream_info
from rtmprelay.web.metrics import RelayCollector, _Snapshot, make_metrics_registry


class Publisher:
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def live_streams(count: int) -> tuple[StreamRegistry, RelayCollector]:
    registry = StreamRegistry(cleaning=CleanerConfig())
    collector = RelayCollector(registry, clock=Clock())
    for number in range(count):
        stream = registry.start(f"live/user{number}/stream", Publisher())
        for frame in range(60):
            now = frame / 30
            stream.publish_media(MediaMessage.of(9, round(now * 1000), bytes([0x17 if frame % 30 == 0 else 0x27, 1, 0, 0, 0]) + bytes(200)), now)
            stream.publish_media(MediaMessage.of(8, round(now * 1000), bytes([0xAF, 1]) + bytes(100)), now)
        stream.poll(3.0)
    return registry, collector


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,10,100,500")
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    print("| streams | lines | KiB | read (reactor) ms | encode (worker) ms | /api/streams (reactor) ms | read / api |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for count in (int(n) for n in args.streams.split(",")):
        registry, collector = live_streams(count)
        prometheus = make_metrics_registry(collector)
        read_ms, snapshot = timed(lambda: _Snapshot(list(prometheus.collect())), args.repeats)
        encode_ms, body = timed(lambda: generate_latest(snapshot), args.repeats)
        api_ms, _ = timed(lambda: json.dumps([stream_info(s) for s in registry.streams()]).encode(), args.repeats)
        lines = body.count(b"\n")
        print(f"| {count} | {lines} | {len(body) / 1024:.0f} | {read_ms:.2f} | {encode_ms:.2f} | {api_ms:.2f} | {read_ms / api_ms:.2f}x |")


if __name__ == "__main__":
    main()
