"""treq client for the cloud routes of the old relay.

Upstream lookup
    ``GET {base}/api/rtmp-relay/cf-url/{userId}/{streamId}``, both path segments
    percent-quoted (``/`` too). The old route's field name is not known, so the
    answer may be any of:

    - a JSON string: ``"rtmps://live.example/app/key"``;
    - a JSON object with the URL under the first present of
      :data:`UPSTREAM_URL_FIELDS` (``url``, ``cfUrl``, ``rtmpUrl``, ``rtmpsUrl``,
      ``streamUrl``);
    - a plain-text body holding just the URL.

    The URL must be ``rtmp://`` or ``rtmps://`` with a host, else
    :class:`CloudError` (not retried: asking again gives the same answer).

Webhooks
    ``POST {base}/api/rtmp-relay/hls-ready`` with ``{"userId", "streamId",
    "hlsUrl", "dashUrl"}`` and ``POST {base}/api/rtmp-relay/stream-ended`` with
    ``{"userId", "streamId"}``; ``Content-Type: application/json``, compact JSON.

Signature (webhooks only, when ``CloudConfig.secret`` is set)
    ``X-Timestamp: <unix seconds, integer>`` and
    ``X-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``,
    over the exact body bytes sent. Each attempt is signed afresh with its own
    timestamp, so the receiver can reject stale ones.

Retries
    A timeout, a connection error or a 5xx answer is retried up to
    ``retries`` more times (so ``retries + 1`` attempts), waiting
    ``min(backoff_base_s * 2**n, backoff_max_s)`` before retry ``n``. A 4xx is
    not retried, nor is any other non-2xx answer left after treq has followed
    redirects. The final failure is a :class:`CloudError` naming the method,
    the URL and the last status (or the last error).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import quote, urlsplit

import attrs
from twisted.internet import defer, error as ierror
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web import client as wclient

from rtmprelay.errors import RelayError

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "UPSTREAM_URL_FIELDS",
    "CloudClient",
    "CloudConfig",
    "CloudError",
    "parse_upstream_url",
    "sign_body",
]

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"

#: Object fields looked up, in this order, in the upstream lookup's answer.
UPSTREAM_URL_FIELDS = ("url", "cfUrl", "rtmpUrl", "rtmpsUrl", "streamUrl")

_RETRYABLE_ERRORS = (
    ierror.ConnectError,  # includes ConnectionRefusedError, TimeoutError (TCP)
    ierror.DNSLookupError,
    ierror.ConnectionLost,
    ierror.ConnectionDone,
    wclient.ResponseFailed,
    wclient.ResponseNeverReceived,
    wclient.RequestTransmissionFailed,
    wclient.PartialDownloadError,
    defer.TimeoutError,  # an attempt that took longer than timeout_s (see _attempt)
)


def _cancelled(exc: BaseException) -> bool:
    """The caller cancelled (the publisher left): the error is, or wraps, a CancelledError.

    Our own timeouts never look like this: ``_attempt`` turns them into
    ``defer.TimeoutError`` first, so only a cancel from outside is left."""
    reasons = [exc, *(f.value for f in getattr(exc, "reasons", ()) or ())]
    return any(isinstance(r, CancelledError) for r in reasons)


class CloudError(RelayError):
    """A cloud call that failed for good (after retries, or on a 4xx)."""

    def __init__(
        self,
        what: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        attempts: int = 1,
    ) -> None:
        self.what = what
        self.method = method
        self.url = url
        self.status = status
        self.attempts = attempts
        super().__init__(f"{method} {url} failed after {attempts} attempt(s): {what}")


@attrs.frozen
class CloudConfig:
    """Where the cloud is and how hard to try."""

    base_url: str = attrs.field(converter=lambda s: s.rstrip("/"))
    secret: str | None = None
    timeout_s: float = 5.0
    retries: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0

    @base_url.validator
    def _check_base_url(self, _attribute: Any, value: str) -> None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"cloud base_url must be http(s)://host..., not {value!r}")

    def backoff(self, retry: int) -> float:
        """Delay before retry number ``retry`` (0 for the first retry)."""
        return min(self.backoff_base_s * (2**retry), self.backoff_max_s)


def sign_body(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Signature`` value: ``sha256=`` + hex HMAC of ``timestamp.body``."""
    digest = hmac.new(
        secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256
    ).hexdigest()
    return f"sha256={digest}"


def parse_upstream_url(body: bytes) -> str | None:
    """The URL in an upstream lookup answer, or ``None`` if there is none.

    Accepts a JSON string, a JSON object (see :data:`UPSTREAM_URL_FIELDS`) or a
    plain-text URL. The scheme is not checked here.
    """
    text = body.decode("utf-8", errors="replace").strip()
    try:
        value = json.loads(text)
    except ValueError:
        return text or None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        for name in UPSTREAM_URL_FIELDS:
            found = value.get(name)
            if isinstance(found, str) and found.strip():
                return found.strip()
    return None


def _valid_rtmp_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("rtmp", "rtmps") and bool(parts.hostname)


def _describe(exc: BaseException, timeout_s: float) -> str:
    """A short reason for a failed attempt; a cancel by our timeout reads as one."""
    reasons = [exc, *(f.value for f in getattr(exc, "reasons", ()) or ())]
    if any(isinstance(r, (CancelledError, defer.TimeoutError)) for r in reasons):
        return f"timed out after {timeout_s}s"
    inner = reasons[1] if len(reasons) > 1 else exc  # ResponseFailed wraps the cause
    return f"{type(exc).__name__}: {inner}"


class _Retryable(Exception):
    """One attempt failed in a way that is worth another."""

    def __init__(self, what: str, status: int | None) -> None:
        super().__init__(what)
        self.what = what
        self.status = status


class CloudClient:
    """The relay's calls to the cloud, over an injected treq ``HTTPClient``."""

    log = Logger()

    def __init__(self, config: CloudConfig, http_client: Any = None, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # noqa: PLC0415
        if http_client is None:
            from treq.client import HTTPClient  # noqa: PLC0415
            from twisted.internet import reactor  # noqa: PLC0415

            http_client = HTTPClient(wclient.Agent(reactor))
        self._config = config
        self._http = http_client
        self._clock = clock

    # -- public calls -------------------------------------------------------

    def lookup_upstream(self, user_id: str, stream_id: str) -> Deferred[str]:
        """The ``rtmp://`` or ``rtmps://`` URL to forward this stream to."""
        return ensureDeferred(self._lookup_upstream(user_id, stream_id))

    def hls_ready(
        self, user_id: str, stream_id: str, hls_url: str, dash_url: str
    ) -> Deferred[None]:
        """Tell the cloud the stream's HLS and DASH outputs are ready."""
        payload = {"userId": user_id, "streamId": stream_id, "hlsUrl": hls_url, "dashUrl": dash_url}
        return ensureDeferred(self._webhook("hls-ready", payload))

    def stream_ended(self, user_id: str, stream_id: str) -> Deferred[None]:
        """Tell the cloud the stream has ended."""
        payload = {"userId": user_id, "streamId": stream_id}
        return ensureDeferred(self._webhook("stream-ended", payload))

    # -- internals ----------------------------------------------------------

    def _route(self, *segments: str) -> str:
        return self._config.base_url + "/api/rtmp-relay/" + "/".join(segments)

    async def _lookup_upstream(self, user_id: str, stream_id: str) -> str:
        url = self._route("cf-url", quote(user_id, safe=""), quote(stream_id, safe=""))
        status, body, attempts = await self._call("GET", url, None)
        upstream = parse_upstream_url(body)
        if upstream is None or not _valid_rtmp_url(upstream):
            raise CloudError(
                f"answer holds no rtmp:// or rtmps:// URL: {body[:200]!r}",
                method="GET",
                url=url,
                status=status,
                attempts=attempts,
            )
        self.log.info(
            "upstream for {userId}/{streamId} is {scheme}://{host}",
            userId=user_id,
            streamId=stream_id,
            scheme=urlsplit(upstream).scheme,
            host=urlsplit(upstream).hostname,
        )
        return upstream

    async def _webhook(self, name: str, payload: dict[str, str]) -> None:
        url = self._route(name)
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        status, _body, attempts = await self._call("POST", url, body)
        self.log.info(
            "{hook} for {userId}/{streamId} sent (status {status}, {attempts} attempt(s))",
            hook=name,
            userId=payload["userId"],
            streamId=payload["streamId"],
            status=status,
            attempts=attempts,
        )

    async def _call(self, method: str, url: str, body: bytes | None) -> tuple[int, bytes, int]:
        """Do one call with retries; ``(status, body, attempts)`` on a 2xx."""
        config = self._config
        last: _Retryable | None = None
        for attempt in range(config.retries + 1):
            if attempt:
                delay = config.backoff(attempt - 1)
                self.log.warn(
                    "{method} {url} attempt {attempt} failed ({reason}); retrying in {delay}s",
                    method=method,
                    url=url,
                    attempt=attempt,
                    reason=last.what if last else None,
                    delay=delay,
                )
                await deferLater(self._clock, delay, lambda: None)
            try:
                status, answer = await self._attempt(method, url, body)
            except _RETRYABLE_ERRORS as exc:
                if _cancelled(exc):
                    raise CancelledError() from None  # nobody wants the answer: no more attempts
                last = _Retryable(_describe(exc, self._config.timeout_s), None)
                continue
            if 500 <= status <= 599:
                last = _Retryable(f"last status {status}", status)
                continue
            if not 200 <= status <= 299:
                self.log.error(
                    "{method} {url} refused with status {status}", method=method, url=url, status=status
                )
                raise CloudError(
                    f"last status {status}", method=method, url=url, status=status, attempts=attempt + 1
                )
            return status, answer, attempt + 1
        # The loop ran retries + 1 >= 1 times and every pass that did not return set ``last``.
        self.log.error(
            "{method} {url} failed for good after {attempts} attempt(s): {reason}",
            method=method,
            url=url,
            attempts=config.retries + 1,
            reason=last.what,
        )
        raise CloudError(
            last.what, method=method, url=url, status=last.status, attempts=config.retries + 1
        )

    async def _attempt(self, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        headers: dict[str, list[str]] = {"Accept": ["application/json"]}
        if body is not None:
            headers["Content-Type"] = ["application/json"]
            if self._config.secret:
                timestamp = str(int(self._clock.seconds()))
                headers[TIMESTAMP_HEADER] = [timestamp]
                headers[SIGNATURE_HEADER] = [sign_body(self._config.secret, timestamp, body)]
        timeout = self._config.timeout_s
        # Our own timer rather than treq's timeout=, which cancels: a cancel must mean
        # "the caller gave up" (stop retrying), a timeout "try again".
        timed_out: list[bool] = []

        def time_out() -> None:
            timed_out.append(True)
            request.cancel()

        request = self._http.request(method, url, headers=headers, data=body, reactor=self._clock)
        timer = self._clock.callLater(timeout, time_out)
        try:
            response = await request
            content = response.content()
            request = content  # the timer now bounds the body too
            answer = await content
        except Exception:
            if timed_out:
                raise defer.TimeoutError(f"no answer within {timeout}s") from None
            raise
        finally:
            if timer.active():
                timer.cancel()
        return response.code, answer
