"""Erasure: delete every item about one user, or about one email (`mailpixel forget`).

What a user's data is, by the data model's contract:
- their open events, found through the `by_user` index (their email ids are not known up
  front, and the index is the only way to reach events of emails nobody names);
- meta items under `user#<user_id>` (per-user stats and anything else kept per user);
- for each email they opened, the unique-opener marker `email#<email_id>` / `opener#<user_id>`.
Per-email and per-day counts are anonymous numbers and stay as they are.

An email's data is its events (the table's partition) and every meta item under
`email#<email_id>` (stats, day counts, opener markers).

Counts are of items that existed: keys are read back with a consistent read before deletion,
so a second run reports zero even while the index still shows entries it has not caught up on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mailpixel.logs import get_logger
from mailpixel.store import EventStore, paged

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = get_logger("erasure")

EVENT_KEY = ("email_id", "open_key")
META_KEY = ("pk", "sk")
BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
MAX_ATTEMPTS = 8

Key = dict[str, dict[str, str]]


class ErasureIncomplete(RuntimeError):
    """DynamoDB kept returning unprocessed items; running the command again finishes the job."""


@dataclass(frozen=True)
class ErasureResult:
    events: int
    meta: int
    emails: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def _key(names: Sequence[str], values: Sequence[str]) -> Key:
    return {name: {"S": value} for name, value in zip(names, values, strict=True)}


def _unique(keys: Iterable[Key]) -> list[Key]:
    """BatchWriteItem refuses a request naming one key twice."""
    seen: dict[tuple[tuple[str, str], ...], Key] = {}
    for key in keys:
        seen.setdefault(tuple(sorted((k, v["S"]) for k, v in key.items())), key)
    return list(seen.values())


def _chunks(items: Sequence[Key], size: int) -> Iterator[Sequence[Key]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt))


class Eraser:
    """Deletes by key with batched calls, retrying what DynamoDB leaves unprocessed."""

    def __init__(self, client: DynamoDBClient, events_table: str, meta_table: str) -> None:
        self.client = client
        self.events_table = events_table
        self.meta_table = meta_table

    def forget_user(self, user_id: str) -> ErasureResult:
        opens = EventStore(self.client, self.events_table).iter_opens(user_id=user_id)
        event_keys: list[Key] = []
        emails: set[str] = set()
        for item in opens:
            event_keys.append(_key(EVENT_KEY, (item["email_id"], item["open_key"])))
            emails.add(item["email_id"])
        events = self._delete_existing(self.events_table, EVENT_KEY, event_keys)
        meta_keys = list(self._meta_keys(f"user#{user_id}"))
        meta_keys += [_key(META_KEY, (f"email#{email}", f"opener#{user_id}")) for email in sorted(emails)]
        meta = self._delete_existing(self.meta_table, META_KEY, meta_keys)
        result = ErasureResult(events=events, meta=meta, emails=len(emails))
        log.info("forgot_user", extra={"counts": result.to_json()})
        return result

    def forget_email(self, email_id: str) -> ErasureResult:
        opens = EventStore(self.client, self.events_table).iter_opens(email_id=email_id)
        event_keys = [_key(EVENT_KEY, (item["email_id"], item["open_key"])) for item in opens]
        events = self._delete_existing(self.events_table, EVENT_KEY, event_keys)
        meta = self._delete_existing(self.meta_table, META_KEY, list(self._meta_keys(f"email#{email_id}")))
        result = ErasureResult(events=events, meta=meta, emails=1 if events or meta else 0)
        log.info("forgot_email", extra={"counts": result.to_json()})
        return result

    def _meta_keys(self, pk: str) -> Iterator[Key]:
        kwargs: dict[str, Any] = {
            "TableName": self.meta_table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ProjectionExpression": "pk, sk",
            "ConsistentRead": True,
        }
        for item in paged(self.client.query, **kwargs):
            yield _key(META_KEY, (item["pk"]["S"], item["sk"]["S"]))

    def _delete_existing(self, table: str, names: Sequence[str], keys: Iterable[Key]) -> int:
        existing = self._existing(table, names, _unique(keys))
        for chunk in _chunks(existing, BATCH_WRITE_LIMIT):
            self._batch_delete(table, chunk)
        return len(existing)

    def _existing(self, table: str, names: Sequence[str], keys: Sequence[Key]) -> list[Key]:
        """The keys that name an item now (consistent read), so counts mean something."""
        found: list[Key] = []
        projection = {f"#k{i}": name for i, name in enumerate(names)}
        for chunk in _chunks(keys, BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                table: {
                    "Keys": list(chunk),
                    "ConsistentRead": True,
                    "ProjectionExpression": ", ".join(projection),
                    "ExpressionAttributeNames": projection,
                }
            }
            for attempt in range(MAX_ATTEMPTS):
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(table, []):
                    found.append(_key(names, [item[name]["S"] for name in names]))
                request = dict(response.get("UnprocessedKeys") or {})
                if not request:
                    break
                _backoff(attempt)
            else:
                raise ErasureIncomplete(f"{table}: reads still unprocessed after {MAX_ATTEMPTS} attempts")
        return found

    def _batch_delete(self, table: str, keys: Sequence[Key]) -> None:
        request: dict[str, Any] = {table: [{"DeleteRequest": {"Key": key}} for key in keys]}
        for attempt in range(MAX_ATTEMPTS):
            response = self.client.batch_write_item(RequestItems=request)
            request = dict(response.get("UnprocessedItems") or {})
            if not request:
                return
            _backoff(attempt)
        raise ErasureIncomplete(f"{table}: deletes still unprocessed after {MAX_ATTEMPTS} attempts")
