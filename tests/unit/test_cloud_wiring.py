"""The cloud wired into the relay: the lookup as an upstream source, the
webhook announcer (against real twisted.web servers on 127.0.0.1) and the
default public URL."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.logger import capturedLogs, formatEvent

from rtmprelay.cloud.announce import CloudAnnouncer, default_public_url, route_address
from rtmprelay.cloud.routing import CloudLookup
from rtmprelay.errors import ConfigError
from rtmprelay.relay.forward import UpstreamUnavailable, UrlTemplate
from tests.unit.test_cloud import SECRET, running, verify

PATH = "live/user1/stream1"


@defer.inlineCallbacks
def until_idle(announcer, limit_s=10.0):
    waited = 0.0
    while announcer.busy and waited < limit_s:
        yield task.deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


# -- the lookup as an upstream source ------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_lookup_source_names_the_cloud_url():
    res, client, stop = running([(200, {"cfUrl": "rtmps://live.cf.example:443/live/k1"})])
    try:
        url = yield CloudLookup(client).resolve(PATH)
    finally:
        yield stop()
    assert url == "rtmps://live.cf.example:443/live/k1"
    assert res.seen[0].path == b"/api/rtmp-relay/cf-url/user1/stream1"


@pytest_twisted.inlineCallbacks
def test_lookup_source_failure_says_what_for_the_publisher():
    res, client, stop = running([(500, "raw:down")], retries=2)
    try:
        with pytest.raises(UpstreamUnavailable) as info:
            yield CloudLookup(client).resolve(PATH)
    finally:
        yield stop()
    assert str(info.value) == "upstream lookup for user1/stream1 failed after 3 attempt(s): last status 500"
    assert "127.0.0.1" not in str(info.value)  # the publisher is not told where the cloud is
    assert len(res.seen) == 3


@pytest_twisted.inlineCallbacks
def test_template_is_the_fallback_only_while_the_cloud_is_unreachable():
    fallback = UrlTemplate("rtmp://backup.example/live/{path}")
    res, client, stop = running([(503, "raw:busy")], retries=1)
    try:
        url = yield CloudLookup(client, fallback=fallback).resolve(PATH)
    finally:
        yield stop()
    assert url == "rtmp://backup.example/live/user1/stream1"


@pytest_twisted.inlineCallbacks
def test_a_cloud_refusal_is_not_bypassed_by_the_fallback():
    fallback = UrlTemplate("rtmp://backup.example/live/{path}")
    res, client, stop = running([(404, {"error": "no such stream"})])
    try:
        with pytest.raises(UpstreamUnavailable, match="status 404"):
            yield CloudLookup(client, fallback=fallback).resolve(PATH)
    finally:
        yield stop()
    assert len(res.seen) == 1


# -- the announcer ------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_hls_ready_and_stream_ended_are_posted_signed_and_in_order():
    res, client, stop = running([(503, "raw:busy"), (200, {})], secret=SECRET)
    announcer = CloudAnnouncer(client, "http://relay.example:8888/")
    try:
        announcer.hls_ready(PATH, "user1/stream1/index.m3u8", "user1/stream1/manifest.mpd")
        announcer.stream_ended(type("Stream", (), {"path": PATH})())
        yield until_idle(announcer)
    finally:
        yield stop()
    assert not announcer.busy
    assert [(s.method, s.path) for s in res.seen] == [
        (b"POST", b"/api/rtmp-relay/hls-ready"),
        (b"POST", b"/api/rtmp-relay/hls-ready"),  # retried after the 503, before stream-ended
        (b"POST", b"/api/rtmp-relay/stream-ended"),
    ]
    for seen in res.seen:
        verify(seen)
        assert seen.headers[b"content-type"] == b"application/json"
    assert json.loads(res.seen[1].body) == {
        "userId": "user1",
        "streamId": "stream1",
        "hlsUrl": "http://relay.example:8888/hls/user1/stream1/index.m3u8",
        "dashUrl": "http://relay.example:8888/hls/user1/stream1/manifest.mpd",
    }
    assert json.loads(res.seen[2].body) == {"userId": "user1", "streamId": "stream1"}


@pytest_twisted.inlineCallbacks
def test_hls_ready_without_a_manifest_announces_null_dash_and_no_signature_without_secret():
    res, client, stop = running([(204, "raw:")])
    announcer = CloudAnnouncer(client, "https://cdn.example/relay")
    try:
        announcer.hls_ready(PATH, "user 1/stream1/index.m3u8", None)
        yield until_idle(announcer)
    finally:
        yield stop()
    (seen,) = res.seen
    assert json.loads(seen.body)["hlsUrl"] == "https://cdn.example/relay/hls/user%201/stream1/index.m3u8"
    assert json.loads(seen.body)["dashUrl"] is None
    assert b"x-signature" not in seen.headers


@pytest_twisted.inlineCallbacks
def test_a_webhook_that_fails_for_good_is_logged_and_the_next_one_still_goes():
    res, client, stop = running([(400, {"error": "bad"}), (200, {})])
    announcer = CloudAnnouncer(client, "http://relay.example:8888")
    try:
        with capturedLogs() as logs:
            announcer.hls_ready(PATH, "user1/stream1/index.m3u8", None)
            announcer.stream_ended(type("Stream", (), {"path": PATH})())
            yield until_idle(announcer)
    finally:
        yield stop()
    assert [s.path for s in res.seen] == [b"/api/rtmp-relay/hls-ready", b"/api/rtmp-relay/stream-ended"]
    assert any("hls-ready webhook for live/user1/stream1 not delivered" in formatEvent(e) for e in logs)


# -- the public URL -------------------------------------------------------------------


def no_route(host, port):
    return None


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("tcp:8888:interface=127.0.0.1", "http://127.0.0.1:8888"),
        ("tcp:port=8080:interface=10.1.2.3", "http://10.1.2.3:8080"),
        ("tcp:80:interface=10.1.2.3", "http://10.1.2.3"),
        ("ssl:8443:privateKey=k.pem:certKey=c.pem:interface=10.1.2.3", "https://10.1.2.3:8443"),
        ("tcp6:8888:interface=\\:\\:1", "http://[::1]:8888"),
    ],
)
def test_public_url_from_an_endpoint_with_an_interface(endpoint, url):
    assert default_public_url(endpoint, "https://cloud.example", route=no_route, fqdn=lambda: "nope") == url


def test_public_url_on_all_interfaces_uses_the_address_on_the_route_to_the_cloud():
    asked = []

    def route(host, port):
        asked.append((host, port))
        return "192.0.2.7"

    assert default_public_url("tcp:8888", "https://cloud.example/base", route=route) == "http://192.0.2.7:8888"
    assert asked == [("cloud.example", 443)]
    assert default_public_url("tcp:8888:interface=0.0.0.0", "http://cloud.example:8080", route=route) == "http://192.0.2.7:8888"
    assert asked[-1] == ("cloud.example", 8080)


def test_public_url_falls_back_to_the_fqdn():
    assert default_public_url("ssl:443:privateKey=k.pem", "https://cloud.example", route=no_route, fqdn=lambda: "relay.example.net") == "https://relay.example.net"


def test_route_address_to_a_local_cloud_is_loopback():
    # A real UDP connect (sends nothing): the cloud on 127.0.0.1 reaches us on 127.0.0.1.
    assert route_address("127.0.0.1", 9) == "127.0.0.1"
    assert default_public_url("tcp:8888", "http://127.0.0.1:9") == "http://127.0.0.1:8888"


@pytest.mark.parametrize("endpoint", ["unix:/tmp/relay.sock", "tcp:interface=127.0.0.1"])
def test_public_url_that_cannot_be_made_asks_for_the_option(endpoint):
    with pytest.raises(ConfigError, match="--public-url"):
        default_public_url(endpoint, "https://cloud.example")


# -- the daemon's options ----------------------------------------------------------------


def parse(*args):
    from rtmprelay.tap import Options

    options = Options()
    options.parseOptions(list(args))
    return options


def test_cloud_options_make_a_config_a_public_url_and_imply_forwarding(monkeypatch):
    monkeypatch.delenv("RTMPRELAY_CLOUD_SECRET", raising=False)
    options = parse("--cloud", "https://cloud.example/", "--http", "tcp:8888:interface=127.0.0.1", "--cloud-retries", "0")
    assert options["cloud"].base_url == "https://cloud.example"
    assert (options["cloud"].secret, options["cloud"].retries, options["cloud"].timeout_s) == (None, 0, 5.0)
    assert options["public-url"] == "http://127.0.0.1:8888"
    assert options["hls"] is None  # forwarding, as with --forward: HLS only when asked for


def test_cloud_secret_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv("RTMPRELAY_CLOUD_SECRET", "from-env")
    assert parse("--cloud", "http://127.0.0.1:9", "--public-url", "https://cdn.example/r/")["cloud"].secret == "from-env"
    given = parse("--cloud", "http://127.0.0.1:9", "--cloud-secret", "given", "--public-url", "https://cdn.example")
    assert given["cloud"].secret == "given"
    assert given["public-url"] == "https://cdn.example"


@pytest.mark.parametrize(
    "args",
    [
        ("--cloud", "ftp://cloud.example"),
        ("--cloud", "http://127.0.0.1:9", "--public-url", "cdn.example"),
        ("--cloud", "http://127.0.0.1:9", "--cloud-retries", "-1"),
        ("--cloud", "http://127.0.0.1:9", "--http", "unix:/tmp/relay.sock"),
    ],
)
def test_bad_cloud_options_are_usage_errors(args):
    from twisted.python import usage

    with pytest.raises(usage.UsageError):
        parse(*args)
