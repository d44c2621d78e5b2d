"""HTTP admission hooks (``--on-publish URL``, ``--on-play URL``), as nginx-rtmp's ``on_publish``.

Each publish (or play) waits for one ``POST URL`` with a form-encoded body
(``application/x-www-form-urlencoded``), the fields nginx-rtmp sends:

``call``
    ``publish`` or ``play``;
``addr``, ``clientid``
    the client's IP address and the relay's number for its connection;
``app``, ``flashver``, ``swfurl``, ``tcurl``, ``pageurl``
    from the client's ``connect`` (``app`` without its query string);
``name``, ``type``
    the stream name as the client sent it in ``publish``/``play``, without its
    query string, and the publish type (``live``; publishes only);

plus ``path``, the stream path the relay knows the stream by
(``live/user1/stream1``, however the client split it between app and name),
and then every parameter of the client's query strings (app's and name's;
``?token=...`` is how a client proves who it is to the hook) whose name is not
one of the fields above.

The answer's status decides: **2xx admits**; anything else refuses. A 4xx or
5xx is ``NetStream.Publish.Unauthorized`` ("refused by the publish hook (HTTP
403)"); a 3xx too, but for a different reason: nginx-rtmp takes a redirect's
``Location`` as a new stream name, or as an upstream to push to, and the relay
does neither. A new name would escape the checks made on the old one (a
signature, the HLS folder) and naming an upstream is the forwarding's job
(``--forward``, ``--cloud``), so the hook is not followed and its 3xx is a
refusal ("redirects are not supported"), which an operator sees in the log at
the first publish. No answer within ``timeout_s`` or a connection that fails is
``NetStream.Publish.Rejected`` ("publish hook unreachable: ..."): the hook
could not say yes, so the publish is refused (fail closed), and not retried: a
publisher waiting for ``NetStream.Publish.Start`` should not wait out several
timeouts, and every client reconnects on its own. The body of the answer is
not read.

Neither the hook's URL (it may hold a token) nor the fields (the client's
query holds its signature) are logged or sent to the client; the reasons name
the action, the status or the kind of failure only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, error as ierror
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol
from twisted.web import client as wclient

from rtmprelay.errors import ConfigError
from rtmprelay.names import shown_url
from rtmprelay.relay.admission import PUBLISH, AdmissionRefused, AdmissionRequest, Refusal

__all__ = ["DEFAULT_HOOK_TIMEOUT", "HttpAdmissionHook", "hook_form"]

DEFAULT_HOOK_TIMEOUT = 5.0
#: Connect strings come from the peer; the hook gets at most this much of each.
MAX_FIELD_LENGTH = 2048


def hook_form(request: AdmissionRequest) -> list[tuple[str, str]]:
    """The form fields posted for ``request``, in order (see the module doc)."""
    fields = [
        ("call", request.action),
        ("addr", request.peer_host),
        ("clientid", request.client_id),
        ("app", request.app),
        ("flashver", request.flash_version),
        ("swfurl", request.swf_url),
        ("tcurl", request.tc_url),
        ("pageurl", request.page_url),
        ("name", request.name),
    ]
    if request.action == PUBLISH:
        fields.append(("type", request.publish_type))
    fields.append(("path", request.path))
    fields = [(key, value[:MAX_FIELD_LENGTH]) for key, value in fields]
    taken = {key for key, _ in fields}
    return fields + [(key, value) for key, value in request.query.items() if key not in taken]


class HttpAdmissionHook:
    """An admission check asking an HTTP endpoint about every publish or every play."""

    def __init__(self, url: str, *, action: str = PUBLISH, timeout_s: float = DEFAULT_HOOK_TIMEOUT, http_client: Any = None, clock: Any = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"the {action} hook must be an http:// or https:// URL, not {shown_url(url)!r}")
        if clock is None:
            from twisted.internet import reactor as clock  # noqa: PLC0415
        if http_client is None:
            from treq.client import HTTPClient  # noqa: PLC0415
            from twisted.internet import reactor  # noqa: PLC0415

            http_client = HTTPClient(wclient.Agent(reactor))
        self._url = url
        self.shown_url = shown_url(url)
        self.action = action
        self.actions = frozenset([action])
        self.timeout_s = timeout_s
        self._http = http_client
        self._clock = clock

    def __repr__(self) -> str:
        return f"HttpAdmissionHook({self.action} -> {self.shown_url})"

    def check(self, request: AdmissionRequest) -> Deferred[None]:
        return defer.ensureDeferred(self._ask(request))

    async def _ask(self, request: AdmissionRequest) -> None:
        timed_out: list[bool] = []

        def time_out() -> None:
            timed_out.append(True)
            call.cancel()

        call = self._http.request(
            "POST",
            self._url,
            data=hook_form(request),
            headers={"User-Agent": ["rtmprelay"]},
            allow_redirects=False,
            unbuffered=True,
            reactor=self._clock,
        )
        timer = self._clock.callLater(self.timeout_s, time_out)
        try:
            response = await call
        except Exception as exc:
            if timed_out:
                raise self._unreachable(request, f"no answer within {self.timeout_s:g} s") from None
            if isinstance(exc, CancelledError) or _wraps_cancel(exc):
                raise CancelledError() from None  # the client left: nobody wants the answer
            raise self._unreachable(request, _describe(exc)) from None
        finally:
            if timer.active():
                timer.cancel()
        response.deliverBody(Protocol())  # the answer's body is not read: drop it as it comes
        code = response.code
        if 200 <= code <= 299:
            return None
        what = f"{request.action} hook"
        if 300 <= code <= 399:
            reason = f"refused by the {what} (HTTP {code}: redirects are not supported)"
            kind = "hook_redirect"
        else:
            reason = f"refused by the {what} (HTTP {code})"
            kind = "hook_refused"
        raise AdmissionRefused(reason, kind=kind, category=Refusal.UNAUTHORIZED)

    def _unreachable(self, request: AdmissionRequest, what: str) -> AdmissionRefused:
        return AdmissionRefused(f"{request.action} hook unreachable: {what}", kind="hook_unreachable", category=Refusal.REJECTED)


def _wraps_cancel(exc: BaseException) -> bool:
    return any(f.check(CancelledError) for f in getattr(exc, "reasons", ()) or ())


def _describe(exc: BaseException) -> str:
    """A short, safe reason: the kind of failure, not a traceback."""
    reasons = [f.value for f in getattr(exc, "reasons", ()) or ()] or [exc]
    inner = reasons[0]
    if isinstance(inner, ierror.ConnectionRefusedError):
        return "connection refused"
    if isinstance(inner, ierror.DNSLookupError):
        return "host name not found"
    if isinstance(inner, (ierror.TimeoutError, ierror.TCPTimedOutError)):
        return "connection timed out"
    if isinstance(inner, ierror.ConnectError):
        return f"cannot connect ({type(inner).__name__})"
    return f"{type(inner).__name__}"
