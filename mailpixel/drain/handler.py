"""Drains the SQS fallback queue back into the events table (opens) and the clicks table (clicks).

The pixel sends an open here only when its DynamoDB write failed. SQS redelivers what this
function reports as failed, and after the queue's `maxReceiveCount` moves it to the dead-letter
queue, from which `mailpixel replay --queue-url` re-drives it (`ops/replay.py`). Writes are idempotent
(the event's key is derived from API Gateway's request id), so redelivery never duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from mailpixel.ddb.store import EventStore
from mailpixel.logs import get_logger
from mailpixel.model.clicks import ClickEvent, event_from_json
from mailpixel.model.events import OpenEvent

log = get_logger("drain.handler")


def event_from_body(body: str) -> OpenEvent | ClickEvent:
    """Raises ValueError for anything that is not a serialised open or click event."""
    data = json.loads(body)
    if not isinstance(data, dict) or not data.get("email_id"):
        raise ValueError("not an open event")
    try:
        return event_from_json(data)
    except TypeError as exc:
        raise ValueError(f"not an open event: {exc}") from None


def drain_records(records: Iterable[Mapping[str, Any]], store: EventStore) -> dict[str, list[dict[str, str]]]:
    """Lambda SQS batch: write each event; report the ones that failed (partial batch response)."""
    failures = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            stored = store.put_event(event_from_body(str(record.get("body", ""))))
            log.info("fallback_drained", extra={"message_id": message_id, "duplicate": not stored})
        except Exception as exc:  # noqa: BLE001 - reported, SQS retries it, then dead-letters it
            log.error("fallback_drain_failed", extra={"message_id": message_id, "error": repr(exc)})
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
