"""Publish and play authorization between real peers: ffmpeg publishing with signed URLs
made by ``rtmprelay sign``, nginx-rtmp as the upstream, rtmpdump and ffprobe playing, and an
``--on-publish`` hook served by twisted.web in this test process.

Every test reads the relay's whole log for the secret and the signatures: neither may be there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from urllib.parse import parse_qsl

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web import resource, server

from rtmprelay.auth.secret import SECRET_ENV
from rtmprelay.testing import flv
from rtmprelay.testing.peers import PeerError
from rtmprelay.testing.players import ffprobe_stream
from tests.integration.test_cloud_peers import until

pytestmark = pytest.mark.peers

SECRET = "integration-secret-4b1d9e0c7f"
UPSTREAM_APPS = ("live", "live/user1")


def sign(url: str, *args: str) -> str:
    """``rtmprelay sign`` as the cloud side or an operator runs it (the secret from the environment)."""
    result = subprocess.run(
        [sys.executable, "-m", "rtmprelay", "sign", url, *args],
        capture_output=True, text=True, timeout=30, env={**os.environ, SECRET_ENV: SECRET}, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def signature_of(url: str) -> str:
    return dict(parse_qsl(url.split("?", 1)[1]))["sig"]


def assert_no_secrets(relay, *signatures: str) -> None:
    text = relay.log_text + relay.stderr_text
    assert SECRET not in text
    for sig in signatures:
        assert sig not in text, "a signature reached the log"
    assert not re.search(r"sig=[0-9a-fA-F]", text)


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)  # from the environment, as in production: never on the command line


@pytest.fixture
def upstream(nginx_rtmp_factory):
    return nginx_rtmp_factory(applications=UPSTREAM_APPS)


def test_a_signed_publish_flows_upstream_and_bad_ones_are_unauthorized(secret_env, rtmprelay_factory, upstream, reference_flv, ffmpeg_publisher_factory):
    relay = rtmprelay_factory(["--bridge-grace", "0", "--no-clean", "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}"])
    good = sign(relay.url("live/user1/stream1"), "--expires-in", "600")
    tampered_url = sign(relay.url("live/user1/other"), "--expires-in", "600")
    tampered = tampered_url.replace(relay.url("live/user1/other"), relay.url("live/user1/stolen"))  # another path
    expired = sign(relay.url("live/user1/late"), "--expires-in", "-600")
    refused = {
        "unsigned": (relay.url("live/user1/open"), "no exp and sig"),
        "bad_signature": (tampered, "signature does not match live/user1/stolen"),
        "expired": (expired, "signed URL expired"),
    }
    publishers = {kind: ffmpeg_publisher_factory(url, seconds=None, source_file=reference_flv) for kind, (url, _) in refused.items()}
    for kind, publisher in publishers.items():
        publisher.wait()
        assert publisher.returncode != 0, f"{kind}: ffmpeg was let in"
        assert refused[kind][1] in publisher.stderr_text, publisher.stderr_text
    publisher = ffmpeg_publisher_factory(good, seconds=None, source_file=reference_flv)
    publisher.wait()
    publisher.check()
    recording = upstream.wait_recording("user1/stream1")  # application live, stream user1/stream1
    flv.assert_payload_subsequence(reference_flv, recording)
    report = flv.decode_check(recording)
    assert report.clean, report
    log = relay.log_text
    for kind, path in [("unsigned", "open"), ("bad_signature", "stolen"), ("expired", "late")]:
        lines = [line for line in log.splitlines() if f"rejecting publish of live/user1/{path} from 127.0.0.1:" in line]
        assert len(lines) == 1 and f"(signature_{kind})" in lines[0], log
    assert "publish live/user1/stream1 from 127.0.0.1:" in log
    assert_no_secrets(relay, signature_of(good), signature_of(tampered), signature_of(expired))
    assert not relay.unexpected_errors()


def test_play_authorization_with_librtmp_and_ffmpeg_players(secret_env, rtmprelay_factory, ffmpeg_publisher_factory, rtmpdump_player_factory):
    relay = rtmprelay_factory(["--no-hls", "--auth-play"])
    url = relay.url("live/user1/watched")
    publish_url = sign(url)
    play_url = sign(url, "--play")
    publisher = ffmpeg_publisher_factory(publish_url, seconds=5, gop=25)
    streams = ffprobe_stream(play_url, timeout=30)
    assert sorted(s.codec_name for s in streams) == ["aac", "h264"]
    # librtmp closes at once on NetStream.Play.Failed, with nothing recorded.
    dump = rtmpdump_player_factory(url, seconds=None)
    dump.wait()
    assert dump.returncode not in (0, None) and (not dump.out.exists() or dump.out.stat().st_size == 0)
    # A publisher's URL does not let its holder play (nor would a viewer's let it publish).
    with pytest.raises(PeerError, match="does not match"):
        ffprobe_stream(publish_url, timeout=30)
    publisher.wait()
    publisher.check()
    log = relay.log_text
    assert log.count("rejecting play of live/user1/watched from 127.0.0.1:") == 2, log
    assert "(signature_unsigned)" in log and "(signature_bad_signature)" in log
    assert_no_secrets(relay, signature_of(publish_url), signature_of(play_url))


# -- the HTTP admission hook -------------------------------------------------------------


class PublishHook(resource.Resource):
    """nginx-rtmp's on_publish as a backend would write it: admits the token it knows."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []

    def render_POST(self, request):
        form = dict(parse_qsl(request.content.read().decode(), keep_blank_values=True))
        self.forms.append(form)
        request.setResponseCode(200 if form.get("token") == "good" else 403)
        return b""


@pytest.fixture
def publish_hook():
    hook = PublishHook()
    port = reactor.listenTCP(0, server.Site(hook), interface="127.0.0.1")
    hook.url = f"http://127.0.0.1:{port.getHost().port}/on_publish"
    yield hook
    port.stopListening()


@pytest_twisted.inlineCallbacks
def test_an_on_publish_hook_admits_by_the_clients_token(publish_hook, rtmprelay_factory, ffmpeg_publisher_factory):
    relay = rtmprelay_factory(["--no-hls", "--on-publish", publish_hook.url])
    admitted = ffmpeg_publisher_factory(relay.url("live/user1/ok?token=good"), seconds=2)
    refused = ffmpeg_publisher_factory(relay.url("live/user1/no?token=bad"), seconds=2)
    yield until(lambda: not admitted.running and not refused.running, "the publishers to finish")
    admitted.check()
    assert refused.returncode != 0
    assert "refused by the publish hook (HTTP 403)" in refused.stderr_text, refused.stderr_text
    forms = {form["path"]: form for form in publish_hook.forms}
    ok = forms["live/user1/ok"]
    assert {k: ok[k] for k in ("call", "app", "name", "type", "addr", "token")} == {
        "call": "publish", "app": "live/user1", "name": "ok", "type": "live", "addr": "127.0.0.1", "token": "good",
    }  # fmt: skip
    assert ok["tcurl"] == f"rtmp://127.0.0.1:{relay.port}/live/user1" and ok["clientid"].isdigit()
    log = relay.log_text
    assert "publish live/user1/ok from 127.0.0.1:" in log
    assert "rejecting publish of live/user1/no" in log and "(hook_refused)" in log
    assert "token=" not in log
