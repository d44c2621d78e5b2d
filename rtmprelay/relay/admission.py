"""Admission: whether a publish or play may start, decided by a chain of checks.

Every publish (and play) becomes an :class:`AdmissionRequest` and goes through
one :class:`AdmissionChain`. Its checks run in order, cheap local ones first:

1. signed URLs (:class:`SignedUrlCheck`, ``rtmprelay.auth.signing``);
2. the HTTP admission hooks (``--on-publish``, ``--on-play``:
   ``rtmprelay.cloud.hook.HttpAdmissionHook``, nginx-rtmp's ``on_publish``);
3. the upstream lookup of forwarding (``Forwarding.admit(path)`` wrapped in a
   :class:`PathHookCheck`; with ``--cloud`` that is the cloud's lookup).

A check answers ``None`` (admitted, nothing to carry), a grant (admitted, and
this value travels on the stream as ``LiveStream.admission``: the forwarding
check's ``UpstreamGrant``), or a Deferred of either; it refuses by raising or
failing with :class:`AdmissionRefused`. The first refusal wins and the checks
after it are not asked. The chain's answer is the last grant given (``None``
when no check gave one). Cancelling the chain's Deferred (the publisher left)
cancels the check it waits on.

A refusal says what the client is told (``reason``, never a signature or a
secret), how (``category``: unauthorized or rejected; the server picks the
status code for the action) and why, in a word, for the counters (``kind``).
Any other failure of a check is a bug or an unexpected error: refused as
``error``, ``"{action} admission failed"``, its failure kept for the log. Bad
and taken names never reach the chain: the session and the server refuse them
first (``NetStream.Publish.BadName``).

:class:`Admissions` is the server's side: the chain, and the paths whose
publish waits on it (a second publisher of such a path is refused at once).
The server counts each refusal as ``{action}_{kind}`` in its factory's
``counters.requests_refused`` (beside the limits' refusals) for ``/metrics``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import attrs
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from rtmprelay.auth.signing import DEFAULT_CLOCK_SKEW, PLAY, PUBLISH, SignatureRefused, check_signature
from rtmprelay.errors import RelayError

__all__ = [
    "PLAY",
    "PUBLISH",
    "AdmissionChain",
    "AdmissionCheck",
    "AdmissionRefused",
    "AdmissionRequest",
    "Admissions",
    "PathHookCheck",
    "PendingAdmission",
    "Refusal",
    "SignedUrlCheck",
]


class Refusal(enum.Enum):
    """How a refusal is told to the client; the server maps it to a status code per action."""

    UNAUTHORIZED = "unauthorized"
    REJECTED = "rejected"


class AdmissionRefused(RelayError):
    """A check said no. ``reason`` is sent to the client and logged; ``kind`` is counted."""

    def __init__(self, reason: str, *, kind: str, category: Refusal = Refusal.REJECTED, failure: Failure | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.category = category
        #: The unexpected failure behind an ``error`` refusal, for the log.
        self.failure = failure


@attrs.frozen
class AdmissionRequest:
    """One publish or play asking to start.

    ``path`` is the validated stream path (``live/user1/stream1``); ``app`` and
    ``name`` are as the client split them, without their query strings;
    ``query`` holds the parameters of both query strings (the signature among
    them), so it and ``tc_url`` are kept out of ``repr``: a request may be
    logged, its secrets may not.
    """

    action: str
    path: str
    query: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    peer_host: str = ""
    app: str = ""
    name: str = ""
    tc_url: str = attrs.field(default="", repr=False)
    client_id: str = ""
    publish_type: str = "live"
    flash_version: str = ""
    swf_url: str = ""
    page_url: str = ""


class AdmissionCheck(Protocol):
    """One link of the chain."""

    #: The actions (``publish``, ``play``) this check is asked about.
    actions: frozenset[str]

    def check(self, request: AdmissionRequest) -> Any:
        """None, a grant, or a Deferred of one; raises or fails with AdmissionRefused to refuse."""
        ...


class SignedUrlCheck:
    """Signed URLs (``rtmprelay.auth.signing``), checked against the clock's time."""

    def __init__(self, secret: bytes, clock, *, actions: Iterable[str] = (PUBLISH,), clock_skew: float = DEFAULT_CLOCK_SKEW) -> None:
        self._secret = secret
        self.clock = clock
        self.actions = frozenset(actions)
        self.clock_skew = clock_skew

    def __repr__(self) -> str:
        return f"SignedUrlCheck(actions={sorted(self.actions)})"  # never the secret

    def check(self, request: AdmissionRequest) -> None:
        try:
            check_signature(
                self._secret, request.path, request.query, self.clock.seconds(), action=request.action, clock_skew=self.clock_skew
            )
        except SignatureRefused as refused:
            raise AdmissionRefused(refused.reason, kind=f"signature_{refused.kind}", category=Refusal.UNAUTHORIZED) from None


class PathHookCheck:
    """A ``hook(path) -> Deferred[grant]`` (``Forwarding.admit``) as a check of publishes.

    A ``RelayError`` from the hook (``UpstreamUnavailable``: the cloud lookup
    failed, naming why) is a rejection with its message, counted as ``kind``.
    """

    def __init__(self, hook: Callable[[str], Any], *, kind: str = "upstream_unavailable", actions: Iterable[str] = (PUBLISH,)) -> None:
        self.hook = hook
        self.kind = kind
        self.actions = frozenset(actions)

    def check(self, request: AdmissionRequest) -> Deferred:
        return defer.maybeDeferred(self.hook, request.path).addErrback(self._refused)

    def _refused(self, failure: Failure):
        if failure.check(RelayError) and not failure.check(AdmissionRefused):
            raise AdmissionRefused(str(failure.value), kind=self.kind) from None
        return failure


class AdmissionChain:
    """The checks, in order; ``admit(request) -> Deferred[grant or None]``."""

    def __init__(self, checks: Iterable[AdmissionCheck] = ()) -> None:
        self.checks = list(checks)

    def admit(self, request: AdmissionRequest) -> Deferred:
        """Fires with the last grant once every check admitted; fails with AdmissionRefused
        (or CancelledError when cancelled). Synchronous checks answer synchronously."""
        return defer.ensureDeferred(self._run(request))

    async def _run(self, request: AdmissionRequest) -> Any:
        grant = None
        for check in self.checks:
            if request.action not in check.actions:
                continue
            try:
                answer = await defer.maybeDeferred(check.check, request)
            except (AdmissionRefused, CancelledError):
                raise
            except Exception:
                raise AdmissionRefused(f"{request.action} admission failed", kind="error", failure=Failure()) from None
            if answer is not None:
                grant = answer
        return grant


@attrs.define(eq=False)
class PendingAdmission:
    """A publish or play of one connection waiting for the chain."""

    stream_id: int
    request: AdmissionRequest
    deferred: Deferred | None = None

    @property
    def path(self) -> str:
        return self.request.path


class Admissions:
    """The chain, and the publishes waiting on it (by path, across connections)."""

    def __init__(self, chain: AdmissionChain) -> None:
        self.chain = chain
        self._waiting: dict[str, PendingAdmission] = {}

    def waiting(self, path: str) -> bool:
        return path in self._waiting

    def request(self, pending: PendingAdmission) -> Deferred:
        if pending.request.action == PUBLISH:
            self._waiting[pending.path] = pending
        return self.chain.admit(pending.request)

    def release(self, pending: PendingAdmission) -> None:
        if self._waiting.get(pending.path) is pending:
            del self._waiting[pending.path]
