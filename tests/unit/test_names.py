"""The stream name grammar (rtmprelay.names): what enters, what is refused and why."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtmprelay.errors import ConfigError, ParseError
from rtmprelay.names import (
    MAX_DEPTH,
    MAX_ELEMENT_LENGTH,
    BadStreamName,
    StreamName,
    check_url_template,
    mask_url,
    parse_stream_path,
    path_below,
    printable,
    shown_url,
)


@pytest.mark.parametrize(
    ("app", "name", "path"),
    [
        ("live/user1", "stream1", "live/user1/stream1"),  # ffmpeg, librtmp
        ("live", "user1/stream1", "live/user1/stream1"),  # some Android libraries
        ("live", "user1/stream1?token=abc", "live/user1/stream1"),
        ("live/user1?key=1", "stream1", "live/user1/stream1"),
        ("/live//user1/", "/stream1", "live/user1/stream1"),
        ("live", "u.s-e_r/St.ream-1", "live/u.s-e_r/St.ream-1"),
        ("live", "s1", "live/s1"),
    ],
)
def test_accepted_paths(app, name, path):
    stream, _query = parse_stream_path(app, name)
    assert stream.full == path


@pytest.mark.parametrize(
    ("app", "name", "why"),
    [
        ("live", "../../victim", "is not a name"),
        ("live/..", "victim", "is not a name"),
        ("live", "./s", "is not a name"),
        ("live", "%2e%2e/%2e%2e/etc", "character '%'"),
        ("live", "u1/s\x00", "character '\\x00'"),
        ("live", "u1/s\n1", "character '\\n'"),
        ("live", "u1/s\x1b[31m", "character '\\x1b'"),
        ("live", "u1/s\\..\\x", "character '\\\\'"),
        ("live", "u1/stré", "character '\\xe9'"),
        ("live", "u1/s t", "character ' '"),
        ("live", "u1/s@x", "character '@'"),
        ("live", "x" * 60_000, "characters (at most"),
        ("live", "u1/" + "s" * (MAX_ELEMENT_LENGTH + 1), "characters (at most"),
        ("live", "/".join(["a"] * MAX_DEPTH), "elements (at most"),
        ("live", "", "no stream name"),
        ("live", "?token=1", "no stream name"),
        ("", "stream", "needs an app and a name"),
    ],
)
def test_refused_paths_say_why(app, name, why):
    with pytest.raises(BadStreamName) as caught:
        parse_stream_path(app, name)
    assert why in str(caught.value)
    assert isinstance(caught.value, ParseError) and caught.value.where
    # The reason goes to logs and back to the peer: printable ASCII, bounded.
    message = str(caught.value)
    assert message.isascii() and message.isprintable() and len(message) < 400


def test_query_parameters_from_the_app_and_the_name():
    stream, query = parse_stream_path("live/u1?a=1&exp=5", "s1?exp=1700000000&sig=ab")
    assert stream == StreamName("live", "u1/s1", "u1", "s1")
    assert query == {"a": "1", "exp": "1700000000", "sig": "ab"}
    with pytest.raises(BadStreamName, match="query string of"):
        parse_stream_path("live", "s1?" + "x" * 5000)


def test_stream_name_parts():
    assert StreamName.from_path("live/u1/s1") == StreamName("live", "u1/s1", "u1", "s1")
    assert StreamName.from_path("live/s1") == StreamName("live", "s1", "", "s1")
    assert StreamName.from_path("live/a/b/c").full == "live/a/b/c"
    with pytest.raises(BadStreamName):
        StreamName.from_path("live/../x")


@given(st.text(max_size=300), st.text(max_size=300))
def test_any_input_is_a_valid_path_or_a_bad_name(app, name):
    try:
        stream, _query = parse_stream_path(app, name)
    except BadStreamName as error:
        assert str(error).isprintable()
        return
    for element in stream.full.split("/"):
        assert element not in ("", ".", "..")
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in element)


def test_path_below_refuses_what_leaves_the_root(tmp_path):
    root = tmp_path / "hls"
    root.mkdir()
    assert path_below(root, "u1/s1") == root / "u1/s1"
    for bad in ("../x", "/etc", "u1/../../x", ""):
        with pytest.raises(BadStreamName):
            path_below(root, bad)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(BadStreamName):
        path_below(root, "link/s1")


def test_mask_url_hides_the_stream_key():
    masked = mask_url("rtmps://live.cloudflare.com:443/live/0123456789abcdef0123456789abcdef")
    assert masked == "rtmps://live.cloudflare.com:443/live/0123…"
    assert "abcdef" not in masked
    assert mask_url("rtmp://user:pw@h/app/key?secret=1") == "rtmp://h/app/…?…"
    assert mask_url("rtmp://h:1936/live/u1/s1") == "rtmp://h:1936/live/u1/…"


def test_a_name_fills_a_url_template():
    name = StreamName.from_path("live/u1/s.1")
    assert name.fill("rtmp://up/{app}/{path}") == "rtmp://up/live/u1/s.1"
    assert name.fill("rtmps://cf:443/live/{streamId}?u={userId}") == "rtmps://cf:443/live/s.1?u=u1"
    assert StreamName.from_path("live/s1").fill("rtmp://up/x/{userId}{streamId}") == "rtmp://up/x/s1"
    check_url_template("rtmp://up/{app}/{path}/{userId}/{streamId}")


def test_unknown_placeholders_are_refused_with_the_key_masked():
    with pytest.raises(ConfigError, match=r"unknown placeholder \{user\}") as info:
        check_url_template("rtmp://up/{user}/sk_live_0123456789")
    assert "0123456789" not in str(info.value)


def test_shown_url_drops_user_info_and_query():
    assert shown_url("https://bot:pw@hooks.example:8443/on_publish?token=t0k3n#x") == "https://hooks.example:8443/on_publish"
    assert shown_url("http://[::1]:99999/x") == "(unparsable URL)"


def test_printable_escapes_and_bounds():
    assert printable("a\x00b") == "'a\\x00b'"
    assert printable("x" * 1000).endswith("(1000 characters)")
