"""The write path: store the open (or click), or keep it somewhere durable that `mailpixel replay`
reads. Opens and clicks take the same path; `event.kind` names their metrics and log lines.

Order of places, each tried only if the one before failed:
1. the DynamoDB table (idempotent on the event's key);
2. the fallback: an SQS queue in AWS, a JSON-lines file locally;
3. an `open_not_stored` (`click_not_stored`) log line carrying the whole event, which
   `mailpixel replay --log` reads back (CloudWatch Logs keeps it in AWS).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mailpixel.files import open_private
from mailpixel.logs import Metrics, get_logger
from mailpixel.model.clicks import ClickEvent
from mailpixel.model.events import OpenEvent

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from mailpixel.ddb.store import EventStore

log = get_logger("pixel.recorder")
UNSTORED_MESSAGE = "open_not_stored"
UNSTORED_MESSAGES = (UNSTORED_MESSAGE, f"{ClickEvent.kind}_not_stored")
Event = OpenEvent | ClickEvent


class Fallback(Protocol):
    def save(self, event: Event) -> None: ...


class FileFallback:
    """Appends events to a JSON-lines file and fsyncs, so an acknowledged event survives a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def save(self, event: Event) -> None:
        line = json.dumps(event.to_json(), separators=(",", ":")) + "\n"
        with self._lock, open_private(self.path) as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


class SqsFallback:
    """Sends events to an SQS queue that a drain function writes back into the table.

    The client is made on the first failed write, not at cold start: it is needed only when
    DynamoDB fails, and making it costs every cold start tens of milliseconds."""

    def __init__(self, make_client: Callable[[], SQSClient], queue_url: str) -> None:
        self._make_client = make_client
        self._client: SQSClient | None = None
        self.queue_url = queue_url

    def save(self, event: Event) -> None:
        if self._client is None:
            self._client = self._make_client()
        self._client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(event.to_json()))


class OpenRecorder:
    """Records open (and click) events without ever raising: the pixel must be served, and the
    click redirected, whatever happens."""

    def __init__(self, store: EventStore, fallback: Fallback | None, metrics: Metrics) -> None:
        self.store = store
        self.fallback = fallback
        self.metrics = metrics

    def record(self, event: Event) -> str:
        """Returns where the event went: `stored`, `duplicate`, `fallback` or `log`."""
        try:
            outcome = "stored" if self.store.put_event(event) else "duplicate"
        except Exception as exc:  # noqa: BLE001 - any failure of the store sends the event on
            log.warning("store_write_failed", extra={"error": repr(exc), "request_id": event.request_id})
            outcome = self._save_elsewhere(event)
            self.metrics.count(f"{event.kind}_{outcome}", request_id=event.request_id)
            return outcome
        self.metrics.tally(f"{event.kind}_{outcome}")
        return outcome

    def quarantine(self, event: OpenEvent) -> str:
        """Keep an unverified open out of the table: the fallback, else the log line. The drain
        function and `mailpixel replay` verify it once the secrets load, before it is stored."""
        outcome = self._save_elsewhere(event)
        self.metrics.tally("open_quarantined")
        return outcome

    def _save_elsewhere(self, event: Event) -> str:
        # The full address awaiting geolocation (kept only when MAILPIXEL_IP_STORAGE is truncated
        # or none) does not leave the table's own lifecycle: the fallback and the log keep no
        # copy of it; such an open is geolocated by its stored network instead.
        event = replace(event, pending_ip=None)
        if self.fallback is not None:
            try:
                self.fallback.save(event)
                return "fallback"
            except Exception as exc:  # noqa: BLE001
                log.error("fallback_failed", extra={"error": repr(exc), "request_id": event.request_id})
        log.error(f"{event.kind}_not_stored", extra={"event": event.to_json()})
        return "log"
