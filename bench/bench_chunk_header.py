"""How much the chunk layer costs: one header with struct vs construct, and
ChunkReader / ChunkWriter throughput on 2.5 Mbit/s-like traffic.

    python bench/bench_chunk_header.py [--seconds 10] [--repeat 7]

Each figure is the median of ``--repeat`` timeit runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import sys
import timeit
from pathlib import Path

import construct as c

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtmprelay.rtmp.chunks import ChunkReader, ChunkWriter, Message  # noqa: E402

# A type 0 header on csid 6: basic header, then the 11-byte message header
# (timestamp 1000, length 10000, video, message stream 1).
HEADER = bytes([0x06]) + (1000).to_bytes(3, "big") + (10000).to_bytes(3, "big") + b"\x09" + (1).to_bytes(4, "little")

# --- one header, two ways --------------------------------------------------------

_BE_U32_U32 = struct.Struct(">II").unpack_from
_LE_U32 = struct.Struct("<I").unpack_from


def parse_with_struct(buf: bytes, pos: int = 0):
    """The way chunks.py reads it: two u32 reads that straddle the fields."""
    b0 = buf[pos]
    field, length_type = _BE_U32_U32(buf, pos)  # the basic byte + timestamp, length + type
    return (
        b0 >> 6,
        b0 & 0x3F,
        field & 0xFFFFFF,
        length_type >> 8,
        length_type & 0xFF,
        _LE_U32(buf, pos + 8)[0],
    )


CONSTRUCT_HEADER = c.Struct(
    "basic" / c.Int8ub,
    "timestamp" / c.Int24ub,
    "length" / c.Int24ub,
    "type_id" / c.Int8ub,
    "stream_id" / c.Int32ul,
)
# The same with the basic header declared bit by bit, as one would for clarity.
CONSTRUCT_BITS_HEADER = c.Struct(
    "basic" / c.BitStruct("fmt" / c.BitsInteger(2), "csid" / c.BitsInteger(6)),
    "timestamp" / c.Int24ub,
    "length" / c.Int24ub,
    "type_id" / c.Int8ub,
    "stream_id" / c.Int32ul,
)


def parse_with_construct(buf: bytes, header=CONSTRUCT_HEADER):
    h = header.parse(buf)
    return h.basic >> 6, h.basic & 0x3F, h.timestamp, h.length, h.type_id, h.stream_id


def parse_with_construct_bits(buf: bytes):
    h = CONSTRUCT_BITS_HEADER.parse(buf)
    return h.basic.fmt, h.basic.csid, h.timestamp, h.length, h.type_id, h.stream_id


# --- traffic ---------------------------------------------------------------------------


def traffic(seconds: int, seed: int = 1) -> list[Message]:
    """30 video messages of about 10 KB and 43 AAC-sized audio messages a second."""
    rng = random.Random(seed)
    events = []
    for second in range(seconds):
        for i in range(30):
            size = 30_000 if i == 0 else rng.randint(8_000, 10_500)  # a keyframe each second
            events.append((second * 1000 + i * 1000 // 30, 9, size))
        for i in range(43):
            events.append((second * 1000 + i * 1000 // 43, 8, rng.randint(350, 450)))
    events.sort()
    blob = rng.randbytes(30_000)
    return [
        Message(type_id, blob[:size], timestamp, 1, 6 if type_id == 9 else 4) for timestamp, type_id, size in events
    ]


def median_seconds(timer: timeit.Timer, number: int, repeat: int) -> float:
    return statistics.median(timer.repeat(repeat=repeat, number=number)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="seconds of traffic to generate")
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats (the median is reported)")
    args = parser.parse_args()

    expected = (0, 6, 1000, 10000, 9, 1)
    assert parse_with_struct(HEADER) == parse_with_construct(HEADER) == parse_with_construct_bits(HEADER) == expected
    n = 100_000
    struct_us = median_seconds(timeit.Timer(lambda: parse_with_struct(HEADER)), n, args.repeat) * 1e6
    construct_us = median_seconds(timeit.Timer(lambda: parse_with_construct(HEADER)), n // 10, args.repeat) * 1e6
    print(f"type 0 chunk header (1 + 11 bytes), median of {args.repeat}:")
    print(f"  struct            {struct_us:8.3f} us/header")
    bits_us = median_seconds(timeit.Timer(lambda: parse_with_construct_bits(HEADER)), n // 10, args.repeat) * 1e6
    print(f"  construct         {construct_us:8.3f} us/header  ({construct_us / struct_us:.0f}x)")
    print(f"  construct, bits   {bits_us:8.3f} us/header  ({bits_us / struct_us:.0f}x, BitStruct basic header)")
    try:
        compiled = CONSTRUCT_HEADER.compile()
    except Exception as error:  # construct cannot compile every construct
        print(f"  construct compiled: n/a ({type(error).__name__})")
    else:
        compiled_us = (
            median_seconds(timeit.Timer(lambda: parse_with_construct(HEADER, compiled)), n // 10, args.repeat) * 1e6
        )
        print(f"  construct compiled {compiled_us:7.3f} us/header  ({compiled_us / struct_us:.0f}x)")

    messages = traffic(args.seconds)
    payload_bytes = sum(len(message.payload) for message in messages)

    def write_all() -> bytes:
        writer = ChunkWriter(4096)
        return b"".join([writer.write(message) for message in messages])

    wire = write_all()
    reads = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]
    segments = [wire[i : i + 1460] for i in range(0, len(wire), 1460)]

    def read_all(parts) -> int:
        reader = ChunkReader(4096)
        count = 0
        for part in parts:
            count += len(reader.feed(part))
        return count

    assert read_all(reads) == read_all(segments) == len(messages)
    mbps = payload_bytes * 8 / args.seconds / 1e6
    print(
        f"\ntraffic: {args.seconds} s, {len(messages)} messages, {payload_bytes / 1e6:.2f} MB of payload "
        f"({mbps:.2f} Mbit/s), {len(wire) / 1e6:.2f} MB on the wire at chunk size 4096"
    )
    for name, run in (
        ("ChunkWriter.write", write_all),
        ("ChunkReader.feed, 64 KiB reads", lambda: read_all(reads)),
        ("ChunkReader.feed, 1460-byte reads", lambda: read_all(segments)),
    ):
        seconds = median_seconds(timeit.Timer(run), 1, args.repeat)
        print(
            f"  {name:34s} {len(wire) / seconds / 1e6:8.1f} MB/s  "
            f"{seconds / len(messages) * 1e6:6.2f} us/message  "
            f"{args.seconds / seconds:8.0f}x real time"
        )


if __name__ == "__main__":
    main()
