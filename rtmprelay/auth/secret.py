"""The shared secret of signed URLs: from a file or the environment, or made on first start.

Never on the command line (``ps`` shows it to every user of the machine) and
never in a log line: errors name the file, not its content.

A secret file holds the secret as text; surrounding whitespace (the newline
``echo`` or an editor adds) is not part of it. A made secret is 32 random bytes
written as 64 hex digits, in a file created with mode 0600 (``O_EXCL``, so two
relays starting at once agree on one secret).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from rtmprelay.errors import ConfigError

__all__ = ["MIN_SECRET_LENGTH", "SECRET_ENV", "SECRET_FILE_NAME", "make_secret_file", "read_secret_file", "secret_from_env"]

#: The environment variable the secret is read from when no file is given.
SECRET_ENV = "RTMPRELAY_AUTH_SECRET"
#: The file a relay makes when it needs a secret and was given none, beside its HLS folder.
SECRET_FILE_NAME = "rtmprelay-auth.secret"
#: Shorter secrets can be guessed offline from one signed URL.
MIN_SECRET_LENGTH = 16


def read_secret_file(path: str | os.PathLike) -> bytes:
    try:
        text = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the auth secret file {path}: {error.strerror}") from None
    return _checked(text.strip(), f"the auth secret file {path}")


def secret_from_env(env: Mapping[str, str]) -> bytes | None:
    value = env.get(SECRET_ENV)
    if not value:
        return None
    return _checked(value.strip().encode("utf-8"), f"${SECRET_ENV}")


def make_secret_file(path: str | os.PathLike) -> tuple[bytes, bool]:
    """The secret in ``path``, made there first if the file does not exist: ``(secret, made)``."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret_file(path), False
    except OSError as error:
        raise ConfigError(f"cannot create the auth secret file {path}: {error.strerror}") from None
    secret = secrets.token_hex(32).encode("ascii")
    with os.fdopen(fd, "wb") as file:
        file.write(secret + b"\n")
    return secret, True


def readable_by_others(path: str | os.PathLike) -> bool:
    """The file's mode lets its group or other users read it."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _checked(secret: bytes, where: str) -> bytes:
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{where} holds {len(secret)} characters; a secret needs at least {MIN_SECRET_LENGTH} "
            "(make one with: openssl rand -hex 32)"
        )
    return secret
