"""Which authorization a relay applies, from its options: the rule in one place.

* Signed URLs are checked for publishes when a secret is configured
  (``--auth-secret-file FILE``, else ``$RTMPRELAY_AUTH_SECRET``), and for plays
  too with ``--auth-play``.
* Where an RTMP endpoint listens beyond loopback (``tcp:1935``, the default,
  listens on every interface), publishing must be authorized unless
  ``--no-auth`` says otherwise, explicitly: an ``--on-publish`` hook authorizes,
  or else signed URLs are required. With no secret configured, the relay makes
  one on first start (:data:`~rtmprelay.auth.secret.SECRET_FILE_NAME` beside
  its HLS folder, or in the working folder when it writes no HLS; mode 0600)
  and logs where it is, so that ``rtmprelay sign`` can sign with it. The cloud
  lookup (``--cloud``) does not count: it says which streams exist, not who
  may publish them.
* A relay listening on loopback only (the test fixtures) checks nothing
  unless a secret, ``--auth-play`` or a hook is given.
* ``--no-auth`` turns signed URLs off (a hook still runs); it cannot be
  combined with ``--auth-secret-file`` or ``--auth-play``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from rtmprelay.auth.exposure import exposed_endpoints
from rtmprelay.auth.secret import SECRET_FILE_NAME, read_secret_file, secret_from_env
from rtmprelay.auth.signing import DEFAULT_CLOCK_SKEW, PLAY, PUBLISH
from rtmprelay.errors import ConfigError

__all__ = ["AuthSettings", "auth_settings"]


@attrs.frozen
class AuthSettings:
    """What the relay checks. ``secret`` is None while it is still to be made in ``secret_file``."""

    signed_actions: frozenset[str] = frozenset()
    secret: bytes | None = attrs.field(default=None, repr=False)
    #: Where the secret came from (``$RTMPRELAY_AUTH_SECRET`` or a file), or where to make it.
    secret_source: str = ""
    secret_file: Path | None = None
    clock_skew: float = DEFAULT_CLOCK_SKEW
    #: The RTMP endpoints reachable from beyond this machine.
    exposed: tuple[str, ...] = ()
    #: Publishing is open to anyone who reaches an exposed endpoint (``--no-auth``).
    open_publishing: bool = False

    @property
    def make_secret(self) -> bool:
        return bool(self.signed_actions) and self.secret is None


def auth_settings(
    endpoints: Sequence[str],
    *,
    hls_dir: str | None,
    secret_file: str | None = None,
    env: Mapping[str, str] = os.environ,
    no_auth: bool = False,
    auth_play: bool = False,
    publish_hook: bool = False,
    clock_skew: float = DEFAULT_CLOCK_SKEW,
) -> AuthSettings:
    if no_auth and secret_file:
        raise ConfigError("--no-auth turns signed URLs off: --auth-secret-file would not be used")
    if no_auth and auth_play:
        raise ConfigError("--no-auth turns signed URLs off: --auth-play needs them")
    exposed = tuple(exposed_endpoints(endpoints))
    if no_auth:
        return AuthSettings(exposed=exposed, open_publishing=bool(exposed) and not publish_hook, clock_skew=clock_skew)
    if secret_file:
        secret, source, path = read_secret_file(secret_file), f"file {secret_file}", Path(secret_file)
    else:
        secret, path = secret_from_env(env), None
        source = "$RTMPRELAY_AUTH_SECRET" if secret is not None else ""
    signed: set[str] = set()
    if secret is not None or (exposed and not publish_hook):
        signed.add(PUBLISH)
    if auth_play:
        signed.add(PLAY)
    if signed and secret is None:
        folder = Path(hls_dir).absolute().parent if hls_dir else Path.cwd()
        path = folder / SECRET_FILE_NAME
        source = f"file {path}"
    return AuthSettings(
        signed_actions=frozenset(signed),
        secret=secret,
        secret_source=source,
        secret_file=path,
        clock_skew=clock_skew,
        exposed=exposed,
    )
