"""Re-drive open (and click) events kept outside their table back into it. Idempotent: the key
decides.

Opens the pixel quarantined unverified (signing configured, secrets not loaded) are verified
against `secrets` first: stored as signed when they verify, dropped as `rejected` when they do
not, and kept (`unverified`) when there are no secrets to verify them with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailpixel.files import open_private
from mailpixel.model.clicks import event_from_json
from mailpixel.pixel.recorder import UNSTORED_MESSAGES, Event

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
from mailpixel.ddb.store import EventStore
from mailpixel.drain.handler import SecretsNotLoaded, event_from_body, verified

if TYPE_CHECKING:
    from mailpixel.secrets import SigningKeys


def _put_one(store: EventStore, event: Event, keys: SigningKeys | None) -> str:
    """`stored`, `duplicate`, `rejected` (failed to verify), `unverified` or `failed` (kept)."""
    try:
        ready = verified(event, keys)
    except SecretsNotLoaded:
        return "unverified"
    if ready is None:
        return "rejected"
    try:
        return "stored" if store.put_event(ready) else "duplicate"
    except Exception:  # noqa: BLE001 - kept for the next replay
        return "failed"


def _put_all(
    store: EventStore, events: Iterable[Event], keys: SigningKeys | None = None
) -> tuple[dict[str, int], list[Event]]:
    result = dict.fromkeys(("stored", "duplicate", "failed", "rejected", "unverified"), 0)
    kept: list[Event] = []
    for event in events:
        outcome = _put_one(store, event, keys)
        result[outcome] += 1
        if outcome in ("failed", "unverified"):
            kept.append(event)
    return result, kept


def _parse_lines(lines: Iterable[str]) -> tuple[list[Event], list[str]]:
    """Events, and the lines that are none (cut short by a crash, edited by hand): kept, not lost."""
    events: list[Event] = []
    unreadable: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            events.append(event_from_json(json.loads(line)))
        except (ValueError, TypeError, AttributeError):  # AttributeError: JSON, but not an object
            unreadable.append(line)
    return events, unreadable


def _append_lines(path: Path, lines: Iterable[str]) -> None:
    with open_private(path) as fh:
        for line in lines:
            fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def replay_file(store: EventStore, path: Path, keys: SigningKeys | None = None) -> dict[str, Any]:
    """Replay a JSON-lines fallback file. What failed again stays in the file; the rest goes.

    The file is first renamed aside, so opens that arrive during the replay start a new file
    and are not lost when the replayed one is removed. Lines that are not events are moved to
    `<file>.unreadable` for a person to look at.
    """
    if not path.exists():
        empty = dict.fromkeys(("stored", "duplicate", "failed", "rejected", "unverified", "unreadable"), 0)
        return {**empty, "source": str(path)}
    working = path.with_suffix(".replaying")
    if not working.exists():
        os.replace(path, working)
    events, unreadable = _parse_lines(working.read_text(encoding="utf-8", errors="replace").splitlines())
    result, failed = _put_all(store, events, keys)
    if failed:
        _append_lines(path, (json.dumps(event.to_json()) for event in failed))
    kept = path.with_name(path.name + ".unreadable")
    if unreadable:
        _append_lines(kept, unreadable)
    working.unlink()
    summary = {**result, "unreadable": len(unreadable), "source": str(path)}
    return {**summary, "unreadable_kept_in": str(kept)} if unreadable else summary


def events_from_log(lines: Iterable[str]) -> list[Event]:
    """Events carried by `open_not_stored` / `click_not_stored` JSON log lines (others are ignored)."""
    events: list[Event] = []
    for line in lines:
        start = line.find("{")
        if start < 0 or not any(message in line for message in UNSTORED_MESSAGES):
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if record.get("message") in UNSTORED_MESSAGES and isinstance(record.get("event"), dict):
            events.append(event_from_json(record["event"]))
    return events


def replay_log(store: EventStore, log_path: str, keys: SigningKeys | None = None) -> dict[str, Any]:
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        events = events_from_log(fh)
    result, _ = _put_all(store, events, keys)
    return {**result, "unreadable": 0, "source": log_path}


def replay_queue(
    sqs: SQSClient,
    queue_url: str,
    store: EventStore,
    max_messages: int = 100_000,
    keys: SigningKeys | None = None,
) -> dict[str, Any]:
    """Re-drive a queue (usually the dead-letter queue): write, then delete what was written
    (or refused); what failed or could not be verified stays in the queue."""
    counts = dict.fromkeys(("stored", "duplicate", "failed", "rejected", "unverified", "unreadable"), 0)
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
            outcome = _put_one(store, event, keys)
            counts[outcome] += 1
            if outcome in ("failed", "unverified"):
                continue  # stays in the queue for the next replay
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return {**counts, "source": queue_url}
