"""How many recipients an email went to, and how many of them were tracked: the rates' denominators.

One meta item per email, `email#ID / recipients` (`model.keys.recipients_key`), holding `sent`,
`tracked_opens` (recipients whose copy carries the pixel) and `tracked_clicks` (whose links were
rewritten). Opens and clicks never tell how many people *could* have opened: only the sender
knows, through `instrument`, `mailpixel recipients` or `PUT /api/emails/{id}/recipients`.

A second record *replaces* the first. Every way of recording is then safe to repeat: a retried
API call, a re-run of `instrument` on the same list, an ESP webhook delivered twice all leave
the same numbers, where adding would count the list once per attempt. A sender who sends one
email in several batches records the running total after each.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings
from mailpixel.ddb.codec import to_attr
from mailpixel.model.events import TOO_LONG, id_fits, iso_millis
from mailpixel.model.keys import recipients_key
from mailpixel.model.query import BadQuery

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

FIELDS = ("sent", "tracked_opens", "tracked_clicks")
# Beyond any real list; keeps a typo (or a forged body) from making every rate 0.0000.
MAX_RECIPIENTS = 1_000_000_000


@dataclass(frozen=True)
class MetaTable:
    """The meta table as recipients are written to it: the client, its name, how long items live."""

    client: DynamoDBClient
    name: str
    retention_seconds: int

    @classmethod
    def of(cls, client: DynamoDBClient, settings: Settings) -> MetaTable:
        return cls(client, settings.meta_table, settings.retention_seconds)


def checked_counts(sent: Any, tracked_opens: Any, tracked_clicks: Any) -> dict[str, int]:
    """The three counts as whole numbers with 0 <= tracked <= sent <= MAX_RECIPIENTS, or BadQuery
    saying which one is wrong."""
    counts: dict[str, int] = {}
    for name, value in zip(FIELDS, (sent, tracked_opens, tracked_clicks), strict=True):
        # bool is an int to Python, never a count to a sender.
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadQuery(f"{name} must be a whole number, got {str(value)[:40]!r}")
        if not 0 <= value <= MAX_RECIPIENTS:
            raise BadQuery(f"{name} must be between 0 and {MAX_RECIPIENTS}, got {value}")
        counts[name] = value
    for name in FIELDS[1:]:
        if counts[name] > counts["sent"]:
            raise BadQuery(f"{name} ({counts[name]}) cannot exceed sent ({counts['sent']})")
    return counts


def record_recipients(
    table: MetaTable, email_id: str, sent: int, tracked_opens: int, tracked_clicks: int
) -> dict[str, Any]:
    """Store the email's recipient counts, replacing any recorded before; returns what is stored."""
    if not id_fits(email_id):
        raise BadQuery(f"email_id {TOO_LONG}, so no open can have it")
    counts = checked_counts(sent, tracked_opens, tracked_clicks)
    now_ms = int(time.time() * 1000)
    recorded: dict[str, Any] = {"email_id": email_id, **counts, "recorded_at": iso_millis(now_ms)}
    item: dict[str, Any] = {
        **recipients_key(email_id),
        **{name: to_attr(value) for name, value in recorded.items()},
        # As long as the opens it is the denominator of.
        "expires_at": {"N": str(now_ms // 1000 + table.retention_seconds)},
    }
    table.client.put_item(TableName=table.name, Item=item)
    return recorded


def recipients_of(item: Mapping[str, Any] | None) -> dict[str, int] | None:
    """The counts of a stored recipients item (plain values), None when none was recorded."""
    if not item:
        return None
    return {name: int(item.get(name) or 0) for name in FIELDS}
