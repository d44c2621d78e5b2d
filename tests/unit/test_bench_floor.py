"""The forwarding bench's floors (bench/_floor_forward.py) forward what they are given.

A floor that lost or mangled messages would be cheaper than any real relay for
the wrong reason: each re-chunker must give nginx the publisher's messages,
byte for byte, however the reads split them.
"""

from __future__ import annotations

import importlib.util
import random
import struct
from pathlib import Path

import pytest

from rtmprelay.rtmp.chunks import ChunkReader, ChunkWriter, Message

FLOOR = Path(__file__).resolve().parents[2] / "bench" / "_floor_forward.py"


@pytest.fixture(scope="module")
def floor():
    spec = importlib.util.spec_from_file_location("_floor_forward", FLOOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def publish(rng: random.Random) -> tuple[list[Message], bytes]:
    """What a publisher sends after the handshake: a Set Chunk Size to 4096, then media."""
    writer = ChunkWriter(128)
    sent = [Message(1, struct.pack(">I", 4096), 0, 0, 2)]
    stream = writer.write(sent[0])
    writer.chunk_size = 4096
    timestamp = 0
    for _ in range(300):
        type_id = rng.choice([8, 9, 9, 18])
        timestamp += rng.randint(0, 40)
        message = Message(type_id, rng.randbytes(rng.randint(1, 20_000)), timestamp, 1, {8: 4, 9: 6, 18: 4}[type_id])
        sent.append(message)
        stream += writer.write(message)
    return sent, stream


@pytest.mark.parametrize("mode", ["tcp", "rtmp", "core"])
@pytest.mark.parametrize("seed", [1, 2])
def test_each_floor_forwards_every_message_whatever_the_reads(floor, mode, seed):
    rng = random.Random(seed)
    sent, stream = publish(rng)
    rechunker = floor.MODES[mode]()
    out = bytearray()
    offset = 0
    while offset < len(stream):
        size = rng.choice([1, 7, 100, 4096, 9000, 30_000])
        out += b"".join(rechunker.feed(stream[offset : offset + size]))
        offset += size
    received = ChunkReader().feed(bytes(out))
    as_sent = [(m.type_id, m.timestamp, m.stream_id, m.payload) for m in sent]
    assert [(m.type_id, m.timestamp, m.stream_id, m.payload) for m in received] == as_sent
