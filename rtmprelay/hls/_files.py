"""File writes shared by the segment writers: whole files appear by rename only.

A player or web server that opens a playlist, manifest or segment while it is
being written must see the old file or the new one, never half of one, so
every write goes to ``<name>.tmp`` in the same folder first.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["remove_quietly", "replace_atomically"]


def replace_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def remove_quietly(path: Path) -> None:
    """Delete ``path``; a file already gone (a cleanup ran before) is no error."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
