"""The relay path's CPU per forwarded message, in process (issue 11).

From ``LiveStream.publish_media`` (what the server protocol does on the
session's ``MediaReceived``) to the pieces handed to the write path: the
stream (meters, counters, GOP cache), with ``--clean`` the cleaner, and a real
``UpstreamForwarder`` whose protocol is publishing on a real ``ClientSession``
(gate, counters, ``send_media`` -> ``ChunkWriter``, ``TURN.write``) to a
transport that drops what it is given. No sockets, no chunk reader: the
``MediaMessage`` values are made once from the forwarding bench's input before
the clock starts. Time is simulated as in bench/cleaner_cost.py (each message
arrives at its timestamp, the 50 ms poll runs in between), one ``with TURN:``
per message as the server's ``dataReceived`` opens.

    PYTHONPATH=<tree> .venv/bin/python bench/relay_path.py [--repeats 9] [--players 0]

Prints the median microseconds per input message, plain and cleaning, and
their ratio. For an A/B between two trees, run it alternately with each
tree's PYTHONPATH (the machine is shared: interleave, compare medians).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock

from rtmprelay.media.cleaner import CleanerConfig, StreamCleaner
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.client import RTMPClientProtocol, UpstreamForwarder
from rtmprelay.relay.registry import LiveStream
from rtmprelay.relay.transport import TURN
from rtmprelay.rtmp import session as s
from rtmprelay.testing.flv import read_flv_tags

INPUT = Path("/tmp/rtmprelay-bench-cache/720p30-h264-2400k-aac128k-gop2s-60s.flv")
POLL = 0.05


class _Publisher:
    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


class _NullTransport:
    """Takes the pieces and drops them (the write path's own cost is bench/write_path.py's)."""

    def __init__(self):
        self.parts = 0

    def writeSequence(self, parts):
        self.parts += len(parts)

    def write(self, data):
        self.parts += 1


def _forwarder(stream: LiveStream) -> UpstreamForwarder:
    forwarder = UpstreamForwarder(MemoryReactorClock(), stream, "rtmp://up.example/live/key")
    session = s.ClientSession.for_url("rtmp://up.example/live/key")
    session.state = s._ClientState.PUBLISHING
    session.stream_id = 1
    # the chunk size a connected upstream has (its session sent SetChunkSize on connect)
    session.connection._writer.chunk_size = session.connection.config.out_chunk_size
    protocol = RTMPClientProtocol(session, forwarder)
    protocol.transport = _NullTransport()
    forwarder.protocol = protocol
    forwarder.publishing = True
    forwarder.state = "live"
    return forwarder


def run(messages: list[MediaMessage], clean: bool) -> float:
    cleaner = StreamCleaner(CleanerConfig.from_profile("cloudflare")) if clean else None
    stream = LiveStream("live/u/s", _Publisher(), cleaner=cleaner)
    forwarder = _forwarder(stream)
    stream.attach(forwarder)
    next_poll = 0.0
    t0 = time.process_time()
    for message in messages:
        now = message.timestamp / 1000.0
        if clean:
            while next_poll < now:
                with TURN:
                    stream.poll(next_poll)
                next_poll += POLL
        with TURN:
            stream.publish_media(message, now)
    cpu = time.process_time() - t0
    if forwarder.sent_messages < len(messages) * 0.9:
        raise SystemExit(f"only {forwarder.sent_messages} of {len(messages)} messages forwarded")
    return cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--input", type=Path, default=INPUT)
    args = parser.parse_args(argv)
    messages = [MediaMessage.of(t.tag_type, t.timestamp, t.payload) for t in read_flv_tags(args.input) if t.tag_type in (8, 9)]
    n = len(messages)
    plain, cleaned = [], []
    for _ in range(args.repeats):
        plain.append(run(messages, clean=False) / n * 1e6)
        cleaned.append(run(messages, clean=True) / n * 1e6)
    p, c = statistics.median(plain), statistics.median(cleaned)
    print(
        f"{n} messages; us per message, median of {args.repeats} (min): plain {p:.2f} ({min(plain):.2f})  "
        f"cleaning {c:.2f} ({min(cleaned):.2f})  ratio {c / p:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
