"""Forwarding that survives, with real peers: nginx-rtmp killed and restarted
under a live publish, an upstream behind a TLS terminator with a CA the relay
does not know, two destinations with one of them down, and a graceful stop.

The relays run with ``--no-clean`` where frames are counted, so that what
nginx recorded can be matched payload for payload against what ffmpeg sent,
and with ``--bridge-grace 0`` where no filler may follow the publisher's end."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request

import pytest

from rtmprelay.testing import flv
from rtmprelay.testing.publishers import make_test_flv
from rtmprelay.testing.tls import make_test_pki

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def long_flv(tmp_path_factory):
    """12 s of 160x96 25 fps H.264 + AAC, a keyframe every second."""
    return make_test_flv(tmp_path_factory.mktemp("forwarding") / "long.flv", seconds=12, size="160x96")


def api_streams(relay) -> list[dict]:
    with urllib.request.urlopen(relay.http_url("/api/streams"), timeout=5) as answer:
        return json.load(answer)


def upstreams_of(relay, path: str) -> list[dict]:
    for stream in api_streams(relay):
        if stream["path"] == path:
            return stream["upstreams"]
    return []


def wait_for(predicate, what: str, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def test_nginx_killed_and_restarted_mid_publish_gets_the_rest_of_the_stream(
    nginx_rtmp_factory, rtmprelay_factory, ffmpeg_publisher_factory, long_flv
):
    upstream = nginx_rtmp_factory()
    relay = rtmprelay_factory(
        ["--bridge-grace", "0", "--no-clean", "--no-hls", "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}"]
    )
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/restart"), seconds=None, source_file=long_flv)
    wait_for(lambda: "forwarding live/user1/restart" in relay.log_text, "the relay to forward")
    time.sleep(3.0)
    upstream.crash()
    wait_for(lambda: "closed the connection" in relay.log_text, "the relay to see the loss")
    time.sleep(1.5)  # down for a while: the relay keeps asking, and queues
    upstream.start()
    wait_for(lambda: relay.log_text.count("forwarding live/user1/restart") >= 2, "the relay to forward again", timeout=5)
    publisher.wait()
    publisher.check()
    upstream.wait_recording("user1/restart")
    before, after = upstream.recordings_of("user1/restart")
    for kind in ("video", "audio"):
        first = flv.assert_payload_subsequence(long_flv, before, kinds=[kind])[kind]
        second = flv.assert_payload_subsequence(long_flv, after, kinds=[kind])[kind]
        assert first.start == 0
        # the second publish starts at a keyframe no later than where the first left off,
        # and goes to the end: together they hold every frame ffmpeg sent
        assert second.start <= first.start + first.count, (first, second)
        assert second.dropped_tail == 0, second
    tags = flv.read_flv_tags(after)
    video = [t for t in tags if t.kind == "video"]
    assert video[0].is_header and video[1].is_keyframe  # headers re-sent, resumed at a keyframe
    report = flv.decode_check(after)
    assert report.clean, report
    (state,) = upstreams_of(relay, "live/user1/restart") or [None]
    assert state is None or state["state"] == "live"  # the stream may have ended already


def test_an_upstream_behind_a_tls_terminator_with_an_unknown_ca(
    tmp_path, nginx_rtmp_factory, rtmprelay_factory, ffmpeg_publisher_factory, reference_flv
):
    pki = make_test_pki(tmp_path / "pki")
    upstream = nginx_rtmp_factory(tls=(pki["cert"], pki["key"]))
    template = upstream.tls_url("{path}")
    untrusting = rtmprelay_factory(["--bridge-grace", "0", "--no-clean", "--no-hls", "--forward", template])
    trusting = rtmprelay_factory(
        ["--bridge-grace", "0", "--no-clean", "--no-hls", "--forward", template, "--upstream-ca", str(pki["ca"])]
    )
    refused = ffmpeg_publisher_factory(untrusting.url("live/user1/untrusted"), seconds=None, source_file=reference_flv)
    accepted = ffmpeg_publisher_factory(trusting.url("live/user1/trusted"), seconds=None, source_file=reference_flv)
    tls_errors = wait_for(
        lambda: [u for u in upstreams_of(untrusting, "live/user1/untrusted") if u["errors"].get("tls")], "a counted TLS error"
    )
    assert tls_errors[0]["state"] in ("backing off", "connecting")
    assert "unable to get local issuer certificate" in tls_errors[0]["last_error"]["message"]
    for publisher in (refused, accepted):
        publisher.wait()
        publisher.check()  # the ingest never suffers
    log = untrusting.log_text
    message = "TLS: the server certificate CN=localhost (issued by CN=rtmprelay test CA): unable to get local issuer certificate"
    assert log.count(message) == 1, log  # logged once, however often it is tried
    assert "forwarding live/user1/untrusted" not in log
    recording = upstream.wait_recording("user1/trusted")
    runs = flv.assert_payload_subsequence(reference_flv, recording)
    assert runs["video"].dropped_head == 0 and runs["video"].dropped_tail == 0


def test_two_destinations_with_one_down_the_other_gets_every_frame(
    nginx_rtmp_factory, rtmprelay_factory, ffmpeg_publisher_factory, reference_flv, free_port
):
    upstream = nginx_rtmp_factory()
    relay = rtmprelay_factory(
        [
            "--bridge-grace", "0",
            "--no-clean",
            "--no-hls",
            "--forward", f"rtmp://127.0.0.1:{free_port}/live/{{streamId}}",  # nothing listens there
            "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}",
        ]
    )
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/twice"), seconds=None, source_file=reference_flv)
    down, up = wait_for(
        lambda: (lambda u: u if len(u) == 2 and u[0]["errors"].get("refused", 0) >= 2 else None)(
            upstreams_of(relay, "live/user1/twice")
        ),
        "the down destination to be retried",
    )
    assert down["url"] == f"rtmp://127.0.0.1:{free_port}/live/twic…" and down["state"] in ("backing off", "connecting")
    assert up["state"] == "live" and up["errors"] == {}
    publisher.wait()
    publisher.check()
    recording = upstream.wait_recording("user1/twice")
    runs = flv.assert_payload_subsequence(reference_flv, recording)
    assert runs["video"].dropped_head == 0 and runs["video"].dropped_tail == 0
    assert flv.decode_check(recording).clean


def media_playlists(folder) -> dict[str, str]:
    """The media playlists of a stream's HLS folder (fMP4 by default: video.m3u8 and
    audio.m3u8 under a master index.m3u8; MPEG-TS: index.m3u8 itself), by name."""
    texts = {p.name: p.read_text() for p in sorted(folder.glob("*.m3u8"))}
    return {name: text for name, text in texts.items() if "#EXT-X-STREAM-INF" not in text}


def test_sigterm_ends_every_upstream_publish_cleanly_and_exits_0(
    tmp_path, nginx_rtmp_factory, rtmprelay_factory, ffmpeg_publisher_factory, long_flv
):
    upstream = nginx_rtmp_factory()
    hls = tmp_path / "hls"
    relay = rtmprelay_factory(
        ["--no-clean", "--hls", str(hls), "--hls-mode", "copy", "--hls-segment", "1",
         "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}"]
    )
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/bye"), seconds=None, source_file=long_flv)
    folder = hls / "user1" / "bye"
    wait_for(lambda: "forwarding live/user1/bye" in relay.log_text and media_playlists(folder), "forwarding and a playlist")
    relay._signal_stop()  # SIGTERM, as systemd or docker stop sends it
    assert relay.wait(timeout=15) == 0, relay.log_text
    playlists = media_playlists(folder)
    assert playlists and all("#EXT-X-ENDLIST" in text for text in playlists.values()), playlists
    upstream.wait_recording("user1/bye")
    # nginx logs "deleteStream" when the command comes, and again on disconnect: a relay that
    # unpublished cleanly shows it before the disconnect, one that just closed the socket after.
    log = upstream.error_log_text()
    connection = re.search(r"\*(\d+) publish: name='user1/bye'", log).group(1)
    lines = [line for line in log.splitlines() if f"*{connection} " in line]
    first = next(line for line in lines if "deleteStream" in line or "disconnect" in line)
    assert "deleteStream" in first, "\n".join(lines)
    assert "ended the upstream publish of live/user1/bye" in relay.log_text
    publisher.stop()


@pytest.mark.parametrize(
    ("going", "hls_mode"),
    [("kill", "copy"), ("stop", "transcode")],
    ids=["dropped-hls-copy", "unpublished-hls-transcode"],
)
def test_the_publisher_gone_and_back_inside_the_grace_is_one_upstream_publish(
    tmp_path, nginx_rtmp_factory, rtmprelay_factory, ffmpeg_publisher_factory, long_flv, going, hls_mode
):
    """ffmpeg gone 2.5 s in (SIGKILLed: the connection drops; or stopped: it unpublishes,
    as Android SDKs do before they reconnect), a new ffmpeg on the same path 2 s later:
    nginx sees one publish, one recording whose timeline goes on through the gap (filled
    with the last picture repeated) and decodes without a warning; the relay's HLS, copied
    or transcoded, has no discontinuity."""
    upstream = nginx_rtmp_factory()
    hls = tmp_path / "hls"
    relay = rtmprelay_factory(
        ["--bridge-grace", "4", "--hls", str(hls), "--hls-mode", hls_mode, "--hls-segment", "1",
         "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}"]
    )  # fmt: skip
    url = relay.url("live/user1/flaky")
    first = ffmpeg_publisher_factory(url, seconds=6, source_file=long_flv)
    wait_for(lambda: "forwarding live/user1/flaky" in relay.log_text, "the relay to forward")
    time.sleep(2.5)
    getattr(first, going)()
    wait_for(lambda: "bridged for up to 4 s" in relay.log_text, "the bridge")
    time.sleep(2.0)
    (state,) = upstreams_of(relay, "live/user1/flaky")
    assert state["state"] == "bridging" and state["errors"] == {}, state
    second = ffmpeg_publisher_factory(url, seconds=4, source_file=long_flv)
    wait_for(lambda: "joined on at its first keyframe" in relay.log_text, "the splice")
    second.wait()
    second.check()
    wait_for(lambda: "ended the upstream publish of live/user1/flaky" in relay.log_text, "the grace to run out", timeout=15)
    recording = upstream.wait_recording("user1/flaky")
    time.sleep(0.5)
    publishes = [r for r in upstream.access_records() if "PUBLISH" in r.command and r.name == "user1/flaky"]
    assert len(publishes) == 1, publishes  # one upstream session for the two publishers
    video = [t for t in flv.read_flv_tags(recording) if t.kind == "video" and not t.is_header]
    times = [t.timestamp for t in video]
    steps = [b - a for a, b in zip(times, times[1:])]
    assert min(steps) > 0 and max(steps) <= 100, steps  # never back, no hole: one continuous timeline
    filler = [t for t in video if len(t.payload) < 64 and not t.is_keyframe]  # all-skip P-frames
    assert len(filler) >= 25 * 2 + 25 * 3, len(filler)  # the outage (>= 2 s) and the grace at the end (4 s)
    assert times[-1] >= 2500 + 2000 + 4000 + 3000, times[-1]  # both publishes, the gap and the grace, on one timeline
    report = flv.decode_check(recording)
    assert report.clean, report
    assert report.video_frames == len(video)
    playlists = media_playlists(hls / "user1" / "flaky")
    assert playlists, "no HLS playlist"
    for text in playlists.values():
        assert "#EXT-X-DISCONTINUITY" not in text and "#EXT-X-ENDLIST" in text, text


def test_an_application_the_upstream_does_not_have_is_named_counted_and_logged_once(
    nginx_rtmp_factory, rtmprelay_factory, ffmpeg_publisher_factory, reference_flv
):
    """nginx-rtmp closes the connection on an unknown application, without a word: the
    relay says which application, counts each try, logs it once, and the ingest goes on."""
    upstream = nginx_rtmp_factory()
    relay = rtmprelay_factory(
        ["--bridge-grace", "0", "--no-hls", "--forward", f"rtmp://127.0.0.1:{upstream.port}/nope/{{path}}"]
    )
    publisher = ffmpeg_publisher_factory(relay.url("live/user1/lost"), seconds=None, source_file=reference_flv)
    (state,) = wait_for(
        lambda: [u for u in upstreams_of(relay, "live/user1/lost") if u["errors"].get("closed", 0) >= 2],
        "the unknown application to be tried twice",
    )
    assert "application 'nope' may not exist" in state["last_error"]["message"], state
    assert state["state"] in ("backing off", "connecting") and state["frames_sent"] == 0
    publisher.wait()
    publisher.check()
    assert relay.log_text.count("application 'nope' may not exist") == 1, relay.log_text
