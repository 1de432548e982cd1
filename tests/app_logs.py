"""Read what mailpixel really logs: its JSON lines, also written to a file for a while.

In Lambda these lines go to CloudWatch Logs. Here a second handler with mailpixel's own
formatter copies them to a file the test reads back, so assertions see exactly the formatted
lines, `extra` fields and all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailpixel.logs import SERVICE, JsonFormatter


@contextmanager
def app_log_to(path: Path) -> Iterator[Path]:
    """Copy mailpixel's JSON log lines to `path` (appending) until the block ends."""
    logger = logging.getLogger(SERVICE)
    with path.open("a", encoding="utf-8") as fh:
        copy = logging.StreamHandler(fh)
        copy.setFormatter(JsonFormatter())
        logger.addHandler(copy)
        try:
            yield path
        finally:
            logger.removeHandler(copy)
