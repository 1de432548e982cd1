"""The enrichment write: one TransactWriteItems per event, exactly once.

The event's Update carries `attribute_not_exists(enriched_at)`, so a replayed or duplicated
stream record changes nothing, and the aggregates (`mailpixel.enrich.aggregates.aggregate_updates`)
ride in the same transaction, so they count each event once. `attribute_exists(open_key)` keeps
an event erased meanwhile from coming back as a stub made of enrichment fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings
from mailpixel.ddb.codec import to_attr
from mailpixel.ddb.retry import Backoff
from mailpixel.ddb.update import update
from mailpixel.enrich.aggregates import aggregate_updates, write_followups
from mailpixel.model.keys import event_key_of

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ENRICHED_FIELDS = ("client", "machine_open", "machine_reason", "proxy", "evidence", "geo", "enriched_at")
CONDITION = "attribute_exists(open_key) AND attribute_not_exists(enriched_at)"
# Every open of a campaign updates the same aggregate items, so concurrent transactions can be
# cancelled with TransactionConflict; they are retried with jitter before the record is reported.
CONFLICT_RETRY = Backoff(attempts=4, base_seconds=0.1, cap_seconds=0.8)


class EnrichmentWriter:
    def __init__(self, client: DynamoDBClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def update_entry(self, event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> dict[str, Any]:
        present = [name for name in ENRICHED_FIELDS if enrichment.get(name) is not None]
        sets = {name: to_attr(enrichment[name]) for name in present}
        return {
            "Update": update(
                self.settings.table,
                event_key_of(event),
                sets=sets,
                removes=("pending_ip",),
                condition=CONDITION,
            )
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
        for attempt in range(CONFLICT_RETRY.attempts):
            try:
                self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
                return True
            except self.client.exceptions.TransactionCanceledException as exc:
                codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
                if codes and codes[0] == "ConditionalCheckFailed":
                    return False
                if "TransactionConflict" not in codes or attempt == CONFLICT_RETRY.attempts - 1:
                    raise
            CONFLICT_RETRY.wait(attempt)
        raise AssertionError("unreachable")

    def _exists(self, event: Mapping[str, Any]) -> bool:
        found = self.client.get_item(
            TableName=self.settings.table,
            Key=event_key_of(event),
            ConsistentRead=True,
            ProjectionExpression="email_id",
        )
        return "Item" in found
