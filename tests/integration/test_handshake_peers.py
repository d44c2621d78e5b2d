"""Our handshake against real peers over loopback sockets.

- ffmpeg (playing, which checks S1's and S2's digests) and rtmpdump (with SWF
  verification, which checks S2; and without it, plain) complete the handshake
  with ``ServerHandshake``: each then sends its ``connect`` command, which it
  only does after accepting S0 S1 S2.
- ``ClientHandshake`` completes the handshake with nginx-rtmp, both schemes, and
  nginx then answers a real ``connect`` (ffmpeg's, from tests/data) with
  ``_result``.

A few seconds in all.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from rtmprelay.rtmp.handshake import ClientHandshake, ServerHandshake
from rtmprelay.testing import find_tool

DATA = Path(__file__).resolve().parent.parent / "data"
KEY_TAIL = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
FP_KEY = b"Genuine Adobe Flash Player 001" + KEY_TAIL
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + KEY_TAIL
TIMEOUT = 8.0


def hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


class OneShotServer:
    """Accepts one connection, runs ServerHandshake, keeps what follows C2."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.handshake = ServerHandshake()
        self.sent = b""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                while b"connect" not in self.handshake.leftover:
                    data = conn.recv(65536)
                    if not data:
                        break
                    out = self.handshake.receive_data(data)
                    if out:
                        self.sent += out
                        conn.sendall(out)
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            self.listener.close()

    def join(self) -> None:
        self.thread.join(TIMEOUT + 2)


def run_client(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # the server closed; the client may linger
        return (exc.stderr or b"").decode("utf-8", "replace")
    return proc.stderr.decode("utf-8", "replace")


CLIENTS = {
    # ffmpeg playing checks S1's server digest and S2's signature ("Signature mismatch")
    "ffmpeg-play": (
        ["ffmpeg", "-hide_banner", "-loglevel", "debug", "-i", "{url}",
         "-t", "1", "-f", "null", "-"],
        "digest",
    ),
    # librtmp with SWF verification uses the digest handshake and checks S2
    "rtmpdump-fp9": (["rtmpdump", "-r", "{url}", "-v", "-o", "/dev/null", "-z",
                      "-w", "00" * 32, "-x", "1000"], "digest"),
    "rtmpdump-plain": (["rtmpdump", "-r", "{url}", "-v", "-o", "/dev/null", "-z"], "plain"),
}


@pytest.mark.peers
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_real_clients_accept_our_server(client):
    argv, scheme = CLIENTS[client]
    argv = [find_tool(argv[0])] + argv[1:]
    server = OneShotServer()
    url = f"rtmp://127.0.0.1:{server.port}/live/stream"
    stderr = run_client([a.replace("{url}", url) for a in argv])
    server.join()
    assert server.error is None, server.error
    hs = server.handshake
    assert hs.done, stderr[-2000:]
    assert hs.scheme == scheme
    # the client sent connect: it accepted S0 S1 S2
    assert b"connect" in hs.leftover, stderr[-2000:]
    for failure in ("Signature mismatch", "validating failed", "not genuine", "Handshake failed"):
        assert failure not in stderr
    if scheme == "digest":
        # and its C2 is the digest answer to our S1 (the answer players give)
        s1 = server.sent[1:1537]
        offs = sum(s1[8:12]) % 728 + 12
        key = hmac256(FP_KEY, s1[offs : offs + 32])
        assert hmac256(key, hs.c2[:1504]) == hs.c2[1504:]


def ffmpeg_connect_message() -> bytes:
    """ffmpeg's connect command, chunked at 128 (app live/user1), from a capture."""
    data = (DATA / "ffmpeg_publish.c2s.bin").read_bytes()
    # C0C1C2 is 3073 bytes; the connect message runs up to Set Chunk Size at 3238
    # (see tests/data/README.md)
    return data[3073:3238]


@pytest.mark.peers
@pytest.mark.parametrize("scheme", ["digest", "plain"])
def test_our_client_with_nginx(nginx_rtmp_factory, scheme):
    nginx = nginx_rtmp_factory(applications=("live", "live/user1"), record=False)
    client = ClientHandshake(scheme, strict=(scheme == "digest"))
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=TIMEOUT) as sock:
        c0c1 = client.initiate()
        sock.sendall(c0c1)
        while not client.done:
            data = sock.recv(65536)
            assert data, "nginx closed during the handshake"
            out = client.receive_data(data)
            if out:
                sock.sendall(out)
        if scheme == "digest":
            # nginx found our C1 digest: only then does it sign S2 with it
            assert client.server_verified is True
            assert client.server_version == b"\x0d\x0e\x0a\x0d"
        else:
            assert client.server_verified is None
        sock.sendall(ffmpeg_connect_message())
        received = client.leftover
        while b"_result" not in received:
            data = sock.recv(65536)
            assert data, f"nginx closed after connect: {received!r}"
            received += data
