"""``rtmprelay sign URL``: a signed relay URL, for the cloud side, scripts and the quick start.

It prints ``URL?exp=...&sig=...`` (see ``rtmprelay.auth.signing``), signed
with the secret of ``--auth-secret-file``, else ``$RTMPRELAY_AUTH_SECRET``,
else the file a relay makes beside its HLS folder
(``./rtmprelay-auth.secret`` for ``bash scripts/run.sh``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from rtmprelay.auth.secret import SECRET_ENV, SECRET_FILE_NAME, read_secret_file, secret_from_env
from rtmprelay.auth.signing import PLAY, PUBLISH, sign_url
from rtmprelay.errors import RelayError

DEFAULT_EXPIRES_IN = 3600


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtmprelay sign",
        description=(
            "Prints URL with ?exp=UNIX&sig=HMAC-SHA256(secret, path + exp) added: the signed URL a relay "
            f"with publish authorization admits. The secret: --auth-secret-file, else ${SECRET_ENV}, "
            f"else ./{SECRET_FILE_NAME} (the one a relay makes beside its HLS folder)."
        ),
    )
    parser.add_argument("url", help="rtmp://HOST/live/USER/STREAM, rtmps://..., or the path live/USER/STREAM")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--expires-in", "-e", type=int, default=DEFAULT_EXPIRES_IN, metavar="SECONDS",
                      help=f"seconds from now until the URL expires (default {DEFAULT_EXPIRES_IN})")
    when.add_argument("--expires-at", type=int, metavar="UNIX", help="UNIX time the URL expires at")
    parser.add_argument("--auth-secret-file", metavar="FILE", help="file holding the relay's secret")
    parser.add_argument("--play", action="store_true",
                        help="sign a URL to play the stream (a relay with --auth-play), not to publish it")
    return parser


def sign_main(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] = os.environ,
    now: Callable[[], float] = time.time,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Runs the command; the exit status (0, or 2 for a usage error, 1 for a bad URL or secret)."""
    parser = _parser()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = parser.parse_args(list(argv))
    except SystemExit as exit:
        return int(exit.code or 0)
    try:
        secret = _secret(args.auth_secret_file, env)
        expires = args.expires_at if args.expires_at is not None else int(now()) + args.expires_in
        signed = sign_url(args.url, secret, expires, PLAY if args.play else PUBLISH)
    except (RelayError, ValueError) as error:
        print(f"rtmprelay sign: {error}", file=err)
        return 1
    print(signed, file=out)
    return 0


def _secret(path: str | None, env: Mapping[str, str]) -> bytes:
    if path:
        return read_secret_file(path)
    secret = secret_from_env(env)
    if secret is not None:
        return secret
    if Path(SECRET_FILE_NAME).exists():
        return read_secret_file(SECRET_FILE_NAME)
    raise RelayError(f"no secret: give --auth-secret-file, set ${SECRET_ENV}, or run where the relay made ./{SECRET_FILE_NAME}")
