"""Signed relay URLs: ``?exp=UNIX&sig=HMAC-SHA256(secret, path + exp)``, made and checked.

The cloud (or ``rtmprelay sign``) gives a publisher a URL such as
``rtmp://relay/live/user1/stream1?exp=1767225600&sig=3f2a...``; the relay
admits the publish only if ``sig`` is the lower-case hex HMAC-SHA256, keyed
with the shared secret, of the stream path followed by ``exp``, and ``exp``
has not passed. The message is ASCII:

* ``path``: the stream path as the relay knows it, validated and normalised
  (``rtmprelay.names``): ``live/user1/stream1`` however the client split it
  between app and name, without empty elements or a query string;
* ``exp``: the expiry as sent, a UNIX time in seconds written with exactly 10
  decimal digits and no leading zero (1000000000-9999999999, that is
  2001-09-09 to 2286-11-20). A fixed width is what makes ``path + exp`` one
  message for one (path, exp): with any width, the signature for
  ``live/u/s1`` + ``1700000000`` would also verify ``live/u/s`` +
  ``11700000000``, another stream with an expiry 300 years later. With exactly
  10 digits the last 10 characters are the expiry and the rest is the path.
* play URLs (``--auth-play``) sign ``play:`` + path + exp instead. A path never
  contains ``:``, so no play signature is a publish signature: a viewer's URL
  does not let its holder publish (nor a publisher's play, which matters less).

The signature is compared with :func:`hmac.compare_digest`. ``exp`` bounds
when a publish may *start*: a stream already live is not cut when it passes,
but a publisher that reconnects after it needs a fresh URL, so sign for the
longest session (with its reconnects) you expect. A URL past ``exp`` by no
more than the allowed clock skew (:data:`DEFAULT_CLOCK_SKEW`) is still taken:
the cloud's clock and the relay's are never exactly equal, and a URL signed
for a short lifetime should not fail on a relay whose clock runs a few seconds
ahead.

Pure: the time is an argument, nothing here reads a clock, a file or the
environment.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rtmprelay.errors import RelayError
from rtmprelay.names import StreamName

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "EXPIRY_PARAM",
    "SIGNATURE_PARAM",
    "SignatureRefused",
    "check_signature",
    "sign_url",
    "signature",
    "signed_query",
]

EXPIRY_PARAM = "exp"
SIGNATURE_PARAM = "sig"
PUBLISH = "publish"
PLAY = "play"
#: Seconds a URL is still taken after its expiry, for clocks that disagree (see the module doc).
DEFAULT_CLOCK_SKEW = 30.0

_EXPIRY = re.compile(r"[1-9][0-9]{9}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_PREFIXES = {PUBLISH: "", PLAY: "play:"}


class SignatureRefused(RelayError):
    """A URL whose signature does not admit it. ``kind`` is one of ``unsigned``,
    ``bad_expiry``, ``bad_signature``, ``expired``; the message says why and never
    holds the signature."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def signature(secret: bytes, path: str, expires: int | str, action: str = PUBLISH) -> str:
    """The hex ``sig`` for ``path`` (a validated stream path) and the expiry ``expires``."""
    exp = _expiry_text(expires)
    message = f"{_PREFIXES[action]}{path}{exp}".encode("ascii")
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def signed_query(secret: bytes, path: str, expires_at: int, action: str = PUBLISH) -> str:
    """``exp=...&sig=...`` for a stream path."""
    exp = _expiry_text(expires_at)
    return f"{EXPIRY_PARAM}={exp}&{SIGNATURE_PARAM}={signature(secret, path, exp, action)}"


def sign_url(url: str, secret: bytes, expires_at: int, action: str = PUBLISH) -> str:
    """``url`` (``rtmp://host/live/user1/stream1``, ``rtmps://...``, or just the path
    ``live/user1/stream1``) with ``exp`` and ``sig`` set; other query parameters stay.

    Raises ``BadStreamName`` when the URL's path is not a stream path the relay
    would take, ``ValueError`` for an expiry out of the 10-digit range.
    """
    parts = urlsplit(url)
    if parts.scheme and parts.scheme.lower() not in ("rtmp", "rtmps"):
        raise ValueError(f"not an rtmp:// or rtmps:// URL: {parts.scheme}://...")
    path = StreamName.from_path(parts.path).full
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in (EXPIRY_PARAM, SIGNATURE_PARAM)]
    query = signed_query(secret, path, expires_at, action)
    if kept:
        query = f"{urlencode(kept)}&{query}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def check_signature(
    secret: bytes,
    path: str,
    query: Mapping[str, str],
    now: float,
    *,
    action: str = PUBLISH,
    clock_skew: float = DEFAULT_CLOCK_SKEW,
) -> None:
    """Admit ``path`` with the parameters ``query`` at time ``now``, or raise :class:`SignatureRefused`."""
    exp, sig = query.get(EXPIRY_PARAM), query.get(SIGNATURE_PARAM)
    if exp is None or sig is None:
        missing = " and ".join(p for p, v in ((EXPIRY_PARAM, exp), (SIGNATURE_PARAM, sig)) if v is None)
        raise SignatureRefused("unsigned", f"{action} needs a signed URL (?exp=...&sig=...): no {missing}")
    if not _EXPIRY.fullmatch(exp):
        raise SignatureRefused("bad_expiry", "exp is not a UNIX time in 10 decimal digits")
    if not _SIGNATURE.fullmatch(sig):
        raise SignatureRefused("bad_signature", "sig is not 64 hex digits")
    expected = signature(secret, path, exp, action)
    if not hmac.compare_digest(expected.encode("ascii"), sig.lower().encode("ascii")):
        raise SignatureRefused("bad_signature", f"signature does not match {path} and its expiry")
    late = now - int(exp)
    if late > clock_skew:
        raise SignatureRefused("expired", f"signed URL expired {int(late)} s ago")


def _expiry_text(expires: int | str) -> str:
    text = str(expires)
    if not _EXPIRY.fullmatch(text):
        raise ValueError(f"expiry {text!r} is not a UNIX time of 10 digits (1000000000 to 9999999999)")
    return text


def _key(secret: bytes | str) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret
