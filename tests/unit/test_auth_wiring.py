"""The daemon's authorization, as its options build it: the default requires signing, and the
admission chain's checks come in order (signed URLs, hooks, the upstream lookup)."""

from __future__ import annotations

import time

import pytest
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage

from rtmprelay.auth.secret import SECRET_ENV, SECRET_FILE_NAME
from rtmprelay.auth.signing import sign_url
from rtmprelay.cloud.hook import HttpAdmissionHook
from rtmprelay.relay.admission import PathHookCheck, SignedUrlCheck
from rtmprelay.relay.server import RTMPServerFactory
from rtmprelay.rtmp import session as s
from rtmprelay.tap import Options, makeService
from tests.unit.test_server_protocol import Peer, of_type

URL = "rtmp://127.0.0.1/live/user1/stream1"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SECRET_ENV, raising=False)


def built(*args):
    options = Options()
    options.parseOptions(list(args))
    with capturedLogs() as logs:
        service = makeService(options)
    (factory,) = {child.factory for child in service if isinstance(getattr(child, "factory", None), RTMPServerFactory)}
    return factory, [formatEvent(event) for event in logs]


def kinds(factory):
    return [type(check) for check in factory.admissions.chain.checks]


def test_the_default_requires_signed_publishes_with_a_secret_made_beside_the_hls_folder(tmp_path):
    factory, log = built()  # tcp:1935: every interface
    secret_file = tmp_path / SECRET_FILE_NAME
    secret = secret_file.read_bytes().strip()
    assert kinds(factory) == [SignedUrlCheck]
    assert any("tcp:1935 listens beyond loopback" in line and str(secret_file) in line for line in log)
    assert any(f"rtmprelay sign --auth-secret-file {secret_file}" in line for line in log)
    assert all(secret.decode() not in line for line in log)
    unsigned = Peer(factory, URL)
    unsigned.pump()
    (failed,) = of_type(unsigned.events, s.PublishFailed)
    assert failed.code == "NetStream.Publish.Unauthorized"
    signed = Peer(factory, sign_url(URL, secret, int(time.time()) + 600))  # the reactor's clock checks it
    signed.pump()
    assert of_type(signed.events, s.PublishStarted)
    # A second start reads the same secret.
    built()
    assert secret_file.read_bytes().strip() == secret


def test_no_auth_switches_it_off_and_says_so(tmp_path):
    factory, log = built("--no-auth")
    assert kinds(factory) == [] and not (tmp_path / SECRET_FILE_NAME).exists()
    assert any("--no-auth: anyone who reaches tcp:1935 may publish any stream" in line for line in log)
    peer = Peer(factory, URL)
    peer.pump()
    assert of_type(peer.events, s.PublishStarted)


def test_a_loopback_relay_checks_nothing(tmp_path):
    factory, _ = built("--rtmp", "tcp:1935:interface=127.0.0.1")
    assert kinds(factory) == [] and not (tmp_path / SECRET_FILE_NAME).exists()


def test_checks_run_cheap_local_ones_first(monkeypatch, tmp_path):
    monkeypatch.setenv(SECRET_ENV, "environment-secret-0123456789")
    factory, log = built(
        "--cloud", "http://cloud.example", "--public-url", "http://relay.example",
        "--on-publish", "http://hooks.example/on_publish", "--on-play", "http://hooks.example/on_play", "--auth-play",
    )  # fmt: skip
    assert kinds(factory) == [SignedUrlCheck, HttpAdmissionHook, HttpAdmissionHook, PathHookCheck]
    signed, on_publish, on_play, lookup = factory.admissions.chain.checks
    assert signed.actions == {"publish", "play"} and on_publish.actions == {"publish"} and on_play.actions == {"play"}
    assert lookup.actions == {"publish"}
    assert any("signed URLs are required to publish and play" in line and "$RTMPRELAY_AUTH_SECRET" in line for line in log)
    assert all("environment-secret" not in line for line in log)


def test_a_publish_hook_authorizes_an_exposed_relay_without_a_secret(tmp_path):
    factory, _ = built("--on-publish", "http://hooks.example/on_publish")
    assert kinds(factory) == [HttpAdmissionHook] and not (tmp_path / SECRET_FILE_NAME).exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--no-auth", "--auth-play"], "--no-auth"),
        (["--on-publish", "hooks.example/x"], "--on-publish must be an http"),
        (["--auth-secret-file", "/nonexistent/secret"], "cannot read the auth secret file"),
        (["--auth-clock-skew", "-1"], "not a number of seconds, 0 or more"),
    ],
)
def test_bad_auth_options_are_usage_errors(args, message):
    with pytest.raises(usage.UsageError, match=message):
        Options().parseOptions(args)
