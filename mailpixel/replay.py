"""Re-drive open events kept outside the table back into it. Idempotent: the key decides."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mailpixel.events import OpenEvent
from mailpixel.recorder import UNSTORED_MESSAGE
from mailpixel.store import EventStore


def _put_all(store: EventStore, events: Iterable[OpenEvent]) -> tuple[dict[str, int], list[OpenEvent]]:
    result = {"stored": 0, "duplicate": 0, "failed": 0}
    failed: list[OpenEvent] = []
    for event in events:
        try:
            result["stored" if store.put_event(event) else "duplicate"] += 1
        except Exception:  # noqa: BLE001 - kept for the next replay
            result["failed"] += 1
            failed.append(event)
    return result, failed


def _parse_lines(lines: Iterable[str]) -> tuple[list[OpenEvent], int]:
    events, unreadable = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            events.append(OpenEvent.from_json(json.loads(line)))
        except (ValueError, TypeError):
            unreadable += 1
    return events, unreadable


def replay_file(store: EventStore, path: Path) -> dict[str, Any]:
    """Replay a JSON-lines fallback file. What failed again stays in the file; the rest goes.

    The file is first renamed aside, so opens that arrive during the replay start a new file
    and are not lost when the replayed one is removed.
    """
    if not path.exists():
        return {"stored": 0, "duplicate": 0, "failed": 0, "unreadable": 0, "source": str(path)}
    working = path.with_suffix(".replaying")
    if not working.exists():
        os.replace(path, working)
    events, unreadable = _parse_lines(working.read_text(encoding="utf-8").splitlines())
    result, failed = _put_all(store, events)
    if failed:
        with path.open("a", encoding="utf-8") as fh:
            for event in failed:
                fh.write(json.dumps(event.to_json()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    working.unlink()
    return {**result, "unreadable": unreadable, "source": str(path)}


def events_from_log(lines: Iterable[str]) -> list[OpenEvent]:
    """Events carried by `open_not_stored` JSON log lines (other lines are ignored)."""
    events = []
    for line in lines:
        start = line.find("{")
        if start < 0 or UNSTORED_MESSAGE not in line:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if record.get("message") == UNSTORED_MESSAGE and isinstance(record.get("event"), dict):
            events.append(OpenEvent.from_json(record["event"]))
    return events


def replay_log(store: EventStore, log_path: str) -> dict[str, Any]:
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        events = events_from_log(fh)
    result, _ = _put_all(store, events)
    return {**result, "unreadable": 0, "source": log_path}
