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

    PYTHONPATH=<tree> .venv/bin/python bench/relay_path.py [--repeats 9] [--from-bytes]

``--from-bytes`` starts one step earlier, at the socket: the publisher's wire
bytes (a real ``ClientSession``'s chunk stream, one read per message, as the
forwarding bench's publishers send) go to a real ``RTMPServerProtocol``'s
``dataReceived``, so the chunk reader, connection, session and server protocol
are measured too: the whole Python path of the live relay, without the reactor
and the socket calls.

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
from rtmprelay.relay.registry import LiveStream, StreamRegistry
from rtmprelay.relay.server import RTMPServerFactory, ServerConfig
from rtmprelay.relay.transport import TURN
from rtmprelay.rtmp import session as s
from rtmprelay.testing.flv import read_flv_tags
from rtmprelay.testing.memory import publishing_pair

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


class _SocketTransport(_NullTransport):
    """What the server protocol asks of its transport, and nothing kept."""

    disconnecting = False

    def getPeer(self):
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 40000)

    def setTcpNoDelay(self, enabled):
        pass

    def loseConnection(self):
        self.disconnecting = True

    abortConnection = loseConnection


class _Forwarding:
    """The registry listener: a forwarder for the stream as it goes live."""

    def __init__(self):
        self.forwarder: UpstreamForwarder | None = None

    def stream_started(self, stream):
        self.forwarder = _forwarder(stream)
        stream.attach(self.forwarder)

    def stream_ended(self, stream):
        pass


def run_from_bytes(messages: list[MediaMessage], clean: bool) -> float:
    registry = StreamRegistry(cleaning=CleanerConfig.from_profile("cloudflare") if clean else None)
    forwarding = _Forwarding()
    registry.add_listener(forwarding)
    clock = MemoryReactorClock()
    factory = RTMPServerFactory(registry, ServerConfig(), clock)
    protocol = factory.buildProtocol(None)
    transport = _ReplyTransport()
    protocol.makeConnection(transport)
    client = s.ClientSession.for_url("rtmp://127.0.0.1/live/u/s")
    client.initiate()
    for _ in range(20):  # handshake, connect, createStream, publish
        out = client.data_to_send()
        if out:
            protocol.dataReceived(out)
        back = transport.take()
        if back:
            client.receive_data(back)
        if not out and not back:
            break
    if forwarding.forwarder is None:
        raise SystemExit("the publish did not start")
    reads = []
    for message in messages:
        client.send_media(message.type_id, message.timestamp, message.payload)
        reads.append((message.timestamp / 1000.0, client.data_to_send()))
    t0 = time.process_time()
    for now, data in reads:
        clock.advance(now - clock.seconds())  # runs the server's 50 ms poll when armed
        protocol.dataReceived(data)
    cpu = time.process_time() - t0
    sent = forwarding.forwarder.sent_messages
    if sent < len(messages) * 0.9:
        raise SystemExit(f"only {sent} of {len(messages)} messages forwarded")
    return cpu


class _ReplyTransport(_SocketTransport):
    """Keeps what the server says until the handshake is done, then only counts."""

    def __init__(self):
        super().__init__()
        self.kept: list[bytes] = []

    def write(self, data):
        self.kept.append(data)

    def writeSequence(self, parts):
        self.kept.extend(parts)

    def take(self) -> bytes:
        out = b"".join(self.kept)
        self.kept.clear()
        return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--input", type=Path, default=INPUT)
    parser.add_argument("--from-bytes", action="store_true", help="start at the server protocol's dataReceived (see above)")
    args = parser.parse_args(argv)
    runner = run_from_bytes if args.from_bytes else run
    messages = [MediaMessage.of(t.tag_type, t.timestamp, t.payload) for t in read_flv_tags(args.input) if t.tag_type in (8, 9)]
    n = len(messages)
    plain, cleaned = [], []
    for _ in range(args.repeats):
        plain.append(runner(messages, clean=False) / n * 1e6)
        cleaned.append(runner(messages, clean=True) / n * 1e6)
    p, c = statistics.median(plain), statistics.median(cleaned)
    print(
        f"{n} messages; us per message, median of {args.repeats} (min): plain {p:.2f} ({min(plain):.2f})  "
        f"cleaning {c:.2f} ({min(cleaned):.2f})  ratio {c / p:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
