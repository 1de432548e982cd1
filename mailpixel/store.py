"""DynamoDB access for open events. Receives its client; never creates one at import time."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mailpixel.events import OpenEvent, iso_millis

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

USER_INDEX = "by_user"
# Sorts after every character of an ISO timestamp and after '#', so a bound such as
# "2026-11-24" + UPPER includes every open key that starts with that day.
UPPER = "~"


class BadQuery(ValueError):
    """A query parameter (date, cursor, limit) cannot be used; the message says why."""


def time_bound(value: str | None) -> str | None:
    """Normalise an ISO date or date-time to the prefix it covers in `open_key`.

    A date stays a date ("2026-11-24" covers the whole day); a date-time is converted to UTC
    with milliseconds. Naive date-times are taken as UTC.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadQuery(f"not an ISO-8601 date or date-time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso_millis(int(moment.timestamp() * 1000))


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, binascii.Error):
        raise BadQuery("cursor is not one this API issued") from None
    if not isinstance(key, dict) or not all(
        isinstance(v, dict) and len(v) == 1 and isinstance(next(iter(v.values())), str) for v in key.values()
    ):
        raise BadQuery("cursor is not one this API issued")
    return key


def plain(value: dict[str, Any]) -> Any:
    """Decode one DynamoDB attribute value into JSON-friendly Python."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        number = Decimal(inner)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "BOOL":
        return bool(inner)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: plain(v) for k, v in inner.items()}
    if kind == "L":
        return [plain(v) for v in inner]
    if kind in ("SS", "NS"):
        return sorted(inner)
    return inner


def paged(call: Callable[..., Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every raw item of a Query or Scan (`call` is `client.query` or `client.scan`), page by page."""
    while True:
        page = call(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def to_attr(value: Any) -> dict[str, Any]:
    """Python → low-level DynamoDB attribute value (the inverse of `mailpixel.store.plain`)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"NULL": True}
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attr(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def plain_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: plain(v) for k, v in item.items()}


@dataclass
class Page:
    items: list[dict[str, Any]]
    cursor: str | None


class EventStore:
    """Writes open events and reads them back by email or by user."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    def put_event(self, event: OpenEvent) -> bool:
        """Write the event once. False when an item with its key already exists (a retry)."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=event.to_item(),
                ConditionExpression="attribute_not_exists(open_key)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def query_opens(
        self,
        *,
        email_id: str | None = None,
        user_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:
        """One page of opens of an email (table) or a user (index), in time order."""
        if (email_id is None) == (user_id is None):
            raise BadQuery("give exactly one of email_id or user_id")
        key_name, key_value = ("email_id", email_id) if email_id is not None else ("user_id", user_id)
        low, high = time_bound(since), time_bound(until)
        condition = "#k = :k"
        values: dict[str, Any] = {":k": {"S": key_value}}
        if low and high:
            condition += " AND open_key BETWEEN :lo AND :hi"
            values[":lo"], values[":hi"] = {"S": low}, {"S": high + UPPER}
        elif low:
            condition += " AND open_key >= :lo"
            values[":lo"] = {"S": low}
        elif high:
            condition += " AND open_key <= :hi"
            values[":hi"] = {"S": high + UPPER}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#k": key_name},
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
        }
        if user_id is not None:
            kwargs["IndexName"] = USER_INDEX
        if limit is not None:
            if limit < 1:
                raise BadQuery("limit must be at least 1")
            kwargs["Limit"] = limit
        start = decode_cursor(cursor)
        if start:
            kwargs["ExclusiveStartKey"] = start
        response = self.client.query(**kwargs)
        items = [plain_item(item) for item in response.get("Items", [])]
        return Page(items=items, cursor=encode_cursor(response.get("LastEvaluatedKey")))

    def iter_opens(self, **query: Any) -> Iterator[dict[str, Any]]:
        """Every matching open, following pages to the end."""
        cursor = None
        while True:
            page = self.query_opens(cursor=cursor, **query)
            yield from page.items
            cursor = page.cursor
            if not cursor:
                return
