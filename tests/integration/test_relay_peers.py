"""The relay between real peers: ffmpeg, GStreamer (librtmp's rtmpsink and
rtmp2sink) and rtmpdump/ffprobe/rtmp2src on one side, nginx-rtmp as the strict
upstream on the other. Media is checked byte for byte and by decoding.

These test the protocol, so the relays run with ``--no-clean``: what nginx
records must then be exactly what was published. Cleaning has its own tests
(test_cleaning_peers.py)."""

from __future__ import annotations

import socket
import time

import pytest

from rtmprelay.testing import flv
from rtmprelay.testing.players import ffprobe_stream
from rtmprelay.testing.tls import make_test_pki

pytestmark = pytest.mark.peers


@pytest.fixture
def upstream(nginx_rtmp_factory):
    """A stock nginx-rtmp: one ``application live``, as the README's example expects."""
    return nginx_rtmp_factory(applications=("live",))


@pytest.fixture
def forwarding_relay(rtmprelay_factory, upstream):
    return rtmprelay_factory(["--bridge-grace", "0", "--no-clean", "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}"])


def _read_until_closed(sock, timeout=10.0):
    """What the relay sent before it closed; a reset counts as closed (time limits end a
    connection with a TCP reset, so that no lingering socket holds a buffer)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _codecs(streams):
    return sorted(s.codec_name for s in streams)


def test_ffmpeg_publish_reaches_nginx_with_every_payload(forwarding_relay, upstream, reference_flv, ffmpeg_publisher_factory):
    """The README's example: --forward 'rtmp://HOST:PORT/live/{path}' into a stock ``application live``."""
    publisher = ffmpeg_publisher_factory(forwarding_relay.url("live/user1/stream1"), seconds=None, source_file=reference_flv)
    publisher.wait()
    publisher.check()
    recording = upstream.wait_recording("user1/stream1")
    runs = flv.assert_payload_subsequence(reference_flv, recording)
    # Unlike nginx's own push, the relay loses nothing at the start.
    assert runs["video"].dropped_head == 0, runs
    assert runs["audio"].dropped_head == 0, runs
    report = flv.decode_check(recording)
    assert report.clean, report
    assert report.video_frames == len(flv.media_payloads(reference_flv, "video"))


def test_android_style_split_is_the_same_stream_upstream(forwarding_relay, upstream, reference_flv, ffmpeg_publisher_factory):
    """App ``live`` + name ``user1/stream1?token=x`` goes to the same upstream path."""
    url = forwarding_relay.url("live/user1/stream1")
    publisher = ffmpeg_publisher_factory(url, seconds=None, source_file=reference_flv, app="live")
    publisher.wait()
    publisher.check()
    assert "publish live/user1/stream1" in forwarding_relay.log_text
    recording = upstream.wait_recording("user1/stream1")
    flv.assert_payload_subsequence(reference_flv, recording)


@pytest.mark.parametrize("element", ["rtmpsink", "rtmp2sink"])
def test_gstreamer_publishes_through_the_relay(element, forwarding_relay, upstream, gst_publisher_factory):
    publisher = gst_publisher_factory(forwarding_relay.url("live/user1/gst"), element=element, seconds=3)
    publisher.wait()
    publisher.check()
    recording = upstream.wait_recording("user1/gst")
    report = flv.decode_check(recording)
    assert report.clean, report
    assert report.video_frames >= 60 and report.audio_frames > 0, report


def _publish_in_background(ffmpeg_publisher_factory, url, seconds=8):
    publisher = ffmpeg_publisher_factory(url, seconds=seconds, gop=25)
    return publisher


def test_players_read_from_the_relay(rtmprelay_factory, ffmpeg_publisher_factory, rtmpdump_player_factory, gst_player_factory):
    relay = rtmprelay_factory(["--no-hls"])
    url = relay.url("live/user1/play")
    publisher = _publish_in_background(ffmpeg_publisher_factory, url)
    streams = ffprobe_stream(url, timeout=30)
    assert _codecs(streams) == ["aac", "h264"]
    dump = rtmpdump_player_factory(url, seconds=3)
    gst = gst_player_factory(url, seconds=3)
    dump.wait()
    gst.wait()
    publisher.wait()
    publisher.check()
    for out in (dump.out, gst.out):
        tags = flv.read_flv_tags(out)
        video = [t for t in tags if t.kind == "video" and not t.is_header]
        assert video and video[0].is_keyframe, f"{out}: first video frame is not a keyframe"
        first_video = next(i for i, t in enumerate(tags) if t.kind == "video")
        assert tags[first_video].is_header, f"{out}: video starts without its sequence header"
        report = flv.decode_check(out)
        assert report.video_frames > 10 and not report.errors, report


def test_second_publisher_to_a_live_path_is_refused_and_the_first_goes_on(forwarding_relay, upstream, ffmpeg_publisher_factory, reference_flv):
    url = forwarding_relay.url("live/user1/dup")
    first = ffmpeg_publisher_factory(url, seconds=6, gop=25)
    deadline = time.monotonic() + 20
    while "publish live/user1/dup" not in forwarding_relay.log_text and time.monotonic() < deadline:
        time.sleep(0.1)
    second = ffmpeg_publisher_factory(url, seconds=None, source_file=reference_flv)
    assert second.wait() != 0
    first.wait()
    first.check()
    assert "already being published" in forwarding_relay.log_text
    report = flv.decode_check(upstream.wait_recording("user1/dup"))
    assert report.clean and report.video_frames >= 6 * 25 - 2, report


def test_bad_clients_do_not_disturb_a_live_stream(rtmprelay_factory, upstream, ffmpeg_publisher_factory, reference_flv):
    relay = rtmprelay_factory(["--bridge-grace", "0", "--no-clean", "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}", "--handshake-timeout", "1"])
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/steady"), seconds=None, source_file=reference_flv)
    garbage = socket.create_connection(("127.0.0.1", relay.port))
    garbage.sendall(b"\x06" + b"\xff" * 2000)  # RTMPE version, then junk
    staller = socket.create_connection(("127.0.0.1", relay.port))
    staller.sendall(b"\x03" + b"\x00" * 100)  # half a C1, then silence
    publisher.wait()
    publisher.check()
    assert _read_until_closed(garbage) == b""  # closed, and nothing sent back
    assert _read_until_closed(staller) == b""  # C1 never completed: no S0S1S2 either
    log = relay.log_text
    assert "unsupported RTMP version" in log or "version 6" in log, log
    assert "handshake not finished" in log, log
    recording = upstream.wait_recording("user1/steady")
    runs = flv.assert_payload_subsequence(reference_flv, recording)
    assert runs["video"].dropped_head == 0


def test_rtmps_ingest_and_rtmps_upstream(tmp_path, rtmprelay_factory, upstream, ffmpeg_publisher_factory, reference_flv):
    """ffmpeg -> RTMPS -> relay A -> RTMPS (verified against a test CA) -> relay B -> nginx."""
    pki = make_test_pki(tmp_path / "pki")
    tls = (str(pki["key"]), str(pki["cert"]))
    relay_b = rtmprelay_factory(["--bridge-grace", "0", "--no-clean", "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}"], tls=tls)
    relay_a = rtmprelay_factory(
        ["--bridge-grace", "0", "--no-clean", "--forward", f"rtmps://localhost:{relay_b.port}/live/{{path}}", "--upstream-ca", str(pki["ca"])],
        tls=tls,
    )
    publisher = ffmpeg_publisher_factory(relay_a.url("live/user1/secure"), seconds=None, source_file=reference_flv)
    publisher.wait()
    publisher.check()
    recording = upstream.wait_recording("user1/secure")
    runs = flv.assert_payload_subsequence(reference_flv, recording)
    assert runs["video"].dropped_head == 0
    assert "forwarding live/user1/secure to rtmps://localhost" in relay_a.log_text


def test_upstream_with_an_untrusted_certificate_is_refused_and_the_ingest_stays_up(
    tmp_path, rtmprelay_factory, ffmpeg_publisher_factory, reference_flv
):
    pki = make_test_pki(tmp_path / "pki")
    relay_b = rtmprelay_factory(["--no-hls"], tls=(str(pki["key"]), str(pki["cert"])))
    relay_a = rtmprelay_factory(["--bridge-grace", "0", "--forward", f"rtmps://localhost:{relay_b.port}/live/{{path}}"])  # system trust store only
    publisher = ffmpeg_publisher_factory(relay_a.url("live/user1/untrusted"), seconds=None, source_file=reference_flv)
    publisher.wait()
    publisher.check()  # the ingest itself went fine
    log = relay_a.log_text
    assert "forwarding live/user1/untrusted" not in log
    # named: which certificate, and why
    assert "TLS: the server certificate CN=localhost (issued by CN=rtmprelay test CA)" in log, log


def test_upstream_that_is_down_leaves_the_ingest_up(rtmprelay_factory, free_port, ffmpeg_publisher_factory, reference_flv):
    relay = rtmprelay_factory(["--bridge-grace", "0", "--forward", f"rtmp://127.0.0.1:{free_port}/live/{{path}}"])
    url = relay.url("live/user1/lonely")
    publisher = ffmpeg_publisher_factory(url, seconds=None, source_file=reference_flv)
    publisher.wait()
    publisher.check()
    assert "connection refused" in relay.log_text
