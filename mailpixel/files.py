"""Local data files (`MAILPIXEL_DATA_DIR`): readable by their owner only.

They hold opens (the fallback, replay leftovers, enrichment failures) and DynamoDB Local's
database: user IDs, and full addresses until enrichment. The umask of whoever runs `make run`
must not decide who else on the machine can read them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700; an existing one is narrowed to 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def open_private(path: Path, mode: str = "a") -> TextIO:
    """Open a text file for writing or appending, created 0600 in a 0700 folder."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    if mode == "a":
        return open(fd, "a", encoding="utf-8")  # noqa: SIM115 - the caller closes it (a `with`)
    return open(fd, "w", encoding="utf-8")  # noqa: SIM115
