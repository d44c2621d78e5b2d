"""What forwarding to one upstream needs besides the socket: where to publish, how
long to wait before trying again, and words for what went wrong.

* :class:`Destination` is one resolved upstream: its URL, the RTMP application
  and stream name it is split into, and the destination profile.
* :class:`Backoff` says when to try again after a failure.
* :class:`UpstreamError` names a failure (a kind that is counted and a message
  that is logged); :func:`describe_connect_failure` and :func:`describe_loss`
  make one from what Twisted reports, :class:`TlsVerification` remembers which
  certificate failed verification and why.

How an upstream URL is split. RTMP needs an application (``connect``) and a
stream name (``publish``); a URL does not say where one ends. The application is
the **first path element** and the stream name everything after it, as
nginx-rtmp's ``push`` and the big ingests read their URLs
(``rtmps://live.cloudflare.com:443/live/KEY``,
``rtmp://a.rtmp.youtube.com/live2/KEY``): ``rtmp://host/live/user1/stream1``
publishes ``user1/stream1`` to application ``live``, which a stock nginx-rtmp
``application live`` accepts. ffmpeg's split (everything but the last element is
the application) would ask nginx for an application ``live/user1`` it does not
have. An upstream that wants a longer application name gets it with the
``app=`` option, as librtmp's URL options do:
``rtmp://host/live/user1/stream1 app=live/user1``. A query string stays on the
stream name (some ingests put their keys there).
"""

from __future__ import annotations

import enum
from urllib.parse import urlsplit

import attrs
from twisted.internet import error as net_error

from rtmprelay.errors import ConfigError
from rtmprelay.media import tags
from rtmprelay.media.message import MediaMessage
from rtmprelay.names import mask_url

#: Waits before each retry after consecutive failures: at once, then growing to 10 s.
BACKOFF_STEPS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
#: Refused TCP connections (nothing listens) cost the upstream nothing: asked again
#: at least this often, so an upstream that comes back is fed within a second.
REFUSED_RETRY_S = 1.0
#: A publish that stayed up this long was a success: the backoff starts over.
STABLE_AFTER_S = 5.0


class UpstreamState(enum.Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    BACKING_OFF = "backing off"
    #: The destination is live and the stream's publisher is away: it is fed filler.
    BRIDGING = "bridging"
    STOPPED = "stopped"


@attrs.frozen
class Destination:
    """One upstream a stream is published to.

    ``url`` as given (with the stream key; never logged, see ``masked``);
    ``app`` overrides the application split (see the module doc); ``profile``
    names the destination profile whose keyframe spacing this destination gets
    (None: the stream's own).
    """

    url: str
    app: str | None = None
    profile: str | None = None

    def __attrs_post_init__(self) -> None:
        self.target  # raises ConfigError for a URL that cannot be published to

    @property
    def masked(self) -> str:
        """The URL with its stream key masked: what logs and the API show."""
        return mask_url(self.url)

    @property
    def target(self) -> "UpstreamTarget":
        return split_upstream_url(self.url, self.app)


@attrs.frozen
class UpstreamTarget:
    host: str
    port: int
    tls: bool
    app: str
    stream_name: str
    tc_url: str


def split_upstream_url(url: str, app: str | None = None) -> UpstreamTarget:
    """Host, port, TLS, application and stream name of an rtmp:// or rtmps:// URL.

    The application is the first path element, or ``app`` when given (the path
    must then start with it); the stream name is the rest, with the query.
    Raises ConfigError naming what is wrong.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"unreadable upstream URL {mask_url(url)}: {error}") from None
    if parts.scheme not in ("rtmp", "rtmps"):
        raise ConfigError(f"not an rtmp:// or rtmps:// URL: {mask_url(url)}")
    if not parts.hostname:
        raise ConfigError(f"no host in upstream URL {mask_url(url)}")
    tls = parts.scheme == "rtmps"
    default_port = 443 if tls else 1935
    port = port or default_port
    path = parts.path.strip("/")
    if app is not None:
        app = app.strip("/")
        if not app or not path.startswith(app + "/"):
            raise ConfigError(f"upstream URL {mask_url(url)} does not start with the application {app!r}")
        name = path[len(app) + 1 :]
    else:
        app, _, name = path.partition("/")
    if not app or not name:
        raise ConfigError(f"upstream URL {mask_url(url)} needs an application and a stream name")
    if parts.query:
        name = f"{name}?{parts.query}"
    netloc = parts.hostname if port == default_port else f"{parts.hostname}:{port}"
    if ":" in parts.hostname and port == default_port:
        netloc = f"[{parts.hostname}]"
    return UpstreamTarget(parts.hostname, port, tls, app, name, f"{parts.scheme}://{netloc}/{app}")


class Backoff:
    """Delays between attempts: ``BACKOFF_STEPS`` by consecutive failures, capped at
    the last; a refused connection is retried within ``REFUSED_RETRY_S``."""

    def __init__(self, steps: tuple[float, ...] = BACKOFF_STEPS) -> None:
        self.steps = steps
        self.failures = 0

    def next_delay(self, error: "UpstreamError") -> float:
        delay = self.steps[min(self.failures, len(self.steps) - 1)]
        self.failures += 1
        if error.kind == "refused":
            delay = min(delay, REFUSED_RETRY_S)
        return delay

    def reset(self) -> None:
        self.failures = 0


class KeyframeSpacing:
    """One destination's minimum keyframe interval, on a stream cleaned for a laxer one.

    A keyframe closer than ``min_interval_s`` to the last one kept is relabelled
    as an inter frame in its FLV header (the IDR stays, so decoding is unharmed),
    as the cleaner does for the stream's own profile. Half a 30 fps frame of
    slack: a 2 s GOP lands on 1999 or 2001 ms.
    """

    SLACK_MS = 17

    def __init__(self, min_interval_s: float) -> None:
        self.min_interval_ms = min_interval_s * 1000.0
        self.relabelled = 0
        self._last_key_ms: int | None = None

    def reset(self) -> None:
        """A new publish: its first keyframe is one whatever came before."""
        self._last_key_ms = None

    def label(self, message: MediaMessage) -> MediaMessage:
        """``message``, or a keyframe too close to the last one as an inter frame."""
        if not message.keyframe:
            return message
        last = self._last_key_ms
        if last is not None and message.timestamp - last < self.min_interval_ms - self.SLACK_MS:
            self.relabelled += 1
            return MediaMessage.of(message.type_id, message.timestamp, tags.with_frame_type(message.payload, 2))
        self._last_key_ms = message.timestamp
        return message


# -- what /api/streams shows -------------------------------------------------------------


@attrs.frozen
class UpstreamStatus:
    """One destination of one stream, as ``/api/streams`` (and whatever else reports on
    forwarding) sees it; ``UpstreamForwarder.status()`` makes one, ``as_dict()`` is the JSON.

    ``url``: the destination URL with its stream key masked (``names.mask_url``).
    ``app``: the RTMP application it publishes to. ``profile``: the destination
    profile named with ``profile=`` (None: the stream's). ``state``: connecting,
    live, backing off, bridging (live, the stream's publisher away, filler sent) or
    stopped. ``attempts``: connections tried, the first included. ``errors``:
    failures by ``UpstreamError.kind``. ``last_error``: the last failure (None before
    any) and ``last_error_age_s`` how long ago. ``bytes_sent``: RTMP bytes written;
    ``frames_sent`` / ``audio_frames_sent``: video pictures and audio frames written
    (headers not counted); ``dropped``: frames skipped to the next keyframe because
    the queue or the socket was over ``queue_limit``. ``queue_bytes`` /
    ``queue_messages``: media held while not live; ``queue_limit``:
    ``--upstream-queue-bytes``.
    """

    url: str
    app: str
    profile: str | None
    state: UpstreamState
    attempts: int
    errors: tuple[tuple[str, int], ...]
    last_error: "UpstreamError | None"
    last_error_age_s: float | None
    bytes_sent: int
    frames_sent: int
    audio_frames_sent: int
    dropped: int
    queue_bytes: int
    queue_messages: int
    queue_limit: int

    def as_dict(self) -> dict:
        last_error = None
        if self.last_error is not None:
            last_error = {"kind": self.last_error.kind, "message": self.last_error.message}
            if self.last_error_age_s is not None:
                last_error["seconds_ago"] = round(self.last_error_age_s, 1)
        return {
            "url": self.url,
            "app": self.app,
            "profile": self.profile,
            "state": self.state.value,
            "attempts": self.attempts,
            "errors": dict(self.errors),
            "last_error": last_error,
            "bytes_sent": self.bytes_sent,
            "frames_sent": self.frames_sent,
            "audio_frames_sent": self.audio_frames_sent,
            "dropped": self.dropped,
            "queue": {
                "bytes": self.queue_bytes,
                "limit": self.queue_limit,
                "fill": round(self.queue_bytes / self.queue_limit, 3) if self.queue_limit else 0.0,
                "messages": self.queue_messages,
            },
        }


# -- naming failures ---------------------------------------------------------------------


@attrs.frozen
class UpstreamError:
    """A failure of one attempt. ``kind`` is counted (``tls``, ``refused``, ``timeout``,
    ``dns``, ``rejected``, ``closed``, ``protocol``, ``network``); ``message`` is logged."""

    kind: str
    message: str


#: OpenSSL's X509_V_ERR_* codes that upstream certificates meet, in OpenSSL's words.
_X509_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    23: "certificate revoked",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
    62: "hostname mismatch",
}


def _names(cert) -> tuple[str, str]:
    """Subject and issuer of a pyOpenSSL X509, as ``CN=...,O=...``."""
    try:
        x509 = cert.to_cryptography()
        return x509.subject.rfc4514_string() or "an empty subject", x509.issuer.rfc4514_string()
    except Exception:  # a certificate we cannot read still gets named as such
        return "an unreadable certificate", ""


class TlsVerification:
    """Remembers the first certificate OpenSSL refused on one connection, and why.

    OpenSSL's own error says only "certificate verify failed"; the verify
    callback is where the certificate and the reason are known.
    """

    def __init__(self) -> None:
        self.problem: str | None = None

    def verify(self, connection, cert, errno: int, depth: int, ok: int) -> bool:
        if not ok and self.problem is None:
            why = _X509_ERRORS.get(errno, f"X509 error {errno}")
            subject, issuer = _names(cert)
            where = "the server certificate" if depth == 0 else f"certificate {depth} of the chain"
            self.problem = f"{where} {subject}" + (f" (issued by {issuer})" if issuer else "") + f": {why}"
        return bool(ok)


def describe_connect_failure(failure) -> UpstreamError:
    """An UpstreamError for a TCP (or TLS) connection that could not be made."""
    value = failure.value
    if isinstance(value, net_error.ConnectionRefusedError):
        return UpstreamError("refused", "connection refused (nothing listens there)")
    if isinstance(value, (net_error.TimeoutError, net_error.TCPTimedOutError)):
        return UpstreamError("timeout", "connection timed out")
    if isinstance(value, net_error.DNSLookupError):
        return UpstreamError("dns", f"host name lookup failed: {_short(value)}")
    if isinstance(value, net_error.NoRouteError):
        return UpstreamError("network", "no route to host")
    return UpstreamError("network", f"cannot connect: {_short(value)}")


def describe_loss(reason, *, phase: str, target: UpstreamTarget, tls: TlsVerification | None) -> UpstreamError:
    """An UpstreamError for a connection that ended before or while publishing.

    ``phase`` is ``connect`` (before the publish was accepted) or ``publish``.
    nginx-rtmp answers a connect to an application it does not have by closing
    the connection without a word, so that is what a close during connect suggests.
    """
    value = getattr(reason, "value", None)
    if tls is not None and tls.problem is not None:
        return UpstreamError("tls", f"TLS: {tls.problem}; is its CA in --upstream-ca (or the system store)?")
    if type(value).__name__ == "VerificationError":  # service_identity: the name does not match
        return UpstreamError("tls", f"TLS: the server certificate is not for host {target.host!r}")
    if _is_tls_error(value):
        return UpstreamError("tls", f"TLS: {_short(value)}")
    if phase == "connect":
        return UpstreamError(
            "closed",
            f"closed the connection before accepting the publish (application {target.app!r} may not exist there: "
            "nginx-rtmp closes on an unknown application)",
        )
    if isinstance(value, net_error.ConnectionDone):
        return UpstreamError("closed", "closed the connection")
    return UpstreamError("closed", f"connection lost: {_short(value)}")


def _is_tls_error(value) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("OpenSSL") or module.startswith("service_identity")


def _short(value) -> str:
    text = str(value) if value is not None else "unknown reason"
    if _is_tls_error(value) and getattr(value, "args", None):
        # pyOpenSSL: [[('SSL routines', '', 'certificate verify failed')]]
        reasons = [entry[-1] for entry in _flatten(value.args) if isinstance(entry, tuple) and entry]
        if reasons:
            text = "; ".join(str(r) for r in reasons)
    return text.strip().rstrip(".")[:200]


def _flatten(items):
    for item in items:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def scrub(text: str, secret: str) -> str:
    """``text`` with ``secret`` (a stream key an upstream echoed back) masked."""
    key = secret.partition("?")[0].rsplit("/", 1)[-1]
    if len(key) > 4 and key in text:
        text = text.replace(key, key[:4] + "…")
    return text
