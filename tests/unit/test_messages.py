"""Message bodies <-> (type id, payload): byte-exact vectors, captures, round
trips and malformed payloads."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtmprelay.errors import MessageError
from rtmprelay.rtmp import amf0
from rtmprelay.rtmp import messages as m
from rtmprelay.rtmp.chunks import ChunkReader, Message

DATA = Path(__file__).resolve().parent.parent / "data"
HANDSHAKE_SIZE = 1 + 1536 + 1536


# --- byte-exact control messages ----------------------------------------------------

CONTROL_VECTORS = [
    (m.SetChunkSize(4096), 1, "00 00 10 00"),
    (m.SetChunkSize(0x7FFFFFFF), 1, "7f ff ff ff"),
    (m.Abort(6), 2, "00 00 00 06"),
    (m.Acknowledgement(0x01020304), 3, "01 02 03 04"),
    (m.WindowAckSize(5_000_000), 5, "00 4c 4b 40"),
    (m.SetPeerBandwidth(5_000_000, m.PeerBandwidthLimit.DYNAMIC), 6, "00 4c 4b 40 02"),
    (m.SetPeerBandwidth(2_500_000, m.PeerBandwidthLimit.HARD), 6, "00 26 25 a0 00"),
    (m.StreamBegin(1), 4, "00 00 00 00 00 01"),
    (m.StreamEOF(1), 4, "00 01 00 00 00 01"),
    (m.StreamDry(1), 4, "00 02 00 00 00 01"),
    # What ffmpeg sends before play (tests/data/ffmpeg_play.c2s.bin).
    (m.SetBufferLength(1, 3000), 4, "00 03 00 00 00 01 00 00 0b b8"),
    (m.StreamIsRecorded(1), 4, "00 04 00 00 00 01"),
    (m.PingRequest(0xDEADBEEF), 4, "00 06 de ad be ef"),
    (m.PingResponse(7), 4, "00 07 00 00 00 07"),
    (m.UnknownUserControl(26, b"\x00"), 4, "00 1a 00"),
]


@pytest.mark.parametrize(("body", "type_id", "payload"), CONTROL_VECTORS, ids=lambda v: repr(v)[:40])
def test_control_vectors(body, type_id, payload):
    wire = bytes.fromhex(payload)
    assert m.encode_body(body) == (type_id, wire)
    assert m.decode_body(type_id, wire) == body


def test_encoded_type_ids_are_plain_ints():
    type_id, _ = m.encode_body(m.SetChunkSize(128))
    assert type(type_id) is int


def test_control_messages_ignore_trailing_bytes():
    assert m.decode_body(1, b"\x00\x00\x10\x00\xff") == m.SetChunkSize(4096)
    assert m.decode_body(4, b"\x00\x00\x00\x00\x00\x01\x00\x00") == m.StreamBegin(1)


@pytest.mark.parametrize(
    ("type_id", "payload", "what", "where"),
    [
        (1, b"\x00\x10", "set chunk size message of 2 bytes (needs 4)", "set chunk size message, offset 2"),
        (3, b"", "acknowledgement message of 0 bytes (needs 4)", "acknowledgement message, offset 0"),
        (
            6,
            b"\x00\x4c\x4b\x40",
            "set peer bandwidth message of 4 bytes (needs 5)",
            "set peer bandwidth message, offset 4",
        ),
        (4, b"\x00", "user control message of 1 bytes (needs 2)", "user control message, offset 1"),
        (
            4,
            b"\x00\x03\x00\x00\x00\x01",
            "user control message (SET_BUFFER_LENGTH) of 6 bytes (needs 10)",
            "user control message, offset 6",
        ),
    ],
)
def test_short_control_messages(type_id, payload, what, where):
    with pytest.raises(MessageError) as caught:
        m.decode_body(type_id, payload)
    assert (caught.value.what, caught.value.where) == (what, where)


@pytest.mark.parametrize(("size", "hex_bytes"), [(0, "00 00 00 00"), (0x80000000, "80 00 00 00")])
def test_bad_chunk_size_values(size, hex_bytes):
    with pytest.raises(MessageError) as caught:
        m.decode_body(1, size.to_bytes(4, "big"))
    assert caught.value.what == f"set chunk size message with a value out of range: {hex_bytes}"
    assert caught.value.where == "set chunk size message, offset 0"
    with pytest.raises(ValueError):
        m.encode_body(m.SetChunkSize(size))


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(ValueError):
        m.encode_body(m.WindowAckSize(-1))
    with pytest.raises(ValueError):
        m.encode_body(m.PingRequest(1 << 32))
    with pytest.raises(ValueError):
        m.encode_body(m.UnknownUserControl(70000, b""))
    with pytest.raises(TypeError):
        m.encode_body("not a body")


_u32 = st.integers(0, 0xFFFFFFFF)


@given(
    body=st.one_of(
        st.builds(m.SetChunkSize, st.integers(1, 0x7FFFFFFF)),
        st.builds(m.Abort, _u32),
        st.builds(m.Acknowledgement, _u32),
        st.builds(m.WindowAckSize, _u32),
        st.builds(m.SetPeerBandwidth, _u32, st.integers(0, 255)),
        st.builds(m.StreamBegin, _u32),
        st.builds(m.StreamEOF, _u32),
        st.builds(m.StreamDry, _u32),
        st.builds(m.SetBufferLength, _u32, _u32),
        st.builds(m.StreamIsRecorded, _u32),
        st.builds(m.PingRequest, _u32),
        st.builds(m.PingResponse, _u32),
        st.builds(
            m.UnknownUserControl,
            st.integers(0, 0xFFFF).filter(lambda e: e not in {0, 1, 2, 3, 4, 6, 7}),
            st.binary(max_size=20),
        ),
        st.builds(m.Audio, st.binary(max_size=50)),
        st.builds(m.Video, st.binary(max_size=50)),
        st.builds(m.Aggregate, st.binary(max_size=50)),
        st.builds(
            m.Unknown,
            st.integers(0, 255).filter(lambda t: t not in {1, 2, 3, 4, 5, 6, 8, 9, 15, 17, 18, 20, 22}),
            st.binary(max_size=50),
        ),
    )
)
def test_binary_bodies_round_trip(body):
    assert m.decode_body(*m.encode_body(body)) == body


# --- commands and data --------------------------------------------------------------


def test_command_byte_exact():
    body = m.Command("createStream", 4.0, None)
    assert m.encode_body(body) == (
        20,
        b"\x02\x00\x0ccreateStream" + b"\x00" + struct.pack(">d", 4.0) + b"\x05",
    )
    assert m.decode_body(20, m.encode_body(body)[1]) == body


def test_command_with_object_and_args_round_trips():
    body = m.Command(
        "onStatus",
        0.0,
        None,
        ({"level": "status", "code": "NetStream.Publish.Start", "description": "go"},),
    )
    assert m.decode_body(*m.encode_body(body)) == body
    connect = m.Command("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"}, (True, "extra"))
    assert m.decode_body(*m.encode_body(connect)) == connect


def test_command_with_name_only_or_no_object():
    assert m.decode_body(20, amf0.encode("onBWDone")) == m.Command("onBWDone", 0.0, None)
    assert m.decode_body(20, amf0.encode_values(["ping", 3.0])) == m.Command("ping", 3.0, None)


def test_data_round_trips_and_byte_exact():
    body = m.Data(("@setDataFrame", "onMetaData", amf0.ECMAArray({"width": 320.0})))
    type_id, payload = m.encode_body(body)
    assert type_id == 18
    assert payload == (
        b"\x02\x00\x0d@setDataFrame"
        + b"\x02\x00\x0aonMetaData"
        + b"\x08\x00\x00\x00\x01"
        + b"\x00\x05width\x00"
        + struct.pack(">d", 320.0)
        + b"\x00\x00\x09"
    )
    assert m.decode_body(18, payload) == body
    assert m.decode_body(18, b"") == m.Data(())


def test_amf3_command_type_17():
    payload = b"\x00" + amf0.encode_values(["play", 0.0, None, "stream"])
    assert m.decode_body(17, payload) == m.Command("play", 0.0, None, ("stream",), amf3=True)


def test_amf3_values_inside_type_17_and_15():
    # 0x11 switches one value to AMF3: here the AMF3 string "abc" (0x06, length 3 << 1 | 1).
    avm_string = b"\x11\x06\x07abc"
    payload = b"\x00" + amf0.encode_values(["onText", 0.0, None]) + avm_string
    assert m.decode_body(17, payload) == m.Command("onText", 0.0, None, ("abc",), amf3=True)
    assert m.decode_body(15, b"\x00" + amf0.encode("onCuePoint") + avm_string) == m.Data(
        ("onCuePoint", "abc"), amf3=True
    )


def test_amf3_flagged_bodies_are_sent_as_amf0():
    # As the Command docstring says: replies always go out as types 20 and 18.
    command = m.Command("_result", 1.0, None, (), amf3=True)
    assert m.encode_body(command) == m.encode_body(m.Command("_result", 1.0, None))
    assert m.encode_body(m.Data(("x",), amf3=True))[0] == 18


@pytest.mark.parametrize(
    ("type_id", "payload", "what", "where"),
    [
        (
            20,
            b"\x02\x00\x07conn",
            "command message: truncated string: need 7 bytes, have 4",
            "command message, offset 3",
        ),
        (
            20,
            amf0.encode_values(["connect", 1.0]) + b"\x03\x00\x03app\x02\x00\x09liv",
            "command message: truncated string: need 9 bytes, have 3",
            "command message, offset 28",  # 10 + 9 + 1 + 5 + 3: the string data
        ),
        (20, amf0.encode(3.0), "command message without a string name (found float)", "command message, offset 0"),
        (20, b"", "command message without a string name (found nothing)", "command message, offset 0"),
        (
            20,
            amf0.encode_values(["connect", "one"]),
            "command message 'connect' with a transaction id of type str",
            "command message, after the name",
        ),
        (
            20,
            amf0.encode_values(["connect", True]),
            "command message 'connect' with a transaction id of type bool",
            "command message, after the name",
        ),
        (17, b"", "empty AMF3 command message (no format byte)", "AMF3 command message, offset 0"),
        (
            17,
            b"\x05" + amf0.encode("x"),
            "AMF3 command message with format byte 0x05 (expected 0x00)",
            "AMF3 command message, offset 0",
        ),
        # Offsets in AMF3 messages count the format byte too.
        (
            17,
            b"\x00\x02\x00\x05ab",
            "AMF3 command message: truncated string: need 5 bytes, have 2",
            "AMF3 command message, offset 4",
        ),
        (15, b"", "empty AMF3 data message (no format byte)", "AMF3 data message, offset 0"),
        (18, b"\x02\x00", "data message: truncated string length: need 2 bytes, have 1", "data message, offset 1"),
    ],
)
def test_malformed_commands_and_data(type_id, payload, what, where):
    with pytest.raises(MessageError) as caught:
        m.decode_body(type_id, payload)
    assert caught.value.where == where
    if type_id == 18:  # the AMF layer words its own messages; check ours wraps them
        assert caught.value.what.startswith("data message: ")
    else:
        assert caught.value.what == what


def test_amf_error_is_the_cause():
    with pytest.raises(MessageError) as caught:
        m.decode_body(20, b"\x02\x00\x07conn")
    assert type(caught.value.__cause__).__name__ == "AMFError"


# --- media and unknown types -----------------------------------------------------------


def test_media_passes_through():
    assert m.decode_body(8, b"\xaf\x01data") == m.Audio(b"\xaf\x01data")
    assert m.decode_body(9, b"\x17\x01") == m.Video(b"\x17\x01")
    assert m.decode_body(22, b"") == m.Aggregate(b"")
    assert m.encode_body(m.Video(b"\x27")) == (9, b"\x27")


def test_media_payload_is_not_copied():
    payload = bytes(1000)
    assert m.decode_body(9, payload).payload is payload


def test_unknown_types():
    assert m.decode_body(19, b"so") == m.Unknown(19, b"so")  # shared objects: not read
    assert m.decode_body(99, b"\x01") == m.Unknown(99, b"\x01")
    assert m.encode_body(m.Unknown(99, b"\x01")) == (99, b"\x01")


# --- captures: every command, data and control message re-encodes byte for byte ---------


def _captured(type_ids) -> list[Message]:
    out = []
    for path in sorted(DATA.glob("*.bin")):
        data = path.read_bytes()[HANDSHAKE_SIZE:]
        out += [message for message in ChunkReader().feed(data) if message.type_id in type_ids]
    return out


def test_captured_messages_re_encode_byte_exact():
    captured = _captured({1, 2, 3, 4, 5, 6, 15, 17, 18, 20})
    if not captured:
        pytest.skip("no captures in tests/data yet")
    for message in captured:
        body = m.decode_body(message.type_id, message.payload)
        assert m.encode_body(body) == (message.type_id, message.payload), body


def test_captured_publish_sequence():
    path = DATA / "ffmpeg_publish.c2s.bin"
    if not path.exists():
        pytest.skip("ffmpeg_publish.c2s.bin not captured")
    messages = ChunkReader().feed(path.read_bytes()[HANDSHAKE_SIZE:])
    bodies = [m.decode_body(message.type_id, message.payload) for message in messages[:7]]
    assert [type(body).__name__ for body in bodies] == [
        "Command",
        "SetChunkSize",
        "Command",
        "Command",
        "Command",
        "Command",
        "Data",
    ]
    assert [body.name for body in bodies if isinstance(body, m.Command)] == [
        "connect",
        "releaseStream",
        "FCPublish",
        "createStream",
        "publish",
    ]
    assert bodies[5].args == ("stream1", "live")
    assert bodies[6].values[:2] == ("@setDataFrame", "onMetaData")
    assert isinstance(bodies[6].values[2], amf0.ECMAArray)


# --- aggregate messages ----------------------------------------------------------------


def flv_tag(type_id: int, timestamp: int, data: bytes, back_pointer: bool = True) -> bytes:
    head = bytes([type_id]) + len(data).to_bytes(3, "big")
    head += (timestamp & 0xFFFFFF).to_bytes(3, "big") + bytes([timestamp >> 24]) + b"\x00\x00\x00"
    return head + data + ((11 + len(data)).to_bytes(4, "big") if back_pointer else b"")


def test_split_aggregate_rebases_timestamps():
    payload = (
        flv_tag(9, 0x01000010, b"\x17video")  # timestamp-extension byte used
        + flv_tag(8, 0x01000020, b"\xafaudio")
        + flv_tag(9, 0x01000043, b"\x27more", back_pointer=False)
    )
    assert m.split_aggregate(payload, 1000, stream_id=1, chunk_stream_id=6) == [
        Message(9, b"\x17video", 1000, 1, 6),
        Message(8, b"\xafaudio", 1016, 1, 6),
        Message(9, b"\x27more", 1051, 1, 6),
    ]
    assert m.split_aggregate(b"", 5) == []


def test_split_aggregate_masks_flv_reserved_bits_and_wraps():
    payload = flv_tag(0x20 | 9, 10, b"a") + flv_tag(9, 30, b"b")
    assert [(x.type_id, x.timestamp) for x in m.split_aggregate(payload, 0xFFFFFFF0)] == [
        (9, 0xFFFFFFF0),
        (9, 0x00000004),
    ]


@pytest.mark.parametrize(
    ("payload", "what", "where"),
    [
        (
            flv_tag(9, 0, b"abc")[:8],
            "aggregate message ends inside an FLV tag header (8 of 11 bytes)",
            "aggregate message, offset 0",
        ),
        (
            flv_tag(9, 0, b"abc") + flv_tag(8, 0, b"abcdef")[:-6],
            "aggregate message: FLV tag of 6 bytes runs 2 bytes past the end",
            "aggregate message, offset 18",
        ),
        (
            flv_tag(9, 0, b"abc")[:-2],
            "aggregate message ends inside a back pointer (2 of 4 bytes)",
            "aggregate message, offset 14",
        ),
    ],
)
def test_split_aggregate_malformed(payload, what, where):
    with pytest.raises(MessageError) as caught:
        m.split_aggregate(payload, 0)
    assert (caught.value.what, caught.value.where) == (what, where)
