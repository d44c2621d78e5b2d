"""What cleaning costs on top of plain forwarding, measured in one run (issue 3).

Both pipelines are the relay's own code, in process, on the same wire bytes:

    publisher bytes -> ServerSession -> LiveStream -> upstream ClientSession -> bytes

once with ``LiveStream(cleaner=None)`` (plain forwarding, what ``--no-clean``
does) and once with a ``StreamCleaner`` for the cloudflare profile. Input is a
720p H.264 + AAC stream at about 2.5 Mbit/s made by ffmpeg: "steady" is
30 fps with 2 s GOPs (nothing to repair), "dirty" is 12 fps with keyframes
every 0.5 s (skip frames to make, keyframes to relabel). Time is simulated: each
message arrives at its timestamp and the relay's 50 ms poll runs in between,
so the hold time each message spends in the cleaner is exact.

Prints CPU seconds per stream-minute for both pipelines and their ratio, and
the time the cleaner holds video and audio (p50 / p99 / max) against its
interleave bound. Run:

    .venv/bin/python bench/cleaner_cost.py [--seconds 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rtmprelay.media.cleaner import CleanerConfig, StreamCleaner
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.registry import LiveStream
from rtmprelay.rtmp import session as s
from rtmprelay.testing.flv import read_flv_tags
from rtmprelay.testing.memory import accept_all, publishing_pair

CACHE = Path("/tmp/rtmprelay-bench-cache")
POLL = 0.05


def make_input(seconds: int, fps: int, gop: int) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"cleaner-720p{fps}-g{gop}-{seconds}s.flv"
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={fps}:duration={seconds}",
             "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
             "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", str(gop),
             "-b:v", "2400k", "-maxrate", "2500k", "-bufsize", "5000k",
             "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(path)],
            check=True,
        )
    return path


def messages_of(path: Path) -> list[tuple[int, int, bytes]]:
    return [(t.tag_type, t.timestamp, t.payload) for t in read_flv_tags(path) if t.tag_type in (8, 9)]


def wire_bytes(messages) -> bytes:
    """What a publisher would have sent: a real ClientSession's chunk stream."""
    client, _server, _, _, preamble = publishing_pair("rtmp://relay/live/u/s")
    per_message = []
    for type_id, timestamp, payload in messages:
        client.send_media(type_id, timestamp, payload)
        per_message.append((timestamp, client.data_to_send()))
    return preamble, per_message


class _Publisher:
    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


class _UpstreamSink:
    """Writes to a publishing ClientSession, as the forwarder does."""

    def __init__(self):
        client = s.ClientSession.for_url("rtmp://up/live/u/s")
        client.state = s._ClientState.PUBLISHING
        client.stream_id = 1
        self.client = client
        self.bytes_out = 0
        self.sent: list[tuple[int, int]] = []  # (type_id, id(payload))

    def on_metadata(self, metadata):
        pass

    def on_media(self, message):
        self.client.send_media(message.type_id, message.timestamp, message.payload)
        self.bytes_out += len(self.client.data_to_send())
        self.sent.append((message.type_id, id(message.payload)))

    def on_stream_end(self):
        pass


def run(preamble: bytes, per_message, clean: bool):
    server = s.ServerSession()
    cleaner = StreamCleaner(CleanerConfig.from_profile("cloudflare")) if clean else None
    stream = LiveStream("live/u/s", _Publisher(), cleaner=cleaner)
    sink = _UpstreamSink()
    stream.attach(sink)
    holds: dict[int, list[float]] = {8: [], 9: []}
    arrivals: dict[int, tuple] = {}  # id(payload) -> (arrival, payload); unchanged payloads pass as the same object
    t0 = time.process_time()
    for event in server.receive_data(preamble):
        accept_all(server, event)
    server.data_to_send()
    next_poll = 0.0
    for timestamp, data in per_message:
        now = timestamp / 1000.0
        while next_poll < now:
            before = len(sink.sent)
            stream.poll(next_poll)
            _note(sink, before, next_poll, arrivals, holds)
            next_poll += POLL
        before = len(sink.sent)
        for event in server.receive_data(data):
            if type(event) is s.MediaReceived:
                # keep the object alive so its id cannot be reused by a generated frame
                arrivals[id(event.payload)] = (now, event.payload)
                stream.publish_media(event.message, now)
        _note(sink, before, now, arrivals, holds)
    stream.end()
    cpu = time.process_time() - t0
    return cpu, holds


def _note(sink, before, now, arrivals, holds):
    # A message the cleaner passes on unchanged is the same bytes object; generated
    # or relabelled ones are new objects and have no arrival to measure from.
    for type_id, key in sink.sent[before:]:
        arrived = arrivals.pop(key, None)
        if arrived is not None:
            holds[type_id].append(now - arrived[0])


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    inputs = {
        # what a good encoder sends: nothing for the cleaner to change
        "steady": make_input(args.seconds, 30, 60),
        # the glasses on a bad day: 12 fps (18 skip frames a second to make) and
        # keyframes every 0.5 s (three of four relabelled)
        "dirty": make_input(args.seconds, 12, 6),
    }
    minutes = args.seconds / 60.0
    bound = CleanerConfig.from_profile("cloudflare").interleave_delay_ms
    print(f"input: {args.seconds} s of 720p H.264 (~2.4 Mbit/s) + AAC 48 kHz per run; {args.repeats} repeats, medians")
    print(f"{'input':8} {'plain CPU-s/stream-min':>23} {'cleaned':>9} {'ratio':>7} {'video hold p50/p99/max ms':>27} {'audio hold p50/p99/max ms':>27}")
    for label, source in inputs.items():
        preamble, per_message = wire_bytes(messages_of(source))
        plain, cleaned, vh, ah = [], [], [], []
        for _ in range(args.repeats):
            cpu_plain, _ = run(preamble, per_message, clean=False)
            cpu_clean, holds = run(preamble, per_message, clean=True)
            plain.append(cpu_plain / minutes)
            cleaned.append(cpu_clean / minutes)
            vh, ah = holds[9], holds[8]
        p, c = statistics.median(plain), statistics.median(cleaned)
        fmt = lambda v: f"{pct(v, .5) * 1000:6.1f}/{pct(v, .99) * 1000:6.1f}/{max(v) * 1000 if v else float('nan'):6.1f}"
        print(f"{label:8} {p:23.3f} {c:9.3f} {c / p:7.2f} {fmt(vh):>27} {fmt(ah):>27}")
    print(f"interleave bound: {bound:.0f} ms (+ {POLL * 1000:.0f} ms poll period)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
