"""DynamoDB access for open events. Receives its client; never creates one at import time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpixel.ddb.codec import plain_item
from mailpixel.model.clicks import ClickEvent
from mailpixel.model.events import OpenEvent
from mailpixel.model.keys import CLICK_KEY, OPEN_KEY, USER_INDEX
from mailpixel.model.query import UPPER, BadQuery, time_bound

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def paged(call: Callable[..., Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every raw item of a Query or Scan (`call` is `client.query` or `client.scan`), page by page."""
    while True:
        page = call(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass
class Page:
    """One page of opens; `last_key` is DynamoDB's LastEvaluatedKey (None on the last page)."""

    items: list[dict[str, Any]]
    last_key: dict[str, Any] | None


class EventStore:
    """Writes open events (and clicks, into their own table) and reads opens back by email or user."""

    def __init__(self, client: DynamoDBClient, table: str, clicks_table: str | None = None) -> None:
        self.client = client
        self.table = table
        self.clicks_table = clicks_table

    def put_event(self, event: OpenEvent | ClickEvent) -> bool:
        """Write the event once. False when an item with its key already exists (a retry).

        Opens go to the events table, clicks to the clicks table: one entry point, so the
        recorder, the drain and replay handle both kinds the same way."""
        table, sort_key = self.table, OPEN_KEY
        if isinstance(event, ClickEvent):
            if not self.clicks_table:
                raise ValueError("no clicks table configured")
            table, sort_key = self.clicks_table, CLICK_KEY
        try:
            self.client.put_item(
                TableName=table,
                Item=event.to_item(),
                ConditionExpression=f"attribute_not_exists({sort_key})",
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
        start_key: dict[str, Any] | None = None,
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
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        response = self.client.query(**kwargs)
        items = [plain_item(item) for item in response.get("Items", [])]
        return Page(items=items, last_key=response.get("LastEvaluatedKey") or None)

    def iter_opens(self, **query: Any) -> Iterator[dict[str, Any]]:
        """Every matching open, following pages to the end."""
        start_key = None
        while True:
            page = self.query_opens(start_key=start_key, **query)
            yield from page.items
            start_key = page.last_key
            if not start_key:
                return
