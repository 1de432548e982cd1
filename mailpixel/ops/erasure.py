"""Erasure: delete every item about one user, or about one email (`mailpixel forget`).

What a user's data is, by the data model's contract:
- their open events, found through the `by_user` index (their email ids are not known up
  front, and the index is the only way to reach events of emails nobody names);
- meta items under `user#<user_id>` (per-user stats and anything else kept per user);
- for each email they opened, the unique-opener marker `email#<email_id>` / `opener#<user_id>`;
- their clicks (the clicks table's `by_user` index) and, for each email they clicked, the
  unique-clicker marker `email#<email_id>` / `clicker#<user_id>`; for each email they opened or
  clicked, the webhook marker `email#<email_id>` / `webhook_open#<user_id>` and the human-engaged
  marker `email#<email_id>` / `engaged#<user_id>`.
Per-email and per-day counts are anonymous numbers and stay as they are.

An email's data is its events (the table's partition), its clicks, and every meta item under
`email#<email_id>` (stats, day counts, per-link counts, opener, clicker and webhook markers).

Outside the tables, `forget_in_files` reaches what the local stack keeps on disk: the fallback
file and its leftovers, the open and click enrichment failure files, and undelivered webhooks
(`local_data_files`).

Counts are of items that existed: keys are read back with a consistent read before deletion,
so a second run reports zero even while the index still shows entries it has not caught up on.

Keys are streamed a page at a time and each page deleted before the next is read, so memory
stays bounded whatever the size (a campaign of a million opens holds one page of keys, plus
one email id per email the user opened). Each page goes in an order that keeps an interrupted
run finishable by running it again: a user's opener markers before the events that name
their emails (and clicker markers before the clicks), an email's events before its derived items.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailpixel.ddb.batch import batch_get, batch_write
from mailpixel.ddb.store import EventStore, paged
from mailpixel.files import open_private
from mailpixel.logs import get_logger
from mailpixel.model.keys import (
    CLICK_KEY,
    Key,
    clicker_sk,
    email_pk,
    engaged_sk,
    event_key,
    meta_key,
    opener_sk,
    user_pk,
    webhook_open_sk,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = get_logger("ops.erasure")

EVENT_KEY = ("email_id", "open_key")
META_KEY = ("pk", "sk")


@dataclass(frozen=True)
class ErasureResult:
    events: int
    meta: int
    emails: int
    clicks: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def _unique(keys: Iterable[Key]) -> list[Key]:
    """BatchWriteItem refuses a request naming one key twice."""
    seen: dict[tuple[tuple[str, str], ...], Key] = {}
    for key in keys:
        seen.setdefault(tuple(sorted((k, v["S"]) for k, v in key.items())), key)
    return list(seen.values())


PAGE = 500


def _pages(items: Iterable[Any], size: int = PAGE) -> Iterator[list[Any]]:
    """`items` in lists of at most `size`, read lazily."""
    iterator = iter(items)
    while page := list(islice(iterator, size)):
        yield page


class Eraser:
    """Deletes by key with batched calls, retrying what DynamoDB leaves unprocessed."""

    def __init__(
        self, client: DynamoDBClient, events_table: str, meta_table: str, clicks_table: str | None = None
    ) -> None:
        self.client = client
        self.events_table = events_table
        self.meta_table = meta_table
        self.clicks_table = clicks_table

    def forget_user(self, user_id: str) -> ErasureResult:
        events = meta = 0
        emails: set[str] = set()
        for page in _pages(EventStore(self.client, self.events_table).iter_opens(user_id=user_id)):
            page_emails = {item["email_id"] for item in page}
            markers = [meta_key(email_pk(e), opener_sk(user_id)) for e in sorted(page_emails - emails)]
            meta += self._delete_existing(self.meta_table, META_KEY, markers)
            emails |= page_emails
            keys = [event_key(item["email_id"], item["open_key"]) for item in page]
            events += self._delete_existing(self.events_table, EVENT_KEY, keys)
        rows = self._clicks(user_id=user_id)
        clicked = {str(r["email_id"]) for r in rows}
        # The markers that name the user go before the clicks that lead to them.
        markers = [
            *(meta_key(email_pk(e), webhook_open_sk(user_id)) for e in sorted(emails | clicked)),
            *(meta_key(email_pk(e), engaged_sk(user_id)) for e in sorted(emails | clicked)),
            *(meta_key(email_pk(e), clicker_sk(user_id)) for e in sorted(clicked)),
        ]
        for page in _pages(markers):
            meta += self._delete_existing(self.meta_table, META_KEY, page)
        clicks = self._delete_clicks(rows)
        for page in _pages(self._meta_keys(user_pk(user_id))):
            meta += self._delete_existing(self.meta_table, META_KEY, page)
        result = ErasureResult(events=events, meta=meta, emails=len(emails | clicked), clicks=clicks)
        log.info("forgot_user", extra={"counts": result.to_json()})
        return result

    def forget_email(self, email_id: str) -> ErasureResult:
        events = meta = 0
        for page in _pages(EventStore(self.client, self.events_table).iter_opens(email_id=email_id)):
            keys = [event_key(item["email_id"], item["open_key"]) for item in page]
            events += self._delete_existing(self.events_table, EVENT_KEY, keys)
        clicks = self._delete_clicks(self._clicks(email_id=email_id))
        for page in _pages(self._meta_keys(email_pk(email_id))):
            meta += self._delete_existing(self.meta_table, META_KEY, page)
        result = ErasureResult(
            events=events, meta=meta, emails=1 if events or meta or clicks else 0, clicks=clicks
        )
        log.info("forgot_email", extra={"counts": result.to_json()})
        return result

    def _clicks(self, **who: str) -> list[dict[str, Any]]:
        """The clicks of `email_id=` or `user_id=`."""
        if not self.clicks_table:
            return []
        from mailpixel.ops.clicks_cli import iter_clicks

        try:
            return list(iter_clicks(self.client, self.clicks_table, **who))
        except self.client.exceptions.ResourceNotFoundException:
            log.warning("no_clicks_table", extra={"table": self.clicks_table})  # no table, no clicks
            return []

    def _delete_clicks(self, rows: Sequence[Mapping[str, Any]]) -> int:
        if not self.clicks_table:
            return 0
        keys = [{"email_id": {"S": r["email_id"]}, CLICK_KEY: {"S": r[CLICK_KEY]}} for r in rows]
        return self._delete_existing(self.clicks_table, ("email_id", CLICK_KEY), keys)

    def _meta_keys(self, pk: str) -> Iterator[Key]:
        kwargs: dict[str, Any] = {
            "TableName": self.meta_table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ProjectionExpression": "pk, sk",
            "ConsistentRead": True,
        }
        for item in paged(self.client.query, **kwargs):
            yield meta_key(item["pk"]["S"], item["sk"]["S"])

    def _delete_existing(self, table: str, names: Sequence[str], keys: Iterable[Key]) -> int:
        existing = self._existing(table, names, _unique(keys))
        batch_write(self.client, table, [{"DeleteRequest": {"Key": key}} for key in existing])
        return len(existing)

    def _existing(self, table: str, names: Sequence[str], keys: Sequence[Key]) -> list[Key]:
        """The keys that name an item now (consistent read), so counts mean something."""
        found = batch_get(self.client, table, keys, consistent=True, attributes=names)
        return [{name: {"S": item[name]["S"]} for name in names} for item in found]


def local_data_files(data_dir: Path) -> list[Path]:
    """Files under `MAILPIXEL_DATA_DIR` that may hold opens, clicks or webhook events (user ids)
    outside the tables: the fallback and its leftovers, what enrichment of opens
    (`stream_poller`) and of clicks (`start_local_enrichment`) gave up on, and the webhooks
    direct delivery could not deliver (`enrich.webhooks.outbox_for`)."""
    fallback = data_dir / "fallback"
    return [
        fallback / "pending.jsonl",
        fallback / "pending.replaying",
        fallback / "pending.jsonl.unreadable",
        data_dir / "enrich" / "failures.jsonl",
        data_dir / "enrich" / "click-failures.jsonl",
        data_dir / "webhooks" / "failed.jsonl",
    ]


def _mentions(line: str, field: str, value: str) -> bool:
    """Whether a JSON line (an open, or a stream record with its NewImage) is about `value`;
    a line that does not parse is judged by the value's JSON text appearing in it."""
    try:
        data = json.loads(line)
    except ValueError:
        return json.dumps(value)[1:-1] in line
    if not isinstance(data, dict):
        return False
    image = (data.get("dynamodb") or {}).get("NewImage") if isinstance(data.get("dynamodb"), dict) else None
    if isinstance(image, dict):
        return bool((image.get(field) or {}).get("S") == value)
    return data.get(field) == value


def forget_in_files(paths: Iterable[Path], field: str, value: str) -> int:
    """Remove the lines about one user (`field="user_id"`) or email from local JSON-lines files;
    returns how many went. Each file is rewritten aside and renamed over, so a crash leaves
    either the old file or the new one."""
    removed = 0
    for path in paths:
        if not path.exists():
            continue
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [line for line in lines if not line.strip() or not _mentions(line, field, value)]
        if len(kept) == len(lines):
            continue
        removed += len(lines) - len(kept)
        fresh = path.with_name(path.name + ".forget")
        with open_private(fresh, "w") as fh:
            fh.writelines(line + "\n" for line in kept)
        os.replace(fresh, path)
    if removed:
        log.info("forgot_local_lines", extra={"lines": removed})
    return removed
