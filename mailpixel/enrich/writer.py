"""The enrichment write: one TransactWriteItems per event, exactly once.

The event's Update carries `attribute_not_exists(enriched_at)`, so a replayed or duplicated
stream record changes nothing, and the aggregates (`mailpixel.aggregates.aggregate_updates`)
ride in the same transaction, so they count each event once. `attribute_exists(open_key)` keeps
an event erased meanwhile from coming back as a stub made of enrichment fields.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mailpixel.aggregates import aggregate_updates, write_followups
from mailpixel.config import Settings
from mailpixel.store import to_attr

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ENRICHED_FIELDS = ("client", "machine_open", "machine_reason", "proxy", "geo", "enriched_at")
CONDITION = "attribute_exists(open_key) AND attribute_not_exists(enriched_at)"
# Every open of a campaign updates the same aggregate items, so concurrent transactions can be
# cancelled with TransactionConflict; they are retried with jitter before the record is reported.
CONFLICT_RETRIES = 4


class EnrichmentWriter:
    def __init__(self, client: DynamoDBClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def update_entry(self, event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> dict[str, Any]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        for index, name in enumerate(ENRICHED_FIELDS):
            value = enrichment.get(name)
            if value is None:
                continue
            names[f"#f{index}"] = name
            values[f":v{index}"] = to_attr(value)
            sets.append(f"#f{index} = :v{index}")
        return {
            "Update": {
                "TableName": self.settings.table,
                "Key": {"email_id": {"S": event["email_id"]}, "open_key": {"S": event["open_key"]}},
                "UpdateExpression": f"SET {', '.join(sets)} REMOVE pending_ip",
                "ConditionExpression": CONDITION,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def write(self, event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> bool:
        """Write once. True when written now; False when it was already enriched (or erased).

        Then the idempotent follow-ups (unique openers, first/last open), also after "already
        enriched", since a crash may have come between the two; never for an erased event,
        which would bring its user's markers back.
        """
        enriched = {k: v for k, v in event.items() if k != "pending_ip"}
        enriched.update({k: v for k, v in enrichment.items() if v is not None})
        items = [self.update_entry(event, enrichment), *aggregate_updates(enriched, self.settings)]
        committed = self._transact(items)
        if not committed and not self._exists(event):
            return False
        write_followups(self.client, enriched, self.settings)
        return committed

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        for attempt in range(CONFLICT_RETRIES):
            try:
                self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
                return True
            except self.client.exceptions.TransactionCanceledException as exc:
                codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
                if codes and codes[0] == "ConditionalCheckFailed":
                    return False
                if "TransactionConflict" not in codes or attempt == CONFLICT_RETRIES - 1:
                    raise
            time.sleep(random.uniform(0.02, 0.1) * 2**attempt)  # noqa: S311 - jitter  # nosec B311
        raise AssertionError("unreachable")

    def _exists(self, event: Mapping[str, Any]) -> bool:
        key = {"email_id": {"S": event["email_id"]}, "open_key": {"S": event["open_key"]}}
        found = self.client.get_item(
            TableName=self.settings.table, Key=key, ConsistentRead=True, ProjectionExpression="email_id"
        )
        return "Item" in found
