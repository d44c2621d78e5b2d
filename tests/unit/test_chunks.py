"""The chunk stream reader and writer: byte-exact vectors, real captures,
round trips under random slicing, and hostile input."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmprelay.errors import ChunkStreamError
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp.chunks import (
    MAX_CHUNK_STREAM_ID,
    ChunkReader,
    ChunkWriter,
    Message,
    default_chunk_stream_id,
)

DATA = Path(__file__).resolve().parent.parent / "data"
HANDSHAKE_SIZE = 1 + 1536 + 1536  # C0+C1+C2 or S0+S1+S2



def _captures(pattern: str) -> list[Path]:
    """Captures that hold more than the handshake (some may still be written)."""
    return [path for path in sorted(DATA.glob(pattern)) if path.stat().st_size > HANDSHAKE_SIZE]


CAPTURES = _captures("*.c2s.bin") + _captures("*.s2c.bin")
CLIENT_CAPTURES = _captures("*.c2s.bin")
SERVER_CAPTURES = _captures("*.s2c.bin")


# --- helpers -------------------------------------------------------------------


def feed_whole(data: bytes, reader: ChunkReader | None = None) -> list[Message]:
    return (reader or ChunkReader()).feed(data)


def feed_bytewise(data: bytes, reader: ChunkReader | None = None) -> list[Message]:
    reader = reader or ChunkReader()
    out: list[Message] = []
    for i in range(len(data)):
        out += reader.feed(data[i : i + 1])
    return out


def feed_split(data: bytes, cuts, reader: ChunkReader | None = None) -> list[Message]:
    reader = reader or ChunkReader()
    out: list[Message] = []
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += reader.feed(data[start:cut])
        start = cut
    return out


def random_cuts(size: int, seed: int, count: int = 200) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(size + 1) for _ in range(count)]


def basic(csid: int, fmt: int = 0) -> bytes:
    """The shortest basic header for ``csid``, written out independently of chunks.py."""
    if csid < 64:
        return bytes([fmt << 6 | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) % 256, (csid - 64) // 256])


def fmt0(csid_byte: bytes, timestamp: int, length: int, type_id: int, stream_id: int) -> bytes:
    """A type 0 header with a one-, two- or three-byte basic header given as bytes."""
    field = min(timestamp, 0xFFFFFF)
    head = csid_byte + field.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes([type_id])
    head += stream_id.to_bytes(4, "little")
    if field == 0xFFFFFF:
        head += timestamp.to_bytes(4, "big")
    return head


def msg(type_id=9, payload=b"x", timestamp=0, stream_id=1, csid=6) -> Message:
    return Message(type_id, payload, timestamp, stream_id, csid)


# --- basic headers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("csid", "basic"),
    [
        (2, b"\x02"),
        (3, b"\x03"),
        (63, b"\x3f"),
        (64, b"\x00\x00"),
        (65, b"\x00\x01"),
        (319, b"\x00\xff"),
        (320, b"\x01\x00\x01"),
        # The three-byte form: csid - 64 with the LOW byte first (RTMP 1.0
        # 5.3.1.1; ffmpeg reads it with AV_RL16, nginx-rtmp and librtmp alike).
        (64 + 0x1234, b"\x01\x34\x12"),
        (MAX_CHUNK_STREAM_ID, b"\x01\xff\xff"),
    ],
)
def test_basic_header_forms(csid, basic):
    message = Message(20, b"abc", 1000, 0, csid)
    wire = ChunkWriter().write(message)
    assert wire == basic + b"\x00\x03\xe8" + b"\x00\x00\x03" + b"\x14" + b"\x00\x00\x00\x00" + b"abc"
    assert feed_whole(wire) == [message]


def test_three_byte_form_byte_order_is_low_byte_first():
    # 0x01 0x02 0x01 is 64 + 0x02 + 0x01 * 256 = 322; the other order would be 577.
    wire = fmt0(b"\x01\x02\x01", 0, 1, 8, 1) + b"a"
    assert feed_whole(wire) == [Message(8, b"a", 0, 1, 322)]


def test_reader_accepts_longer_than_needed_basic_headers():
    # csid 100 in its two-byte form, then in the three-byte form continuing it.
    wire = fmt0(b"\x00\x24", 5, 2, 8, 1) + b"ab" + b"\xc1\x24\x00" + b"cd"
    assert feed_whole(wire) == [Message(8, b"ab", 5, 1, 100), Message(8, b"cd", 10, 1, 100)]


def test_writer_refuses_reserved_chunk_stream_ids():
    with pytest.raises(ValueError):
        ChunkWriter().write(Message(8, b"", 0, 0, 1))
    with pytest.raises(ValueError):
        ChunkWriter().write(Message(8, b"", 0, 0, MAX_CHUNK_STREAM_ID + 1))


# --- message header formats ------------------------------------------------------


def test_each_header_format_byte_exact():
    writer = ChunkWriter()
    messages = [
        msg(8, b"aa", 0, csid=4),  # fmt 0: first on csid 4
        msg(8, b"bb", 0, csid=4),  # fmt 3: delta 0 after a type 0 at time 0
        msg(8, b"ccc", 23, csid=4),  # fmt 1: length changed
        msg(8, b"ddd", 46, csid=4),  # fmt 3: same delta 23
        msg(8, b"eee", 70, csid=4),  # fmt 2: delta 24
        msg(9, b"eee", 80, csid=4),  # fmt 1: type changed
        msg(9, b"fff", 80, stream_id=2, csid=4),  # fmt 0: stream id changed
        msg(9, b"ggg", 50, stream_id=2, csid=4),  # fmt 0: time went backwards
    ]
    wires = [writer.write(message) for message in messages]
    assert wires == [
        b"\x04" + b"\x00\x00\x00" + b"\x00\x00\x02" + b"\x08" + b"\x01\x00\x00\x00" + b"aa",
        b"\xc4" + b"bb",
        b"\x44" + b"\x00\x00\x17" + b"\x00\x00\x03" + b"\x08" + b"ccc",
        b"\xc4" + b"ddd",
        b"\x84" + b"\x00\x00\x18" + b"eee",
        b"\x44" + b"\x00\x00\x0a" + b"\x00\x00\x03" + b"\x09" + b"eee",
        b"\x04" + b"\x00\x00\x50" + b"\x00\x00\x03" + b"\x09" + b"\x02\x00\x00\x00" + b"fff",
        b"\x04" + b"\x00\x00\x32" + b"\x00\x00\x03" + b"\x09" + b"\x02\x00\x00\x00" + b"ggg",
    ]
    data = b"".join(wires)
    assert feed_whole(data) == messages
    assert feed_bytewise(data) == messages


def test_type_3_starting_a_message_after_type_0_adds_the_type_0_timestamp():
    # RTMP 1.0 5.3.1.2.4, ffmpeg rtmppkt.c and librtmp: after a type 0 header
    # the delta a type 3 header adds is the type 0 timestamp itself.
    wire = fmt0(b"\x04", 100, 1, 8, 1) + b"a" + b"\xc4" + b"b" + b"\xc4" + b"c"
    assert [m.timestamp for m in feed_whole(wire)] == [100, 200, 300]


def test_writer_avoids_type_3_right_after_a_nonzero_type_0():
    # nginx-rtmp would read that type 3 as delta 0, ffmpeg as delta 100: send
    # a type 2 so that both get 200, then type 3 once the delta is a real one.
    writer = ChunkWriter()
    assert writer.write(msg(8, b"a", 100, csid=4))[0] == 0x04
    assert writer.write(msg(8, b"b", 200, csid=4)) == b"\x84\x00\x00\x64b"
    assert writer.write(msg(8, b"c", 300, csid=4)) == b"\xc4c"


def test_fmt_1_and_2_deltas_accumulate():
    wire = (
        fmt0(b"\x06", 1000, 2, 9, 1)
        + b"v0"
        + b"\x46\x00\x00\x21\x00\x00\x01\x09"  # fmt 1: +33, length 1
        + b"1"
        + b"\x86\x00\x00\x22"  # fmt 2: +34
        + b"2"
        + b"\xc6"  # fmt 3: +34 again
        + b"3"
    )
    assert [(m.timestamp, m.payload) for m in feed_whole(wire)] == [
        (1000, b"v0"),
        (1033, b"1"),
        (1067, b"2"),
        (1101, b"3"),
    ]


def test_timestamps_wrap_at_32_bits():
    writer = ChunkWriter()
    first = msg(8, b"a", 0xFFFFFFF0, csid=4)
    second = msg(8, b"b", 0x10, csid=4)  # wrapped: a new type 0
    data = writer.write(first) + writer.write(second)
    assert feed_whole(data) == [first, second]
    # A delta that carries past 2**32 wraps on reading.
    wire = fmt0(b"\x04", 0xFFFFFFF0, 1, 8, 1) + b"a" + b"\x84\x00\x00\x20" + b"b"
    assert [m.timestamp for m in feed_whole(wire)] == [0xFFFFFFF0, 0x10]


def test_zero_length_messages():
    writer = ChunkWriter()
    messages = [msg(18, b"", 0, csid=5), msg(18, b"", 0, csid=5), msg(18, b"x", 5, csid=5)]
    data = b"".join(writer.write(message) for message in messages)
    assert data[:12] == b"\x05\x00\x00\x00\x00\x00\x00\x12\x01\x00\x00\x00"
    assert feed_whole(data) == messages
    assert feed_bytewise(data) == messages


def test_interleaved_chunk_streams():
    # Video on 6 cut at 128 bytes with an audio message between its chunks.
    video = bytes(range(200))
    wire = (
        fmt0(b"\x06", 40, 200, 9, 1)
        + video[:128]
        + fmt0(b"\x04", 41, 3, 8, 1)
        + b"aud"
        + b"\xc6"
        + video[128:]
    )
    assert feed_whole(wire) == [Message(8, b"aud", 41, 1, 4), Message(9, video, 40, 1, 6)]


# --- extended timestamps ------------------------------------------------------------


def test_extended_timestamp_type_0_byte_exact():
    message = msg(9, b"abc", 0x01000000, csid=6)
    wire = ChunkWriter().write(message)
    assert wire == b"\x06\xff\xff\xff\x00\x00\x03\x09\x01\x00\x00\x00\x01\x00\x00\x00abc"
    assert feed_whole(wire) == [message]


def test_extended_timestamp_at_exactly_0xffffff():
    # A timestamp of 0xFFFFFF itself must go extended: the field value is the flag.
    message = msg(9, b"abc", 0xFFFFFF, csid=6)
    wire = ChunkWriter().write(message)
    assert wire[1:4] == b"\xff\xff\xff" and wire[12:16] == b"\x00\xff\xff\xff"
    assert feed_whole(wire) == [message]


def test_extended_delta_in_type_1_and_2():
    writer = ChunkWriter()
    messages = [
        msg(9, b"a", 5, csid=6),
        msg(9, b"bb", 5 + 0x02000000, csid=6),  # fmt 1, extended delta
        msg(9, b"cc", 5 + 0x04000000, csid=6),  # fmt 3, the same extended delta again
        msg(9, b"dd", 6 + 0x04000000, csid=6),  # fmt 2, small delta
    ]
    wires = [writer.write(message) for message in messages]
    assert wires[1] == b"\x46\xff\xff\xff\x00\x00\x02\x09\x02\x00\x00\x00bb"
    # A type 3 header after an extended one carries the 4 bytes too.
    assert wires[2] == b"\xc6\x02\x00\x00\x00cc"
    assert wires[3] == b"\x86\x00\x00\x01dd"
    assert feed_whole(b"".join(wires)) == messages


# A 300-byte message at 0x01000000 on csid 6, chunk size 128, in both forms.
_EXT_PAYLOAD = bytes(range(256)) + bytes(44)
_EXT_HEADER = b"\x06\xff\xff\xff\x00\x01\x2c\x09\x01\x00\x00\x00\x01\x00\x00\x00"
_WITH_REPEAT = (
    _EXT_HEADER
    + _EXT_PAYLOAD[:128]
    + b"\xc6\x01\x00\x00\x00"
    + _EXT_PAYLOAD[128:256]
    + b"\xc6\x01\x00\x00\x00"
    + _EXT_PAYLOAD[256:]
)
_WITHOUT_REPEAT = _EXT_HEADER + _EXT_PAYLOAD[:128] + b"\xc6" + _EXT_PAYLOAD[128:256] + b"\xc6" + _EXT_PAYLOAD[256:]


def test_writer_repeats_extended_timestamp_in_continuation_chunks():
    message = Message(9, _EXT_PAYLOAD, 0x01000000, 1, 6)
    assert ChunkWriter().write(message) == _WITH_REPEAT


@pytest.mark.parametrize("wire", [_WITH_REPEAT, _WITHOUT_REPEAT], ids=["repeated", "not-repeated"])
@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])
def test_continuation_after_extended_timestamp_both_forms(wire, feed):
    expected = [Message(9, _EXT_PAYLOAD, 0x01000000, 1, 6)]
    # And a following message on the same csid must still line up.
    follow = b"\x86\x00\x00\x21"  # fmt 2, +33, same length 300
    tail_payload = bytes(reversed(_EXT_PAYLOAD))
    tail = follow + tail_payload[:128] + b"\xc6" + tail_payload[128:256] + b"\xc6" + tail_payload[256:]
    expected.append(Message(9, tail_payload, 0x01000000 + 33, 1, 6))
    assert feed(wire + tail) == expected


def test_not_repeated_form_with_a_short_last_chunk():
    # The last chunk holds 2 bytes, fewer than an extended timestamp: the
    # reader must not wait for 4 bytes that are not coming when the bytes it
    # has already differ from the timestamp.
    payload = bytes(130)
    wire = b"\x06\xff\xff\xff\x00\x00\x82\x09\x01\x00\x00\x00\x01\x00\x00\x00" + payload[:128] + b"\xc6" + payload[128:]
    reader = ChunkReader()
    out = []
    for i in range(len(wire)):
        out += reader.feed(wire[i : i + 1])
    assert out == [Message(9, payload, 0x01000000, 1, 6)]


def test_type_3_starting_a_message_after_an_extended_header_reads_its_delta():
    wire = (
        fmt0(b"\x06", 0x01000000, 1, 9, 1)
        + b"a"
        + b"\xc6\x00\x00\x00\x21"  # a new message: its delta is the 4 bytes (33)
        + b"b"
    )
    assert [(m.timestamp, m.payload) for m in feed_whole(wire)] == [(0x01000000, b"a"), (0x01000021, b"b")]


# --- protocol control the reader applies itself ---------------------------------------


def test_set_chunk_size_applies_at_the_byte_where_it_completes():
    writer = ChunkWriter()
    set_size = Message(1, (4096).to_bytes(4, "big"), 0, 0, 2)
    big = Message(9, bytes(range(256)) * 4, 0, 1, 6)
    data = writer.write(set_size)
    writer.chunk_size = 4096
    data += writer.write(big)
    assert b"\xc6" not in data[16:17]  # one chunk: no continuation header
    reader = ChunkReader()
    assert reader.feed(data) == [set_size, big]
    assert reader.chunk_size == 4096
    assert feed_bytewise(data) == [set_size, big]


def test_set_chunk_size_one():
    writer = ChunkWriter()
    data = writer.write(Message(1, b"\x00\x00\x00\x01", 0, 0, 2))
    writer.chunk_size = 1
    message = Message(20, b"hello", 0, 0, 3)
    wire = writer.write(message)
    assert wire == b"\x03\x00\x00\x00\x00\x00\x05\x14\x00\x00\x00\x00h\xc3e\xc3l\xc3l\xc3o"
    assert feed_whole(data + wire)[1] == message


def test_abort_discards_the_message_in_progress():
    wire = (
        fmt0(b"\x06", 10, 300, 9, 1)
        + bytes(128)
        + fmt0(b"\x02", 0, 4, 2, 0)
        + b"\x00\x00\x00\x06"  # Abort chunk stream 6
        + b"\xc6"  # a type 3 on csid 6 now starts a new 300-byte message
        + bytes([1]) * 128
        + b"\xc6"
        + bytes([1]) * 128
        + b"\xc6"
        + bytes([1]) * 44
    )
    out = feed_whole(wire)
    assert out == [Message(2, b"\x00\x00\x00\x06", 0, 0, 2), Message(9, bytes([1]) * 300, 20, 1, 6)]
    assert feed_bytewise(wire) == out


def test_bytes_received_counts_every_byte():
    reader = ChunkReader()
    reader.feed(b"\x04\x00")
    reader.feed(b"")
    reader.feed(b"\x00\x00\x00\x00\x01\x08\x01\x00\x00\x00z\x04")
    assert reader.bytes_received == 14


# --- real captures -------------------------------------------------------------------


def _stream(path: Path) -> bytes:
    return path.read_bytes()[HANDSHAKE_SIZE:]


def _id(path: Path) -> str:
    return path.name.removesuffix(".bin")


needs_captures = pytest.mark.skipif(not CAPTURES, reason="no captures in tests/data yet")


@needs_captures
@pytest.mark.parametrize("path", CAPTURES, ids=_id)
def test_capture_same_messages_however_fed(path):
    data = _stream(path)
    whole = feed_whole(data)
    assert feed_split(data, random_cuts(len(data), seed=len(data))) == whole
    # Byte by byte on the first 20 KB: the messages whose chunks all lie in it.
    prefix = data[:20_000]
    assert feed_bytewise(prefix) == feed_whole(prefix) == whole[: len(feed_whole(prefix))]


@needs_captures
@pytest.mark.parametrize("path", CAPTURES, ids=_id)
def test_capture_truncated_anywhere_gives_a_prefix_and_no_error(path):
    data = _stream(path)
    whole = feed_whole(data)
    rng = random.Random(7)
    for cut in [rng.randrange(len(data)) for _ in range(20)]:
        reader = ChunkReader()
        got = reader.feed(data[:cut])
        assert got == whole[: len(got)]
        assert reader.bytes_received == cut


@needs_captures
@pytest.mark.parametrize("path", CAPTURES, ids=_id)
def test_capture_reencoded_decodes_the_same(path):
    messages = feed_whole(_stream(path))
    writer = ChunkWriter()
    wire = bytearray()
    for message in messages:
        wire += writer.write(message)
        if message.type_id == 1:  # follow our own Set Chunk Size, as a sender must
            writer.chunk_size = int.from_bytes(message.payload[:4], "big")
    assert feed_whole(bytes(wire)) == messages
    assert feed_split(bytes(wire), random_cuts(len(wire), seed=1)) == messages


@needs_captures
@pytest.mark.parametrize("path", CLIENT_CAPTURES, ids=_id)
def test_capture_client_starts_with_connect(path):
    data = _stream(path)
    first = feed_whole(data)[0]
    body = m.decode_body(first.type_id, first.payload)
    assert (first.type_id, first.chunk_stream_id, first.stream_id, first.timestamp) == (20, 3, 0, 0)
    assert body.name == "connect" and body.transaction_id == 1.0
    assert body.command_object["app"] == "live/user1"
    # Our writer puts connect on the wire exactly as the client did (a type 0
    # header on csid 3, type 3 continuations every 128 bytes).
    assert data.startswith(ChunkWriter().write(first))


@needs_captures
@pytest.mark.parametrize("path", SERVER_CAPTURES, ids=_id)
def test_capture_nginx_control_messages(path):
    reader = ChunkReader()
    messages = reader.feed(_stream(path))
    bodies = [m.decode_body(message.type_id, message.payload) for message in messages[:3]]
    assert bodies == [m.WindowAckSize(5_000_000), m.SetPeerBandwidth(5_000_000, 2), m.SetChunkSize(4096)]
    assert all(message.chunk_stream_id == 2 for message in messages[:3])
    assert reader.chunk_size == 4096


@needs_captures
@pytest.mark.parametrize("path", CAPTURES, ids=_id)
def test_capture_media_lines_up(path):
    # Had the reader mis-stepped anywhere (a repeated extended timestamp taken
    # as data, a wrong chunk size), media payloads would start mid-frame: every
    # FLV audio (video) payload of a stream names the same codec in its first
    # byte, and media timestamps never go backwards.
    messages = feed_whole(_stream(path))
    for type_id, codec_of in ((8, lambda b: b >> 4), (9, lambda b: b & 0x0F)):
        media = [message for message in messages if message.type_id == type_id]
        assert len({codec_of(message.payload[0]) for message in media if message.payload}) <= 1
        times = [message.timestamp for message in media]
        assert times == sorted(times)


def _capture(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{name} not captured")
    return path


def test_capture_ffmpeg_publish_follows_its_set_chunk_size():
    reader = ChunkReader()
    messages = reader.feed(_stream(_capture("ffmpeg_publish.c2s.bin")))
    set_sizes = [message for message in messages if message.type_id == 1]
    assert set_sizes == [Message(1, b"\x00\x00\x10\x00", 0, 0, 2)]
    assert reader.chunk_size == 4096
    # ffmpeg's channels: commands on 3, publish on 8, audio and data on 4, video on 6.
    channels = {(message.type_id, message.chunk_stream_id) for message in messages}
    assert {(8, 4), (9, 6), (18, 4), (20, 3), (20, 8), (1, 2)} == channels
    assert all(default_chunk_stream_id(t) == c for t, c in channels - {(20, 8)})


@pytest.mark.parametrize("name", ["ffmpeg_publish_jump.c2s.bin", "librtmp_publish_jump.c2s.bin",
                                  "rtmp2_publish_jump.c2s.bin", "ffmpeg_play_jump.s2c.bin"])
def test_capture_timestamp_jump_past_24_bits(name):
    # The stream jumps from about 500 ms to 20,000,500 ms: an extended delta in
    # a type 1 header, then type 3 continuation chunks that (in all four
    # captures: ffmpeg, librtmp, GStreamer rtmp2 and nginx-rtmp) repeat it.
    data = _stream(_capture(name))
    messages = feed_whole(data)
    video = [message.timestamp for message in messages if message.type_id == 9]
    before = [t for t in video if t < 0xFFFFFF]
    after = [t for t in video if t >= 0xFFFFFF]
    assert before and after and video == before + after
    assert 20_000_000 < after[0] < 20_001_000
    assert all(b - a < 100 for a, b in zip(after, after[1:]))


def test_capture_extended_timestamps():
    # ffmpeg publishing from 20,000,000 ms (above 0xFFFFFF) sends extended deltas.
    messages = feed_whole(_stream(_capture("ffmpeg_publish_extts.c2s.bin")))
    video = [message.timestamp for message in messages if message.type_id == 9]
    assert video[0] == 0 and all(0xFFFFFF < t < 20_100_000 for t in video[1:])
    assert all(0 <= b - a < 100 for a, b in zip(video[1:], video[2:]))


# --- round trips under random slicing -------------------------------------------------

_csids = st.one_of(
    st.integers(2, 63), st.integers(64, 319), st.integers(320, MAX_CHUNK_STREAM_ID), st.sampled_from([3, 4, 6])
)
_timestamps = st.one_of(
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from([0, 1, 40, 0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF]),
)


@st.composite
def _traffic(draw):
    """Messages (and Set Chunk Size changes) as a writer would send them."""
    items = []
    last: dict[int, tuple[int, int]] = {}  # csid -> (timestamp, delta)
    for _ in range(draw(st.integers(1, 25))):
        if draw(st.integers(0, 9)) == 0:
            items.append(("chunk_size", draw(st.one_of(st.integers(1, 300), st.just(0x7FFFFFFF)))))
            continue
        csid = draw(_csids)
        how = draw(st.sampled_from(["absolute", "same-delta", "small-delta"]))
        prev = last.get(csid)
        if how == "absolute" or prev is None:
            timestamp = draw(_timestamps)
        elif how == "same-delta":
            timestamp = (prev[0] + prev[1]) & 0xFFFFFFFF
        else:
            timestamp = (prev[0] + draw(st.integers(0, 100))) & 0xFFFFFFFF
        delta = (timestamp - prev[0]) & 0xFFFFFFFF if prev else timestamp
        last[csid] = (timestamp, delta)
        size = draw(st.sampled_from([0, 1, 5, 128, 129, 300]) | st.integers(0, 400))
        payload = draw(st.binary(min_size=size, max_size=size))
        type_id = draw(st.sampled_from([3, 4, 5, 8, 9, 18, 20, 22, 99]))
        stream_id = draw(st.sampled_from([0, 1, 1, 1, 0xFFFFFFFF]))
        items.append(("message", Message(type_id, payload, timestamp, stream_id, csid)))
    return items


def traffic_wire(traffic, initial: int) -> tuple[bytes, list[Message]]:
    """What a writer starting at chunk size ``initial`` sends for ``_traffic``, and the messages."""
    writer = ChunkWriter(initial)
    wire = bytearray()
    expected = []
    for kind, item in traffic:
        if kind == "chunk_size":
            message = Message(1, item.to_bytes(4, "big"), 0, 0, 2)
            wire += writer.write(message)
            writer.chunk_size = item
        else:
            message = item
            wire += writer.write(message)
        expected.append(message)
    return bytes(wire), expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traffic=_traffic(), initial=st.sampled_from([1, 3, 128, 4096]), data=st.data())
def test_round_trip_random_traffic(traffic, initial, data):
    wire, expected = traffic_wire(traffic, initial)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=30))
    # The codec under test, not the connection limits: every legal chunk size and id.
    reader = ChunkReader(initial, max_chunk_streams=MAX_CHUNK_STREAM_ID, max_peer_chunk_size=0x7FFFFFFF)
    assert feed_split(wire, cuts, reader) == expected


# --- hostile input --------------------------------------------------------------------

_GOOD = fmt0(b"\x04", 0, 3, 8, 1) + b"abc"  # 15 bytes of a valid message first


@pytest.mark.parametrize("size", [0, 0x80000000, 0xFFFFFFFF])
def test_bad_chunk_size(size):
    wire = _GOOD + fmt0(b"\x02", 0, 4, 1, 0) + size.to_bytes(4, "big")
    reader = ChunkReader()
    with pytest.raises(ChunkStreamError) as caught:
        feed_bytewise(wire, reader)
    assert caught.value.what == f"bad chunk size {size} (must be 1..2147483647)"
    assert caught.value.where == "stream byte 15, chunk stream 2"


def test_set_chunk_size_too_short():
    with pytest.raises(ChunkStreamError) as caught:
        feed_whole(fmt0(b"\x02", 0, 2, 1, 0) + b"\x00\x01")
    assert caught.value.what == "Set Chunk Size message of 2 bytes (needs 4)"
    assert caught.value.where == "stream byte 0, chunk stream 2"


def test_message_over_the_size_limit():
    reader = ChunkReader(max_message_size=1000)
    reader.feed(_GOOD)
    with pytest.raises(ChunkStreamError) as caught:
        reader.feed(fmt0(b"\x06", 0, 1001, 9, 1))
    assert caught.value.what == "message length 1001 is above the limit of 1000 bytes"
    assert caught.value.where == "stream byte 15, chunk stream 6"
    # A type 1 header may raise the length of a known chunk stream: checked too.
    reader = ChunkReader(max_message_size=1000)
    reader.feed(_GOOD)
    with pytest.raises(ChunkStreamError) as caught:
        reader.feed(b"\x44\x00\x00\x01\x00\x10\x00\x08")
    assert caught.value.what == "message length 4096 is above the limit of 1000 bytes"
    assert caught.value.where == "stream byte 15, chunk stream 4"


@pytest.mark.parametrize(("first", "fmt"), [(0x47, 1), (0x87, 2), (0xC7, 3)])
def test_unknown_chunk_stream_continuing(first, fmt):
    reader = ChunkReader()
    reader.feed(_GOOD)
    with pytest.raises(ChunkStreamError) as caught:
        reader.feed(bytes([first]))  # the basic header alone is enough to know
    assert caught.value.what == (
        f"unknown chunk stream id 7 continuing a message (a type {fmt} header before any type 0 header on it)"
    )
    assert caught.value.where == "stream byte 15, chunk stream 7"


def test_unknown_chunk_stream_in_three_byte_form():
    with pytest.raises(ChunkStreamError) as caught:
        feed_whole(b"\xc1\x00\x01")
    assert caught.value.where == "stream byte 0, chunk stream 320"


def test_new_header_while_a_message_is_in_progress():
    wire = fmt0(b"\x06", 0, 300, 9, 1) + bytes(128) + b"\x86\x00\x00\x01"
    with pytest.raises(ChunkStreamError) as caught:
        feed_whole(wire)
    assert caught.value.what == "type 2 header on chunk stream 6 while its message of 300 bytes is 172 bytes short"
    assert caught.value.where == "stream byte 140, chunk stream 6"


def test_too_many_chunk_streams_in_progress():
    reader = ChunkReader(max_in_progress=64, max_chunk_streams=100, max_pending_bytes=10**6)
    offset = 0
    for csid in range(3, 3 + 64):
        part = fmt0(basic(csid), 0, 200, 9, 1) + bytes(128)
        assert reader.feed(part) == []
        offset += len(part)
    with pytest.raises(ChunkStreamError) as caught:
        reader.feed(fmt0(basic(67), 0, 200, 9, 1))
    assert caught.value.what == "more than 64 chunk streams with a message in progress"
    assert caught.value.where == f"stream byte {offset}, chunk stream 67"


def test_completed_messages_free_their_slot():
    reader = ChunkReader(max_in_progress=2, max_chunk_streams=1000)
    for csid in range(3, 400):
        assert len(reader.feed(fmt0(basic(csid), 0, 1, 9, 1) + b"x")) == 1


# --- writer details -------------------------------------------------------------------


def test_writer_chunk_size_is_settable_and_checked():
    writer = ChunkWriter()
    writer.chunk_size = 4096
    assert writer.chunk_size == 4096
    for bad in (0, 0x80000000):
        with pytest.raises(ValueError):
            writer.chunk_size = bad


def test_writer_picks_default_chunk_stream_when_none_given():
    wire = ChunkWriter().write(Message(9, b"v", 0, 1))
    assert wire[0] == 6
    assert feed_whole(wire) == [Message(9, b"v", 0, 1, 6)]


def test_default_chunk_stream_ids():
    assert [default_chunk_stream_id(t) for t in (1, 2, 3, 4, 5, 6)] == [2] * 6
    assert default_chunk_stream_id(20) == default_chunk_stream_id(17) == 3
    assert default_chunk_stream_id(8) == default_chunk_stream_id(18) == 4
    assert default_chunk_stream_id(9) == 6
    assert default_chunk_stream_id(200) == 3


def test_writer_refuses_oversized_messages():
    with pytest.raises(ValueError):
        ChunkWriter().write(Message(9, bytes(0x1000000), 0, 1, 6))


def test_message_is_frozen():
    message = Message(8, b"a")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        message.timestamp = 5  # type: ignore[misc]
    assert (message.timestamp, message.stream_id, message.chunk_stream_id) == (0, 0, 0)


def test_fmt0_header_layout_matches_the_spec_diagram():
    # Cross-check the writer's type 0 layout field by field.
    wire = ChunkWriter().write(Message(0x12, bytes(0x0A0B0C), 0x010203, 0x04050607, 3))
    assert struct.unpack(">B3s3sB", wire[:8]) == (3, b"\x01\x02\x03", b"\x0a\x0b\x0c", 0x12)
    assert wire[8:12] == (0x04050607).to_bytes(4, "little")


def test_too_many_chunk_stream_ids():
    reader = ChunkReader()
    offset = 0
    for csid in range(3, 3 + 64):
        part = fmt0(basic(csid), 0, 1, 9, 1) + b"x"
        assert len(reader.feed(part)) == 1
        offset += len(part)
    with pytest.raises(ChunkStreamError) as caught:
        reader.feed(fmt0(basic(67), 0, 1, 9, 1) + b"x")
    assert caught.value.what == "more than 64 chunk stream ids"
    assert caught.value.where == f"stream byte {offset}, chunk stream 67"


def test_bytes_in_progress_are_bounded_per_connection():
    reader = ChunkReader(max_message_size=1000, max_pending_bytes=2500)
    reader.feed(fmt0(basic(3), 0, 1000, 9, 1) + bytes(128))
    reader.feed(fmt0(basic(4), 0, 1000, 9, 1) + bytes(128))
    with pytest.raises(ChunkStreamError) as caught:
        reader.feed(fmt0(basic(5), 0, 1000, 9, 1))
    assert caught.value.what == "messages in progress would add up to 3000 bytes, above the limit of 2500"
    # Completed messages give their bytes back.
    reader = ChunkReader(chunk_size=1000, max_message_size=1000, max_pending_bytes=1000)
    for _ in range(10):
        assert len(reader.feed(fmt0(basic(3), 0, 1000, 9, 1) + bytes(1000))) == 1


def test_chunk_size_a_peer_may_set_is_bounded():
    reader = ChunkReader(max_peer_chunk_size=65536)
    reader.feed(fmt0(b"\x02", 0, 4, 1, 0) + (65536).to_bytes(4, "big"))
    assert reader.chunk_size == 65536
    with pytest.raises(ChunkStreamError) as caught:
        reader.feed(fmt0(b"\x02", 0, 4, 1, 0) + (65537).to_bytes(4, "big"))
    assert caught.value.what == "chunk size 65537 is above the limit of 65536"
