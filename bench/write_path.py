"""Write path (issue 11): CPU per video message sent to N connections, in process.

    .venv/bin/python bench/write_path.py [--sizes 10000,100000] [--sinks 1,10] [--repeats 7]

What the relay does for each sink of one message, without sockets: the
connection's ``send_raw`` (chunking) and taking its output the way the adapters
hand it to the transport (``parts_to_send`` where the tree has it, else
``data_to_send``). Outgoing chunk size 4096 (the relay's), a 30 fps timeline on
chunk stream 6, payloads of random bytes (32 distinct ones, taken in turn). Prints microseconds per message for
all N sinks together (median of ``--repeats`` timeit runs) and per sink, and
the ways of building the chunked form the writer could use, timed alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtmprelay.rtmp.connection import Connection, ConnectionConfig, Role  # noqa: E402

CHUNK = 4096
PAYLOADS = 32


def fan_out_timer(size: int, sinks: int):
    connections = [Connection(Role.SERVER, ConnectionConfig()) for _ in range(sinks)]
    for c in connections:
        c._writer.chunk_size = CHUNK
    # More distinct payloads than the writer's shared cache holds: each message is new
    # to it, as each message from the reader is.
    payloads = [os.urandom(size) for _ in range(PAYLOADS)]
    take = "parts_to_send" if hasattr(Connection, "parts_to_send") else "data_to_send"
    state = {"ts": 0}

    def one_message() -> None:
        ts = state["ts"] = state["ts"] + 33
        payload = payloads[ts // 33 % PAYLOADS]
        for c in connections:
            c.send_raw(9, payload, stream_id=1, timestamp=ts, chunk_stream_id=6)
            getattr(c, take)()

    return one_message, take


def body_variants(size: int) -> dict:
    """Ways to build the shared part of a message's chunks: its data with a
    continuation header (fmt 3, chunk stream 6) before every chunk but the first."""
    payload = os.urandom(size)
    cont = b"\xc6"

    def join(source) -> bytes:
        parts = [source[:CHUNK]]
        for start in range(CHUNK, size, CHUNK):
            parts.append(cont)
            parts.append(source[start : start + CHUNK])
        return b"".join(parts)

    def join_memoryview() -> bytes:
        return join(memoryview(payload))

    def join_bytes_slices() -> bytes:
        return join(payload)

    def sep_join_memoryview() -> bytes:
        view = memoryview(payload)
        return cont.join([view[start : start + CHUNK] for start in range(0, size, CHUNK)])

    def sep_join_bytes() -> bytes:
        return cont.join([payload[start : start + CHUNK] for start in range(0, size, CHUNK)])

    def bytearray_fill() -> bytes:
        view = memoryview(payload)
        out = bytearray(view[:CHUNK])
        for start in range(CHUNK, size, CHUNK):
            out += cont
            out += view[start : start + CHUNK]
        return bytes(out)

    reference = join_memoryview()
    variants = {
        "b''.join(memoryview slices and headers)": join_memoryview,
        "b''.join(bytes slices and headers)": join_bytes_slices,
        "header.join(memoryview slices)": sep_join_memoryview,
        "header.join(bytes slices)": sep_join_bytes,
        "bytearray +=, then bytes()": bytearray_fill,
    }
    for name, fn in variants.items():
        assert fn() == reference, name
    return variants


def best_of(fn, repeats: int, number: int) -> float:
    times = timeit.repeat(fn, repeat=repeats, number=number)
    return statistics.median(times) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--sinks", default="1,10")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    counts = [int(x) for x in args.sinks.split(",")]
    print("payload  sinks  us/message  us/sink  (output taken with", end=" ")
    for size in sizes:
        for sinks in counts:
            fn, take = fan_out_timer(size, sinks)
            number = max(50, 20000 // (sinks * max(1, size // 10000)))
            us = best_of(fn, args.repeats, number)
            if size == sizes[0] and sinks == counts[0]:
                print(f"{take})")
            print(f"{size:7}  {sinks:5}  {us:10.2f}  {us / sinks:7.2f}")
    print("\nbuilding the chunked form alone (us):")
    for size in sizes:
        for name, fn in body_variants(size).items():
            print(f"{size:7}  {best_of(fn, args.repeats, 2000):8.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
