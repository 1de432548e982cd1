"""Structured JSON logs, one object a line, so CloudWatch Logs Insights can query fields.

Metrics ride on the same lines in CloudWatch Embedded Metric Format: a count costs no API
call on the pixel path, and locally the in-process counters answer `/health`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from typing import Any

SERVICE = "mailpixel"
METRIC_NAMESPACE = "mailpixel"
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record and its `extra` fields as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "level": record.levelname,
            "message": record.getMessage(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "service": SERVICE,
            "logger": record.name,
        }
        for key, value in record.__dict__.items():
            if key == "_aws" or (key not in _RESERVED and not key.startswith("_")):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time, not the one there at configuration:
    test runners and embedding tools swap it, and a kept reference ends up closed."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(level: str = "INFO") -> None:
    """Send mailpixel's logs to stderr as JSON; idempotent, so warm invocations add nothing."""
    root = logging.getLogger(SERVICE)
    root.setLevel(level)
    if not any(getattr(h, "_mailpixel", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        handler._mailpixel = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{SERVICE}.{name}")


def _emf(names: list[str]) -> dict[str, Any]:
    return {
        "Timestamp": int(time.time() * 1000),
        "CloudWatchMetrics": [
            {
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [[]],
                "Metrics": [{"Name": name, "Unit": "Count"} for name in names],
            }
        ],
    }


class Metrics:
    """Counters kept in process and emitted as CloudWatch EMF log lines."""

    def __init__(self, logger: logging.Logger | None = None, flush_seconds: float = 60.0) -> None:
        self._counts: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._logger = logger or get_logger("metrics")
        self._flush_seconds = flush_seconds
        self._flushed_at = time.monotonic()

    def count(self, name: str, value: int = 1, **fields: Any) -> None:
        """Add to a counter and log it at once, with `fields` as context (not dimensions).

        For what is rare and worth a line of its own: rejections, failures, fallbacks."""
        with self._lock:
            self._counts[name] += value
        self._logger.info("metric", extra={"_aws": _emf([name]), name: value, **fields})

    def tally(self, name: str, value: int = 1) -> None:
        """Add to a counter that is logged in one EMF line a minute (and by `flush`).

        For what every request does (a stored open): a log line each would cost the pixel
        time and CloudWatch Logs money, and a per-minute sum is what a metric needs anyway."""
        with self._lock:
            self._counts[name] += value
            self._pending[name] += value
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Flush when the interval has passed. Called after each tally and at the end of each
        invocation (`handler.py`), so an instance reclaimed while idle has already written
        whatever it counted more than a minute ago."""
        with self._lock:
            due = bool(self._pending) and time.monotonic() - self._flushed_at >= self._flush_seconds
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._flushed_at = time.monotonic()
        if pending:
            self._logger.info("metrics", extra={"_aws": _emf(sorted(pending)), **pending})

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
