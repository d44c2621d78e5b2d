"""Where authorization is required, where the secret comes from, and ``rtmprelay sign``."""

from __future__ import annotations

import io
import os
import stat

import pytest

from rtmprelay.auth.cli import sign_main
from rtmprelay.auth.exposure import exposed_endpoints
from rtmprelay.endpoints import listen_interface
from rtmprelay.auth.secret import SECRET_ENV, SECRET_FILE_NAME, make_secret_file, read_secret_file, secret_from_env
from rtmprelay.auth.settings import auth_settings
from rtmprelay.auth.signing import check_signature
from rtmprelay.errors import ConfigError

SECRET = "0123456789abcdef-secret"


@pytest.mark.parametrize(
    "endpoint, interface",
    [
        ("tcp:1935", ""),
        ("tcp:1935:interface=127.0.0.1", "127.0.0.1"),
        ("tcp:1935:50:127.0.0.2", "127.0.0.2"),
        (r"tcp6:1935:interface=\:\:1", "::1"),
        ("ssl:1936:privateKey=k.pem:certKey=c.pem:interface=10.0.0.5", "10.0.0.5"),
        ("ssl:1936:privateKey=k.pem:certKey=c.pem", ""),
        ("unix:/run/rtmprelay.sock", None),
    ],
)
def test_the_listen_interface_of_an_endpoint(endpoint, interface):
    assert listen_interface(endpoint) == interface


def test_exposed_endpoints_are_those_beyond_loopback():
    local = ["tcp:1935:interface=127.0.0.1", r"tcp6:1935:interface=\:\:1", "tcp:1:interface=localhost", "unix:/tmp/s"]
    exposed = ["tcp:1935", "tcp:1935:interface=0.0.0.0", "tcp6:1935", "ssl:1936:privateKey=k.pem", "tcp:1:interface=10.1.2.3", "systemd:domain=INET:index=0"]
    assert exposed_endpoints(local + exposed) == exposed


def test_the_default_endpoint_requires_signed_publishes_with_a_secret_to_make(tmp_path):
    settings = auth_settings(["tcp:1935"], hls_dir=str(tmp_path / "hls"), env={})
    assert settings.signed_actions == {"publish"} and settings.make_secret
    assert settings.secret_file == tmp_path / SECRET_FILE_NAME  # beside the HLS folder, not in it (it is served)
    assert settings.exposed == ("tcp:1935",)


def test_without_hls_the_secret_is_made_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert auth_settings(["tcp:1935"], hls_dir=None, env={}).secret_file == tmp_path / SECRET_FILE_NAME


def test_loopback_only_checks_nothing_unless_asked(tmp_path):
    loopback = ["tcp:1935:interface=127.0.0.1"]
    assert auth_settings(loopback, hls_dir="hls", env={}).signed_actions == frozenset()
    assert auth_settings(loopback, hls_dir="hls", env={SECRET_ENV: SECRET}).signed_actions == {"publish"}
    play = auth_settings(loopback, hls_dir=str(tmp_path / "hls"), env={}, auth_play=True)
    assert play.signed_actions == {"play"} and play.make_secret


def test_a_publish_hook_authorizes_instead_of_signatures():
    assert auth_settings(["tcp:1935"], hls_dir="hls", env={}, publish_hook=True).signed_actions == frozenset()
    # ... unless a secret is configured too: then both are checked.
    assert auth_settings(["tcp:1935"], hls_dir="hls", env={SECRET_ENV: SECRET}, publish_hook=True).signed_actions == {"publish"}


def test_no_auth_switches_signatures_off_explicitly():
    settings = auth_settings(["tcp:1935"], hls_dir="hls", env={SECRET_ENV: SECRET}, no_auth=True)
    assert settings.signed_actions == frozenset() and settings.open_publishing
    assert not auth_settings(["tcp:1935"], hls_dir="hls", env={}, no_auth=True, publish_hook=True).open_publishing


@pytest.mark.parametrize("conflict", [{"secret_file": "x"}, {"auth_play": True}])
def test_no_auth_with_signature_options_is_an_error(conflict):
    with pytest.raises(ConfigError, match="--no-auth"):
        auth_settings(["tcp:1935"], hls_dir="hls", env={}, no_auth=True, **conflict)


def test_the_secret_file_wins_over_the_environment(tmp_path):
    path = tmp_path / "secret"
    path.write_text("from-the-file-0123456789\n")
    settings = auth_settings(["tcp:1935"], hls_dir="hls", secret_file=str(path), env={SECRET_ENV: SECRET})
    assert settings.secret == b"from-the-file-0123456789"  # the newline is not part of it
    assert settings.secret_source == f"file {path}" and not settings.make_secret
    assert "from-the-file" not in repr(settings)


def test_a_secret_file_is_made_once_with_mode_0600_and_read_after(tmp_path):
    path = tmp_path / SECRET_FILE_NAME
    secret, made = make_secret_file(path)
    assert made and len(secret) == 64 and int(secret, 16) >= 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert make_secret_file(path) == (secret, False)
    assert read_secret_file(path) == secret


@pytest.mark.parametrize("content", ["", "pw-4-2\n", " " * 40])
def test_a_short_secret_is_refused_without_showing_it(tmp_path, content):
    path = tmp_path / "secret"
    path.write_text(content)
    with pytest.raises(ConfigError, match="at least 16") as info:
        read_secret_file(path)
    assert "pw-4-2" not in str(info.value)
    with pytest.raises(ConfigError, match="RTMPRELAY_AUTH_SECRET"):
        secret_from_env({SECRET_ENV: "pw-4-2"})


def test_an_unreadable_secret_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret_file(tmp_path / "missing")


# -- rtmprelay sign ------------------------------------------------------------------


def run_sign(*argv, env=None, now=1_800_000_000.0):
    out, err = io.StringIO(), io.StringIO()
    status = sign_main(list(argv), env=env or {}, now=lambda: now, out=out, err=err)
    return status, out.getvalue().strip(), err.getvalue()


def test_sign_prints_a_url_the_relay_admits(tmp_path):
    path = tmp_path / "secret"
    path.write_text(SECRET)
    status, url, _ = run_sign("rtmp://relay.example/live/user1/stream1", "--expires-in", "600", "--auth-secret-file", str(path))
    assert status == 0
    assert url.startswith("rtmp://relay.example/live/user1/stream1?exp=1800000600&sig=")
    query = dict(p.split("=") for p in url.split("?")[1].split("&"))
    check_signature(SECRET.encode(), "live/user1/stream1", query, 1_800_000_000)


def test_sign_takes_the_environment_then_the_made_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_sign("rtmp://h/live/u/s")
    assert status == 1 and "no secret" in err
    make_secret_file(tmp_path / SECRET_FILE_NAME)
    assert run_sign("rtmp://h/live/u/s")[0] == 0
    status, url, _ = run_sign("rtmp://h/live/u/s", "--expires-at", "1900000000", "--play", env={SECRET_ENV: SECRET})
    query = dict(p.split("=") for p in url.split("?")[1].split("&"))
    assert query["exp"] == "1900000000"
    check_signature(SECRET.encode(), "live/u/s", query, 1_800_000_000, action="play")


@pytest.mark.parametrize("argv, status", [([], 2), (["rtmp://h/live"], 1), (["rtmp://h/live/u/s", "--expires-at", "12"], 1)])
def test_sign_errors(argv, status):
    assert run_sign(*argv, env={SECRET_ENV: SECRET})[0] == status
