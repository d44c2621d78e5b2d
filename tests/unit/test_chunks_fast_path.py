"""The chunk reader's fast path (a whole message and its type 3 continuations in one
``feed``) gives what the chunk-by-chunk path gives, however the stream is cut.

Fed whole, most multi-chunk messages take the whole-message path; fed byte by byte,
none can (no single byte holds a whole message of more than one chunk); random cuts
mix the two with the path for the rest of a message begun in an earlier feed.
Messages, counters and errors (what and where) must be the same in every case."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmprelay.errors import ChunkStreamError
from rtmprelay.rtmp.chunks import MAX_CHUNK_STREAM_ID, ChunkReader, ChunkWriter, Message
from tests.unit.test_chunks import _traffic, feed_bytewise, feed_split, feed_whole, traffic_wire


def _reader(initial: int, budget: int | None = None) -> ChunkReader:
    reader = ChunkReader(initial, max_chunk_streams=MAX_CHUNK_STREAM_ID, max_peer_chunk_size=0x7FFFFFFF)
    reader.message_budget = budget
    return reader


def _outcome(wire: bytes, feed, initial: int, budget: int | None = None):
    """Every message completed (payloads as bytes), the reader's counters, and the error if any."""
    reader = _reader(initial, budget)
    got: list[Message] = []
    try:
        for piece in feed(wire):
            got += reader.feed(piece)
    except ChunkStreamError as error:
        return got, (error.what, error.where)
    assert all(type(message.payload) is bytes for message in got)
    return got, (reader.bytes_received, reader.chunk_size, reader._in_progress, reader._pending_bytes)


def _whole(wire):
    return [wire]


def _bytewise(wire):
    return [wire[i : i + 1] for i in range(len(wire))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traffic=_traffic(), initial=st.sampled_from([1, 3, 128, 4096]), data=st.data())
def test_fast_path_gives_what_the_chunk_loop_gives(traffic, initial, data):
    wire, expected = traffic_wire(traffic, initial)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=30))
    whole = _outcome(wire, _whole, initial)
    assert whole[0] == expected
    assert _outcome(wire, _bytewise, initial) == whole
    assert _outcome(wire, _splitter(cuts), initial) == whole


def _splitter(cuts):
    def split(wire):
        bounds = [0, *sorted(cuts), len(wire)]
        return [wire[a:b] for a, b in zip(bounds, bounds[1:])]

    return split


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traffic=_traffic(), initial=st.sampled_from([1, 3, 128]), budget=st.integers(0, 10), data=st.data())
def test_a_budget_error_names_the_same_chunk_on_both_paths(traffic, initial, budget, data):
    wire, _ = traffic_wire(traffic, initial)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=30))
    # The messages before an error come out only from the feeds before it: compare the rest.
    bytewise = _outcome(wire, _bytewise, initial, budget)[1]
    assert _outcome(wire, _whole, initial, budget)[1] == bytewise
    assert _outcome(wire, _splitter(cuts), initial, budget)[1] == bytewise


def test_a_chunk_of_another_stream_between_continuations_is_read_chunk_by_chunk():
    video = Message(9, bytes(range(256)) + bytes(44), 40, 1, 6)
    audio = Message(8, b"\xaf\x01abc", 41, 1, 4)
    first = ChunkWriter(128).write(video)
    wire = first[: 12 + 128] + ChunkWriter(128).write(audio) + first[12 + 128 :]
    assert feed_whole(wire) == feed_bytewise(wire) == feed_split(wire, [200]) == [audio, video]
