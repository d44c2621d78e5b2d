"""The handshake against real clients' and nginx-rtmp's captured bytes.

The digest checks here are written out again with ``hmac`` (after nginx-rtmp's
``ngx_rtmp_find_digest`` and ffmpeg's S2 check), not taken from the module, so a
mistake in the module cannot hide behind the same mistake in the test.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtmprelay.errors import HandshakeError
from rtmprelay.rtmp.handshake import ClientHandshake, ServerHandshake

DATA = Path(__file__).resolve().parent.parent / "data"
HS = 1 + 1536 + 1536  # C0+C1+C2 or S0+S1+S2

KEY_TAIL = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
FP_KEY = b"Genuine Adobe Flash Player 001" + KEY_TAIL  # 62
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + KEY_TAIL  # 68

DIGEST_CAPTURES = [
    "ffmpeg_publish",
    "ffmpeg_play",
    "librtmp_play",
    "ffmpeg_publish_jump",
    "ffmpeg_play_jump",
    "ffmpeg_publish_extts",
]
PLAIN_CAPTURES = [
    "librtmp_publish",
    "rtmp2_publish",
    "librtmp_publish_jump",
    "rtmp2_publish_jump",
    "librtmp_play_jump",
]
CAPTURES = DIGEST_CAPTURES + PLAIN_CAPTURES


def c2s(name: str) -> bytes:
    return (DATA / f"{name}.c2s.bin").read_bytes()


def s2c(name: str) -> bytes:
    return (DATA / f"{name}.s2c.bin").read_bytes()


# --- independent digest rules ------------------------------------------------


def hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def nginx_find_digest(packet: bytes, key: bytes) -> int | None:
    """nginx-rtmp's rule: offset base 772 first, then 8; returns the offset."""
    for base in (772, 8):
        offs = sum(packet[base : base + 4]) % 728 + base + 4
        if hmac256(key, packet[:offs] + packet[offs + 32 :]) == packet[offs : offs + 32]:
            return offs
    return None


def digest_at(packet: bytes, base: int, key: bytes) -> int | None:
    offs = sum(packet[base : base + 4]) % 728 + base + 4
    if hmac256(key, packet[:offs] + packet[offs + 32 :]) == packet[offs : offs + 32]:
        return offs
    return None


def answer_ok(answer: bytes, digest: bytes, full_key: bytes) -> bool:
    return hmac256(hmac256(full_key, digest), answer[:1504]) == answer[1504:]


def seeded(seed: int):
    rng = random.Random(seed)
    return rng.randbytes


def scripted(*chunks: bytes):
    """random_bytes that hands out exactly these chunks, in order."""
    queue = list(chunks)

    def take(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n, (len(chunk), n)
        return chunk

    return take


def digest_c1(base: int, *, seed: int = 1, version: bytes = b"\x0a\x00\x2d\x02") -> bytes:
    """A client C1 with its digest in the layout whose offset bytes start at base."""
    rng = random.Random(seed)
    packet = bytearray(b"\0\0\x12\x34" + version + rng.randbytes(1528))
    offs = sum(packet[base : base + 4]) % 728 + base + 4
    packet[offs : offs + 32] = hmac256(FP_KEY[:30], bytes(packet[:offs] + packet[offs + 32 :]))
    return bytes(packet)


# --- the server against captured clients ------------------------------------


@pytest.mark.parametrize("name", CAPTURES)
def test_server_whole_capture(name):
    data = c2s(name)
    server = ServerHandshake(random_bytes=seeded(7), epoch=1234)
    out = server.receive_data(data)
    assert server.done
    assert len(out) == HS
    assert out[0] == 3
    assert server.leftover == data[HS:]
    assert server.client_version == data[5:9]
    assert server.c2 == data[1537:HS]


@pytest.mark.parametrize("name", CAPTURES)
def test_server_byte_by_byte_matches_whole(name):
    data = c2s(name)[: HS + 300]
    whole = ServerHandshake(random_bytes=seeded(7), epoch=1234)
    expected = whole.receive_data(data)

    server = ServerHandshake(random_bytes=seeded(7), epoch=1234)
    sent = []
    for i in range(len(data)):
        out = server.receive_data(data[i : i + 1])
        if out:
            sent.append((i, out))
        # done exactly when the last byte of C2 is in, not before
        assert server.done == (i >= HS - 1)
    # S0S1S2 go out exactly when the last byte of C1 arrives
    assert [(i, len(out)) for i, out in sent] == [(1536, HS)]
    assert sent[0][1] == expected
    assert server.leftover == data[HS:] == whole.leftover


@pytest.mark.parametrize("name", CAPTURES)
def test_server_trailing_bytes_are_leftover_exactly(name):
    data = c2s(name)[:HS]
    trailing = b"\x03\x00\x00\x00\x00\x00\x10\x14\x00\x00\x00\x00after-c2"
    server = ServerHandshake(random_bytes=seeded(3))
    server.receive_data(data + trailing)
    assert server.done
    assert server.leftover == trailing


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=HS + 64), max_size=8),
    name=st.sampled_from(CAPTURES),
)
def test_server_any_split_gives_same_bytes(cuts, name):
    data = c2s(name)[: HS + 64]
    points = sorted(set(cuts))
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    whole = ServerHandshake(random_bytes=seeded(5))
    expected = whole.receive_data(data)
    split = ServerHandshake(random_bytes=seeded(5))
    got = b"".join(split.receive_data(p) for p in pieces)
    assert got == expected
    assert split.done and split.leftover == data[HS:]


@pytest.mark.parametrize("name", DIGEST_CAPTURES)
def test_server_answers_digest_clients_with_valid_s1_and_s2(name):
    data = c2s(name)
    c1 = data[1:1537]
    server = ServerHandshake(random_bytes=seeded(11), epoch=0x01020304)
    out = server.receive_data(data[:1537])
    assert server.scheme == "digest"
    s1, s2 = out[1:1537], out[1537:]
    assert s1[:4] == b"\x01\x02\x03\x04"
    assert s1[4:8] != b"\0\0\0\0"
    # every client captured put its digest in layout 0 (offset base 8)
    client_offs = digest_at(c1, 8, FP_KEY[:30])
    assert client_offs is not None
    assert server.digest_layout == 0
    # S1: a server digest in the same layout, keyed with the 36-byte FMS key,
    # found by ffmpeg's client rule (base 772 first, then 8)
    assert digest_at(s1, 8, FMS_KEY[:36]) is not None
    assert nginx_find_digest(s1, FMS_KEY[:36]) is not None
    # S2: the answer to the client's digest, as ffmpeg and librtmp check it
    assert answer_ok(s2, c1[client_offs : client_offs + 32], FMS_KEY)


@pytest.mark.parametrize("name", PLAIN_CAPTURES)
def test_server_answers_plain_clients_plainly(name):
    data = c2s(name)
    c1 = data[1:1537]
    assert c1[4:8] == b"\0\0\0\0"
    server = ServerHandshake(random_bytes=seeded(2), epoch=99)
    out = server.receive_data(data[:1537])
    assert server.scheme == "plain"
    assert server.digest_layout is None
    assert out[1:5] == (99).to_bytes(4, "big")
    assert out[5:9] == b"\0\0\0\0"
    assert out[1537:] == c1  # S2 echoes C1 exactly


@pytest.mark.parametrize("name", DIGEST_CAPTURES)
def test_server_bytes_equal_nginx_given_nginx_randomness(name):
    """Fed nginx's time, version and random bytes, we send nginx's S0 S1 S2."""
    ours_in, theirs = c2s(name), s2c(name)
    s1, s2 = theirs[1:1537], theirs[1537:HS]
    server = ServerHandshake(
        random_bytes=scripted(s1[8:], s2[:1504]),
        epoch=int.from_bytes(s1[:4], "big"),
        version=s1[4:8],
    )
    assert server.receive_data(ours_in[:1537]) == theirs[:HS]


def test_server_digest_layout_1():
    c1 = digest_c1(772, seed=4)
    assert digest_at(c1, 8, FP_KEY[:30]) is None  # really only layout 1
    server = ServerHandshake(random_bytes=seeded(9))
    out = server.receive_data(b"\x03" + c1)
    assert server.scheme == "digest"
    assert server.digest_layout == 1
    s1, s2 = out[1:1537], out[1537:]
    assert digest_at(s1, 772, FMS_KEY[:36]) is not None
    assert digest_at(s1, 8, FMS_KEY[:36]) is None
    offs = digest_at(c1, 772, FP_KEY[:30])
    assert answer_ok(s2, c1[offs : offs + 32], FMS_KEY)


def test_server_digest_layout_0_built_here():
    c1 = digest_c1(8, seed=5)
    server = ServerHandshake(random_bytes=seeded(9))
    out = server.receive_data(b"\x03" + c1)
    assert (server.scheme, server.digest_layout) == ("digest", 0)
    assert digest_at(out[1:1537], 8, FMS_KEY[:36]) is not None


def test_server_version_without_digest_falls_back_to_plain():
    c1 = bytearray(digest_c1(8, seed=6))
    c1[100:140] = bytes(40)  # break the digest, keep the version
    server = ServerHandshake(random_bytes=seeded(1))
    out = server.receive_data(b"\x03" + bytes(c1))
    assert server.scheme == "plain"
    assert server.client_version == b"\x0a\x00\x2d\x02"
    assert out[1537:] == bytes(c1)


def test_server_plain_c1_built_here():
    c1 = b"\0\0\0\x05" + b"\0\0\0\0" + bytes(range(256)) * 5 + bytes(248)
    server = ServerHandshake(random_bytes=scripted(b"r" * 1528), epoch=7)
    out = server.receive_data(b"\x03" + c1)
    assert out == b"\x03" + b"\0\0\0\x07" + b"\0\0\0\0" + b"r" * 1528 + c1
    assert server.scheme == "plain"
    assert server.client_time == 5


def test_server_bytes_after_done_go_to_leftover():
    server = ServerHandshake(random_bytes=seeded(1))
    server.receive_data(c2s("ffmpeg_publish")[:HS] + b"ab")
    assert server.receive_data(b"cd") == b""
    assert server.receive_data(b"") == b""
    assert server.leftover == b"abcd"


def test_server_says_nothing_before_c1_is_complete():
    server = ServerHandshake()
    assert server.receive_data(b"\x03" + bytes(1535)) == b""
    assert not server.done and server.scheme is None


@pytest.mark.parametrize(
    ("c0", "what"),
    [
        (b"\x06", "RTMPE (encrypted RTMP, version 6) is not supported"),
        (b"\x08", "RTMPE (encrypted RTMP, version 8) is not supported"),
        (b"\xff", "unsupported RTMP version 0xff"),
        (b"\x00", "unsupported RTMP version 0x00"),
        (b"GET / HTTP/1.1\r\n", "unsupported RTMP version 0x47"),
        (b"\x16\x03\x01\x02\x00", "unsupported RTMP version 0x16"),  # a TLS hello
    ],
)
def test_server_rejects_bad_c0(c0, what):
    server = ServerHandshake()
    with pytest.raises(HandshakeError) as info:
        server.receive_data(c0)
    assert info.value.what == what
    assert info.value.where == "C0"
    assert "version" in str(info.value)


def test_server_rejects_c0_6_by_name():
    with pytest.raises(HandshakeError, match="version 6"):
        ServerHandshake().receive_data(b"\x06" + bytes(1536))


# --- the client against captured nginx ----------------------------------------


@pytest.mark.parametrize("name", DIGEST_CAPTURES + ["librtmp_publish", "librtmp_play_jump"])
def test_client_reproduces_captured_c0c1(name):
    """Given the client's own time, version and random bytes, our C0+C1 is theirs."""
    data = c2s(name)
    c1 = data[1:1537]
    scheme = "plain" if c1[4:8] == b"\0\0\0\0" else "digest"
    kwargs = {} if scheme == "plain" else {"version": c1[4:8]}
    client = ClientHandshake(
        scheme, random_bytes=scripted(c1[8:]), epoch=int.from_bytes(c1[:4], "big"), **kwargs
    )
    assert client.initiate() == data[:1537]


@pytest.mark.parametrize("name", ["ffmpeg_play", "ffmpeg_play_jump", "librtmp_play"])
def test_client_reproduces_captured_digest_c2_and_accepts_nginx(name):
    """The players answer nginx's S1 with a digest C2: we compute the same bytes,
    and nginx's S2 passes our (strict) check."""
    data, theirs = c2s(name), s2c(name)
    c1, c2 = data[1:1537], data[1537:HS]
    client = ClientHandshake(
        random_bytes=scripted(c1[8:], c2[:1504]),
        epoch=int.from_bytes(c1[:4], "big"),
        version=c1[4:8],
        strict=True,
    )
    client.initiate()
    out = client.receive_data(theirs[:1537])
    assert out == c2
    assert client.receive_data(theirs[1537:]) == b""
    assert client.done
    assert client.server_verified is True
    assert client.server_version == b"\x0d\x0e\x0a\x0d"
    assert client.leftover == theirs[HS:]


@pytest.mark.parametrize("name", ["ffmpeg_publish", "ffmpeg_publish_jump", "ffmpeg_publish_extts"])
def test_client_accepts_nginx_s0s1s2_as_publisher(name):
    data, theirs = c2s(name), s2c(name)
    c1 = data[1:1537]
    client = ClientHandshake(
        random_bytes=scripted(c1[8:], bytes(1504)), version=c1[4:8], strict=True
    )
    client.initiate()
    c2 = client.receive_data(theirs)
    assert client.done and client.server_verified is True
    # nginx's S1 carries a server digest, so our C2 is the digest answer to it
    s1 = theirs[1:1537]
    offs = nginx_find_digest(s1, FMS_KEY[:36])
    assert answer_ok(c2, s1[offs : offs + 32], FP_KEY)
    assert client.leftover == theirs[HS:]


@pytest.mark.parametrize("name", PLAIN_CAPTURES)
def test_client_plain_accepts_nginx_plain_answer(name):
    data, theirs = c2s(name), s2c(name)
    c1 = data[1:1537]
    client = ClientHandshake(
        "plain", random_bytes=scripted(c1[8:]), epoch=int.from_bytes(c1[:4], "big")
    )
    client.initiate()
    c2 = client.receive_data(theirs)
    assert client.done
    assert c2 == theirs[1:1537]  # echo of S1
    assert client.server_verified is None
    assert client.leftover == theirs[HS:]


def test_client_byte_by_byte():
    theirs = s2c("ffmpeg_play")[: HS + 40]
    c1 = c2s("ffmpeg_play")[1:1537]
    whole = ClientHandshake(random_bytes=scripted(c1[8:], bytes(1504)))
    whole.initiate()
    expected = whole.receive_data(theirs)
    client = ClientHandshake(random_bytes=scripted(c1[8:], bytes(1504)))
    client.initiate()
    sent = []
    for i in range(len(theirs)):
        out = client.receive_data(theirs[i : i + 1])
        if out:
            sent.append((i, out))
        assert client.done == (i >= HS - 1)
    assert [i for i, _ in sent] == [1536]
    assert sent[0][1] == expected
    assert client.leftover == theirs[HS:]


def test_client_c1_accepted_by_nginx_rule():
    for seed in range(20):
        client = ClientHandshake(random_bytes=seeded(seed), epoch=seed)
        c0c1 = client.initiate()
        assert c0c1[0] == 3
        c1 = c0c1[1:]
        assert len(c1) == 1536
        assert c1[:4] == seed.to_bytes(4, "big")
        assert c1[4:8] == bytes((9, 0, 124, 2))
        assert nginx_find_digest(c1, FP_KEY[:30]) is not None
        assert digest_at(c1, 8, FP_KEY[:30]) is not None  # layout 0, as ffmpeg


def test_client_plain_c1():
    client = ClientHandshake("plain", random_bytes=scripted(b"x" * 1528), epoch=3)
    assert client.initiate() == b"\x03\0\0\0\x03\0\0\0\0" + b"x" * 1528


# --- client and server against each other --------------------------------------


@pytest.mark.parametrize("scheme", ["digest", "plain"])
def test_client_and_server_in_memory(scheme):
    client = ClientHandshake(scheme, random_bytes=seeded(1), epoch=10, strict=True)
    server = ServerHandshake(random_bytes=seeded(2), epoch=20)
    s0s1s2 = server.receive_data(client.initiate())
    c2 = client.receive_data(s0s1s2 + b"server-first-chunk")
    assert client.done
    assert client.leftover == b"server-first-chunk"
    server.receive_data(c2 + b"client-connect")
    assert server.done
    assert server.leftover == b"client-connect"
    assert server.scheme == scheme
    assert server.client_version == (b"\x09\x00\x7c\x02" if scheme == "digest" else bytes(4))
    assert client.server_time == 20
    if scheme == "digest":
        assert client.server_verified is True
        # the C2 the server got is the digest answer to its S1 (as librtmp's server checks)
        s1 = s0s1s2[1:1537]
        offs = digest_at(s1, 8, FMS_KEY[:36])
        assert answer_ok(server.c2, s1[offs : offs + 32], FP_KEY)
    else:
        assert client.server_verified is None
        assert server.c2 == s0s1s2[1:1537]


def test_client_strict_rejects_s1_without_digest():
    client = ClientHandshake(strict=True, random_bytes=seeded(1))
    client.initiate()
    plain_s1 = b"\0\0\0\0" + b"\x01\x02\x03\x04" + bytes(1528)
    with pytest.raises(HandshakeError) as info:
        client.receive_data(b"\x03" + plain_s1)
    assert info.value.where == "S1"


def test_client_lenient_echoes_s1_without_digest():
    client = ClientHandshake(random_bytes=seeded(1))
    client.initiate()
    s1 = b"\0\0\0\0" + b"\x01\x02\x03\x04" + bytes(1528)
    assert client.receive_data(b"\x03" + s1) == s1
    client.receive_data(bytes(1536))
    assert client.done and client.server_verified is None


def test_client_s2_mismatch():
    server = ServerHandshake(random_bytes=seeded(2))
    strict = ClientHandshake(strict=True, random_bytes=seeded(1))
    lenient = ClientHandshake(random_bytes=seeded(1))
    answer = server.receive_data(strict.initiate())
    lenient.initiate()
    bad = answer[:-1] + bytes([answer[-1] ^ 1])
    with pytest.raises(HandshakeError) as info:
        strict.receive_data(bad)
    assert info.value.where == "S2 byte 1504"
    lenient.receive_data(bad)
    assert lenient.done and lenient.server_verified is False


@pytest.mark.parametrize(
    ("s0", "what"),
    [
        (b"\x06", "RTMPE (encrypted RTMP, version 6) is not supported"),
        (b"\xff", "unsupported RTMP version 0xff"),
        (b"<html>", "unsupported RTMP version 0x3c"),
    ],
)
def test_client_rejects_bad_s0(s0, what):
    client = ClientHandshake()
    client.initiate()
    with pytest.raises(HandshakeError) as info:
        client.receive_data(s0)
    assert (info.value.what, info.value.where) == (what, "S0")


def test_client_misuse():
    client = ClientHandshake()
    with pytest.raises(RuntimeError):
        client.receive_data(b"\x03")
    client.initiate()
    with pytest.raises(RuntimeError):
        client.initiate()
    with pytest.raises(ValueError):
        ClientHandshake("rtmpe")
    with pytest.raises(ValueError):
        ClientHandshake(version=bytes(4))


def test_client_bytes_after_done_go_to_leftover():
    server = ServerHandshake(random_bytes=seeded(2))
    client = ClientHandshake(random_bytes=seeded(1))
    client_out = client.initiate()
    client.receive_data(server.receive_data(client_out))
    assert client.receive_data(b"xy") == b""
    assert client.leftover == b"xy"
