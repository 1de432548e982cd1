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

Keys are streamed a page at a time and each page deleted before the next is read, so memory
stays bounded whatever the size (a campaign of a million opens holds one page of keys, plus
one email id per email the user opened). Each page goes in an order that keeps an interrupted
run finishable by running it again: a user's opener markers before the events that name
their emails, an email's events before its derived items.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from mailpixel.ddb.batch import batch_get, batch_write
from mailpixel.ddb.store import EventStore, paged
from mailpixel.logs import get_logger
from mailpixel.model.keys import Key, email_pk, event_key, meta_key, opener_sk, user_pk

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

    def __init__(self, client: DynamoDBClient, events_table: str, meta_table: str) -> None:
        self.client = client
        self.events_table = events_table
        self.meta_table = meta_table

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
        for page in _pages(self._meta_keys(user_pk(user_id))):
            meta += self._delete_existing(self.meta_table, META_KEY, page)
        result = ErasureResult(events=events, meta=meta, emails=len(emails))
        log.info("forgot_user", extra={"counts": result.to_json()})
        return result

    def forget_email(self, email_id: str) -> ErasureResult:
        events = meta = 0
        for page in _pages(EventStore(self.client, self.events_table).iter_opens(email_id=email_id)):
            keys = [event_key(item["email_id"], item["open_key"]) for item in page]
            events += self._delete_existing(self.events_table, EVENT_KEY, keys)
        for page in _pages(self._meta_keys(email_pk(email_id))):
            meta += self._delete_existing(self.meta_table, META_KEY, page)
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
            yield meta_key(item["pk"]["S"], item["sk"]["S"])

    def _delete_existing(self, table: str, names: Sequence[str], keys: Iterable[Key]) -> int:
        existing = self._existing(table, names, _unique(keys))
        batch_write(self.client, table, [{"DeleteRequest": {"Key": key}} for key in existing])
        return len(existing)

    def _existing(self, table: str, names: Sequence[str], keys: Sequence[Key]) -> list[Key]:
        """The keys that name an item now (consistent read), so counts mean something."""
        found = batch_get(self.client, table, keys, consistent=True, attributes=names)
        return [{name: {"S": item[name]["S"]} for name in names} for item in found]
