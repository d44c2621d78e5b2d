"""The write path's sharing (issue 11): a message's chunked form made once for
every connection with the same chunk size must put the same bytes on each wire
as a writer that makes its own; the cache stays bounded; a connection's pieces
and a turn's writes leave in order."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport

from rtmprelay.relay.transport import TurnWrites, send_parts
from rtmprelay.rtmp.chunks import ChunkReader, ChunkWriter, Message, SharedChunks
from rtmprelay.rtmp.connection import Connection, Role
from tests.unit.test_chunks import _traffic

_UNSHARED = SharedChunks(entries=0)


# --- byte-identical to an unshared writer ---------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    traffic=_traffic(),
    chunk_sizes=st.lists(st.sampled_from([1, 3, 64, 128, 4096]), min_size=2, max_size=4),
    histories=st.data(),
)
def test_shared_writers_put_the_same_bytes_as_unshared_ones(traffic, chunk_sizes, histories):
    """Writers with their own chunk sizes and header histories (so each message's first
    header takes another format on each: 0, 1, 2 or 3, with or without an extended
    timestamp) are fed the same message objects in fan-out order; each one's wire
    is byte for byte what a writer that shares nothing writes."""
    shared = SharedChunks()
    pairs = []
    for chunk_size in chunk_sizes:
        sharing, alone = ChunkWriter(chunk_size, shared=shared), ChunkWriter(chunk_size, shared=_UNSHARED)
        # A history of its own on some chunk streams, written to both.
        for kind, item in histories.draw(_traffic()):
            if kind == "message":
                assert sharing.write(item) == alone.write(item)
        pairs.append((sharing, alone))
    for kind, item in traffic:
        if kind != "message":
            continue
        for sharing, alone in pairs:
            assert sharing.write(item) == alone.write(item)


def test_the_shared_form_is_made_once_per_chunk_size_and_continuation():
    shared = SharedChunks()
    writers = [ChunkWriter(4096, shared=shared) for _ in range(10)]
    payload = bytes(range(256)) * 40  # 10 KB: three chunks
    message = Message(9, payload, 1000, 1, 6)
    parts = [w.write_parts(message) for w in writers]
    assert shared.made == 1 and shared.reused == 9
    assert all(body is parts[0][1] for _, body in parts)  # one object on every connection
    # Another chunk size, or an extended timestamp to repeat, is another form.
    ChunkWriter(128, shared=shared).write(message)
    ChunkWriter(4096, shared=shared).write(Message(9, payload, 0x1000000, 1, 6))
    assert shared.made == 3


def test_the_first_header_still_follows_each_connections_history():
    shared = SharedChunks()
    fresh, warm = ChunkWriter(128, shared=shared), ChunkWriter(128, shared=shared)
    warm.write(Message(9, bytes(300), 934, 1, 6))
    warm.write(Message(9, bytes(300), 967, 1, 6))  # a type 2 header: the delta is now 33
    message = Message(9, bytes(range(100)) * 3, 1000, 1, 6)
    fresh_header, fresh_body = fresh.write_parts(message)
    warm_header, warm_body = warm.write_parts(message)
    assert fresh_header[0] >> 6 == 0 and warm_header[0] >> 6 == 3  # type 0 vs type 3 (same delta)
    assert warm_body is fresh_body
    reader = ChunkReader(128)
    assert reader.feed(fresh_header + fresh_body) == [message]


def test_a_payload_that_is_not_bytes_is_written_the_same():
    writer, reference = ChunkWriter(128, shared=SharedChunks()), ChunkWriter(128, shared=_UNSHARED)
    data = bytes(range(256)) * 2
    assert writer.write(Message(9, bytearray(data), 0, 1, 6)) == reference.write(Message(9, data, 0, 1, 6))
    assert writer.write(Message(9, memoryview(data), 33, 1, 6)) == reference.write(Message(9, data, 33, 1, 6))


# --- bounded ------------------------------------------------------------------------------


def test_the_cache_keeps_at_most_its_entries():
    shared = SharedChunks(entries=3)
    writer = ChunkWriter(128, shared=shared)
    for i in range(10):
        writer.write(Message(9, bytes([i]) * 1000, 33 * i, 1, 6))
        assert len(shared) <= 3
    assert len(shared) == 3 and shared.held_bytes == 3 * (1000 + 7)  # 8 chunks: 7 continuation headers
    assert shared.made == 10 and shared.reused == 0


def test_a_form_above_the_byte_bound_is_not_kept():
    shared = SharedChunks(entries=4, max_bytes=10_000)
    writer = ChunkWriter(4096, shared=shared)
    writer.write(Message(9, bytes(20_000), 0, 1, 6))
    assert len(shared) == 0 and shared.made == 1
    writer.write(Message(9, bytes(9_000), 33, 1, 6))
    assert len(shared) == 1


def test_one_payload_at_two_chunk_sizes_alternately():
    shared = SharedChunks(entries=2)
    small, big = ChunkWriter(100, shared=shared), ChunkWriter(200, shared=shared)
    small_reader, big_reader = ChunkReader(100), ChunkReader(200)
    payload = bytes(range(250)) * 2
    for ts in (0, 40, 80):
        message = Message(9, payload, ts, 1, 6)
        assert small_reader.feed(small.write(message)) == [message]
        assert big_reader.feed(big.write(message)) == [message]
    assert len(shared) <= 2


# --- the connection's pieces --------------------------------------------------------------


def test_connections_hand_over_pieces_uncopied_and_count_them():
    first, second = Connection(Role.SERVER), Connection(Role.SERVER)
    payload = bytes(range(256)) * 100
    for c in (first, second):
        c._writer.chunk_size = 4096
        c.send_raw(9, payload, stream_id=1, timestamp=40, chunk_stream_id=6)
    one, two = first.parts_to_send(), second.parts_to_send()
    assert one[1] is two[1]
    assert first.bytes_sent == sum(map(len, one))
    assert first.parts_to_send() == [] and first.data_to_send() == b""
    second.send_raw(8, b"\xaf\x01aac", stream_id=1, timestamp=41, chunk_stream_id=4)
    assert second.data_to_send() == ChunkWriter(shared=_UNSHARED).write(Message(8, b"\xaf\x01aac", 41, 1, 4))


# --- writing a turn's pieces --------------------------------------------------------------


def test_a_turn_keeps_each_transports_writes_until_it_ends():
    turn = TurnWrites()
    a, b = StringTransport(), StringTransport()
    with turn:
        turn.write(a, [b"1", b"2"])
        with turn:
            turn.write(b, [b"x"])
            turn.write(a, [b"3"])
        assert a.value() == b"" and b.value() == b""  # the inner end is not the turn's end
    assert a.value() == b"123" and b.value() == b"x"
    turn.write(a, [b"4"])  # outside a turn: at once
    assert a.value() == b"1234"


def test_a_turn_ends_even_when_its_work_raises():
    turn = TurnWrites()
    a = StringTransport()
    with pytest.raises(ZeroDivisionError), turn:
        turn.write(a, [b"sent"])
        1 / 0
    assert a.value() == b"sent"
    turn.write(a, [b" now"])
    assert a.value() == b"sent now"


@pytest.fixture
def tcp_pair():
    """A Twisted TCP transport on one end of a socket pair with a small send buffer; the other end."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    protocol = Protocol()
    transport = tcp.Server(ours, protocol, ("127.0.0.1", 1), None, 1, MemoryReactor())
    protocol.makeConnection(transport)
    yield transport, theirs
    ours.close()
    theirs.close()


def _drain(transport, theirs, expected: int) -> bytes:
    received = bytearray()
    theirs.settimeout(5)
    while len(received) < expected:
        received += theirs.recv(1 << 16)
        if transport._tempDataLen or transport.dataBuffer:
            transport.doWrite()
    return bytes(received)


def test_send_parts_goes_straight_to_the_socket_when_nothing_is_queued(tcp_pair):
    transport, theirs = tcp_pair
    send_parts(transport, [b"header", b"body"])
    assert not transport._tempDataLen and not transport.dataBuffer  # nothing left to Twisted
    assert theirs.recv(100) == b"headerbody"


def test_what_the_socket_does_not_take_is_queued_in_order(tcp_pair):
    transport, theirs = tcp_pair
    parts = [bytes([i]) * 50_000 for i in range(4)]
    send_parts(transport, parts[:3])
    assert transport._tempDataLen  # the socket took only part of it
    send_parts(transport, parts[3:])  # behind the queue, never before it
    assert _drain(transport, theirs, 200_000) == b"".join(parts)


def test_a_transport_without_twisteds_private_fields_gets_write_sequence(monkeypatch):
    """Should a Twisted release rename what ``send_parts`` reads, writes still go out (slower)."""
    from rtmprelay.relay import transport as transport_module

    class Renamed:
        def __init__(self):
            self.sequences = []

        def writeSequence(self, parts):
            self.sequences.append(list(parts))

    monkeypatch.setattr(transport_module, "_TCP_TRANSPORTS", (Renamed,))
    renamed = Renamed()
    transport_module.send_parts(renamed, [b"a", b"b"])
    assert renamed.sequences == [[b"a", b"b"]]
