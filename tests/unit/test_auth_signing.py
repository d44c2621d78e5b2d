"""Signed URLs (rtmprelay.auth.signing): made, checked, and the ways a URL is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from rtmprelay.auth import signing
from rtmprelay.auth.signing import SignatureRefused, check_signature, sign_url, signature, signed_query
from rtmprelay.names import BadStreamName, parse_stream_path

SECRET = b"a-test-secret-of-some-length"
PATH = "live/user1/stream1"
EXP = 1_800_000_000
NOW = EXP - 600


def query_of(url: str) -> dict[str, str]:
    """What the relay's session hands the check: the parameters of the URL's query."""
    tail = url.split("://", 1)[-1].split("/", 1)[1]
    app, _, name = tail.rpartition("/")
    return parse_stream_path(app, name)[1]


def refused(query, *, path=PATH, now=NOW, action="publish", skew=30.0) -> SignatureRefused:
    with pytest.raises(SignatureRefused) as info:
        check_signature(SECRET, path, query, now, action=action, clock_skew=skew)
    return info.value


def test_the_signature_is_hex_hmac_sha256_of_path_then_exp():
    """The documented algorithm, written out as another language would."""
    expected = hmac.new(SECRET, b"live/user1/stream11800000000", hashlib.sha256).hexdigest()
    assert signature(SECRET, PATH, EXP) == expected
    assert signed_query(SECRET, PATH, EXP) == f"exp=1800000000&sig={expected}"


def test_a_signed_url_is_admitted_until_it_expires():
    url = sign_url(f"rtmp://relay.example:1935/{PATH}", SECRET, EXP)
    assert url.startswith(f"rtmp://relay.example:1935/{PATH}?exp=1800000000&sig=")
    check_signature(SECRET, PATH, query_of(url), NOW)
    check_signature(SECRET, PATH, query_of(url), EXP)  # the last second


def test_an_expired_url_is_refused_past_the_clock_skew_allowance():
    query = query_of(sign_url(PATH, SECRET, EXP))
    check_signature(SECRET, PATH, query, EXP + 30, clock_skew=30)  # within the allowance
    error = refused(query, now=EXP + 31, skew=30)
    assert error.kind == "expired" and "expired 31 s ago" in str(error)
    assert refused(query, now=EXP + 1, skew=0).kind == "expired"


@pytest.mark.parametrize(
    "other_path",
    ["live/user1/stream2", "live/user2/stream1", "live/user1/stream1/x", "other/user1/stream1"],
)
def test_a_signature_admits_its_own_path_only(other_path):
    query = query_of(sign_url(PATH, SECRET, EXP))
    assert refused(query, path=other_path).kind == "bad_signature"


def test_the_digit_shift_attack_is_refused():
    """``live/u/s1`` + ``1800000000`` is the same message as ``live/u/s`` + ``11800000000``:
    with a free-width exp, one signature would admit another stream for 300 more years."""
    sig = signature(SECRET, "live/u/s1", EXP)
    shifted = {"exp": "1" + str(EXP), "sig": sig}
    assert hmac.new(SECRET, b"live/u/s" + shifted["exp"].encode(), hashlib.sha256).hexdigest() == sig  # the hole
    assert refused(shifted, path="live/u/s").kind == "bad_expiry"


@pytest.mark.parametrize("exp", ["0800000000", "999999999", "18000000000", "1800000000.0", " 1800000000", "+800000000", "1e9", ""])
def test_an_expiry_not_of_ten_plain_digits_is_refused(exp):
    sig = hmac.new(SECRET, f"{PATH}{exp}".encode(), hashlib.sha256).hexdigest()
    assert refused({"exp": exp, "sig": sig}).kind == "bad_expiry"


@pytest.mark.parametrize(
    "query, missing",
    [({}, "no exp and sig"), ({"exp": str(EXP)}, "no sig"), ({"sig": "0" * 64}, "no exp")],
)
def test_missing_parameters_are_refused_naming_them(query, missing):
    error = refused(query)
    assert error.kind == "unsigned" and missing in str(error)


@pytest.mark.parametrize("sig", ["", "abc", "g" * 64, "0" * 63, "0" * 65, "é" * 64])
def test_a_signature_that_is_not_64_hex_digits_is_refused(sig):
    assert refused({"exp": str(EXP), "sig": sig}).kind == "bad_signature"


def test_tampering_with_exp_or_sig_or_secret_is_refused():
    good = query_of(sign_url(PATH, SECRET, EXP))
    assert refused({**good, "exp": str(EXP + 3600)}).kind == "bad_signature"
    flipped = good["sig"][:-1] + ("0" if good["sig"][-1] != "0" else "1")
    assert refused({**good, "sig": flipped}).kind == "bad_signature"
    with pytest.raises(SignatureRefused):
        check_signature(b"another-secret-entirely", PATH, good, NOW)


def test_upper_case_hex_is_the_same_signature():
    good = query_of(sign_url(PATH, SECRET, EXP))
    check_signature(SECRET, PATH, {**good, "sig": good["sig"].upper()}, NOW)


def test_the_comparison_is_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", recording)
    good = query_of(sign_url(PATH, SECRET, EXP))
    check_signature(SECRET, PATH, good, NOW)
    refused({**good, "sig": "0" * 64})
    assert len(compared) == 2 and all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in compared)


def test_refusals_never_hold_the_signature_or_the_secret():
    good = query_of(sign_url(PATH, SECRET, EXP))
    for query, now in [({**good, "sig": "f" * 64}, NOW), (good, EXP + 3600), ({"sig": good["sig"]}, NOW)]:
        text = str(refused(query, now=now))
        assert good["sig"] not in text and "f" * 64 not in text and SECRET.decode() not in text


def test_a_publish_signature_does_not_admit_a_play_nor_the_reverse():
    publish = query_of(sign_url(PATH, SECRET, EXP))
    play = query_of(sign_url(PATH, SECRET, EXP, action="play"))
    assert publish["sig"] != play["sig"]
    check_signature(SECRET, PATH, play, NOW, action="play")
    assert refused(publish, action="play").kind == "bad_signature"
    assert refused(play, action="publish").kind == "bad_signature"
    assert play["sig"] == hmac.new(SECRET, f"play:{PATH}{EXP}".encode(), hashlib.sha256).hexdigest()


def test_the_signed_path_is_the_relays_however_the_client_splits_it():
    url = sign_url(f"rtmp://h/{PATH}", SECRET, EXP)
    sig = query_of(url)["sig"]
    # ffmpeg: app live/user1 + name stream1?...; Android: app live + name user1/stream1?...; OBS: query on the app
    query = url.split("?", 1)[1]
    for app, name in [("live/user1", f"stream1?{query}"), ("live", f"user1/stream1?{query}"), (f"live?{query}", "user1/stream1")]:
        stream, params = parse_stream_path(app, name)
        check_signature(SECRET, stream.full, params, NOW)
        assert params["sig"] == sig


def test_sign_url_keeps_other_parameters_and_replaces_an_old_signature():
    once = sign_url(f"rtmps://h:443/{PATH}?token=abc", SECRET, EXP)
    again = sign_url(once, SECRET, EXP + 60)
    assert again.startswith(f"rtmps://h:443/{PATH}?token=abc&exp={EXP + 60}&sig=")
    assert again.count("sig=") == 1
    # Empty elements are not part of the path the relay signs with.
    assert query_of(sign_url(f"rtmp://h//live//user1/stream1", SECRET, EXP))["sig"] == signature(SECRET, PATH, EXP)


@pytest.mark.parametrize("url, error", [("http://h/live/u/s", ValueError), ("rtmp://h/live", BadStreamName), ("rtmp://h/live/../s", BadStreamName)])
def test_sign_url_refuses_what_the_relay_would_refuse(url, error):
    with pytest.raises(error):
        sign_url(url, SECRET, EXP)


@pytest.mark.parametrize("expires", [999_999_999, 10_000_000_000, -1])
def test_an_expiry_outside_ten_digits_cannot_be_signed(expires):
    with pytest.raises(ValueError, match="10 digits"):
        sign_url(PATH, SECRET, expires)
