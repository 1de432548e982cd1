"""Drains the SQS fallback queue back into the events table (opens) and the clicks table (clicks).

The pixel sends an open here only when its DynamoDB write failed. SQS redelivers what this
function reports as failed, and after the queue's `maxReceiveCount` moves it to the dead-letter
queue, from which `mailpixel replay --queue-url` re-drives it (`ops/replay.py`). Writes are idempotent
(the event's key is derived from API Gateway's request id), so redelivery never duplicates.

An open the pixel quarantined unverified (its signing secrets were not loaded) is verified here
first: stored as signed when it verifies, dropped (logged and counted) when it does not, and
reported for a later try while this function cannot load the secrets either. Nothing
unverified is ever written to the table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from mailpixel.ddb.store import EventStore
from mailpixel.logs import get_logger
from mailpixel.model.clicks import ClickEvent, event_from_json
from mailpixel.model.events import OpenEvent
from mailpixel.secrets import SigningKeys
from mailpixel.signing import release

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


class SecretsNotLoaded(RuntimeError):
    """A quarantined open cannot be verified yet: no signing secrets in this process."""


def verified(event: OpenEvent | ClickEvent, keys: SigningKeys | None) -> OpenEvent | ClickEvent | None:
    """The event to store: itself, or a quarantined open once verified; None when it fails to
    verify (it would have been refused). Raises SecretsNotLoaded when it cannot be told yet.
    Clicks are never quarantined (`/click` refuses what it cannot verify)."""
    if isinstance(event, ClickEvent) or event.unverified is None:
        return event
    secrets = keys.current() if keys is not None else None
    if not secrets:
        raise SecretsNotLoaded("a quarantined open waits for the signing secrets")
    released, why = release(
        event, secrets, max_age_seconds=keys.settings.signature_max_age_seconds if keys else None
    )
    if released is None:
        log.warning("quarantined_open_rejected", extra={"reason": why, "request_id": event.request_id})
    return released


def drain_records(
    records: Iterable[Mapping[str, Any]], store: EventStore, keys: SigningKeys | None = None
) -> dict[str, list[dict[str, str]]]:
    """Lambda SQS batch: write each event; report the ones that failed (partial batch response)."""
    failures = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            event = verified(event_from_body(str(record.get("body", ""))), keys)
            if event is None:
                continue  # refused: the message is deleted, as the pixel would have refused it
            stored = store.put_event(event)
            log.info("fallback_drained", extra={"message_id": message_id, "duplicate": not stored})
        except Exception as exc:  # noqa: BLE001 - reported, SQS retries it, then dead-letters it
            log.error("fallback_drain_failed", extra={"message_id": message_id, "error": repr(exc)})
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
