"""Drains the SQS fallback queue back into the events table.

The pixel sends an open here only when its DynamoDB write failed. SQS redelivers what this
function reports as failed, and after the queue's `maxReceiveCount` moves it to the dead-letter
queue, from which `mailpixel replay --queue-url` re-drives it. Writes are idempotent
(the event's key is derived from API Gateway's request id), so redelivery never duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mailpixel.events import OpenEvent
from mailpixel.logs import get_logger
from mailpixel.store import EventStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = get_logger("drain")


def event_from_body(body: str) -> OpenEvent:
    """Raises ValueError for anything that is not a serialised OpenEvent."""
    data = json.loads(body)
    if not isinstance(data, dict) or not data.get("email_id"):
        raise ValueError("not an open event")
    try:
        return OpenEvent.from_json(data)
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


def replay_queue(
    sqs: SQSClient, queue_url: str, store: EventStore, max_messages: int = 100_000
) -> dict[str, Any]:
    """Re-drive a queue (usually the dead-letter queue): write, then delete what was written."""
    counts = {"stored": 0, "duplicate": 0, "failed": 0, "unreadable": 0}
    seen = 0
    while seen < max_messages:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=60
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            seen += 1
            try:
                event = event_from_body(message.get("Body", ""))
            except ValueError:
                counts["unreadable"] += 1
                continue
            try:
                counts["stored" if store.put_event(event) else "duplicate"] += 1
            except Exception:  # noqa: BLE001 - stays in the queue for the next replay
                counts["failed"] += 1
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return {**counts, "source": queue_url}
