"""Aggregates kept as events are enriched, so stats are one GetItem and a chart one Query.

Three kinds of write, each chosen for what it must guarantee:

1. **Counters** (`aggregate_updates`): unconditional `ADD`s, returned as TransactWriteItems
   entries that the enrichment step writes in the *same* transaction as the event's update
   with `attribute_not_exists(enriched_at)`. The transaction commits once per event, so each
   counter counts each event exactly once, whatever the stream replays.
2. **Unique openers** (`unique_opener_updates`): "count this user only if not seen before".
   A marker item `email#ID / opener#USER` is updated with a condition, together with the
   counter it guards, in a small transaction *of its own*: inside the enrichment transaction a
   failing marker condition would cancel the event's enrichment too. A cancelled unique
   transaction means "already counted", so running it again is harmless. A human open
   after a machine open (Apple's prefetch, then the person) counts for `unique_human_openers`
   through a second attribute on the same marker, in a second transaction.
3. **First and last open** (`bound_updates`): conditional `SET`s that only move a bound
   outwards (`first_open_at > :t`, `last_open_at < :t`). min and max are idempotent and
   commutative, so these need no exactly-once machinery at all: replays and out-of-order
   records leave them right. (`if_not_exists` would keep the first record *processed*, which
   after a retry or a reordered stream is not the first open.)

`write_followups` runs 2 and 3. The enrichment step calls it after its transaction, whether
that committed or was cancelled as "already enriched", so a crash between the two is repaired
by the stream's retry.

The items and their keys are listed in `mailpixel.model.keys`, the counters' names in
`mailpixel.model.counters`. Breakdown names come from a closed set (known clients, ISO country
codes, `[a-z0-9_]` reasons), so a stream of forged user agents cannot grow an item towards
DynamoDB's 400 KB limit.
"""

from __future__ import annotations

import calendar
import contextlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings
from mailpixel.ddb.update import update
from mailpixel.model.counters import CLIENT_PREFIX, COUNTRY_PREFIX, MACHINE_PREFIX, PROXY_PREFIX
from mailpixel.model.keys import (
    ALL_PK,
    STATS_SK,
    day_sk,
    email_pk,
    emails_on_day_pk,
    meta_key,
    opener_sk,
    user_pk,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

UNKNOWN = "unknown"
OTHER = "other"

# Client names kept as they are (matched case-insensitively as a substring of the parsed
# name, first match wins, so "Chrome Mobile" comes before "Chrome"); anything else is "Other".
KNOWN_CLIENTS = (
    "Apple Mail",
    "Outlook",
    "Thunderbird",
    "Gmail",
    "Yahoo Mail",
    "AOL Mail",
    "Samsung Email",
    "Proton Mail",
    "Fastmail",
    "Spark",
    "Airmail",
    "Edison Mail",
    "Superhuman",
    "Mailbird",
    "eM Client",
    "Postbox",
    "Evolution",
    "Windows Mail",
    "Samsung Internet",
    "Chrome Mobile",
    "Chrome",
    "Firefox",
    "Mobile Safari",
    "Safari",
    "Edge",
    "Opera",
)
_TOKEN = re.compile(r"[a-z0-9_]{1,32}")
_COUNTRY = re.compile(r"[A-Z]{2}")


def client_label(client: Any) -> str:
    """The client's name reduced to a closed set of labels."""
    name = client.get("name") if isinstance(client, Mapping) else None
    if not isinstance(name, str) or not name.strip():
        return UNKNOWN
    lowered = name.lower()
    for known in KNOWN_CLIENTS:
        if known.lower() in lowered:
            return known
    return "Other"


def _token(value: Any, default: str) -> str:
    text = str(value).strip().lower() if value is not None else ""
    return text if _TOKEN.fullmatch(text) else default


def is_human(event: Mapping[str, Any]) -> bool:
    return not bool(event.get("machine_open"))


def breakdown(event: Mapping[str, Any]) -> list[str]:
    """The breakdown counters this event adds one to."""
    if not is_human(event):
        return [MACHINE_PREFIX + _token(event.get("machine_reason"), OTHER)]
    names = [CLIENT_PREFIX + client_label(event.get("client"))]
    if event.get("proxy"):
        # The location is the proxy's, not the reader's: count the proxy instead.
        names.append(PROXY_PREFIX + _token(event.get("proxy"), OTHER))
    else:
        geo = event.get("geo")
        country = geo.get("country") if isinstance(geo, Mapping) else None
        code = country.strip().upper() if isinstance(country, str) else ""
        names.append(COUNTRY_PREFIX + (code if _COUNTRY.fullmatch(code) else UNKNOWN))
    return names


def open_day(event: Mapping[str, Any]) -> str:
    return str(event["opened_at"])[:10]


def _day_expiry(day: str, settings: Settings) -> int:
    """A day's counts live as long as that day's last events."""
    end = date.fromisoformat(day) + timedelta(days=1)
    return calendar.timegm(end.timetuple()) + settings.retention_seconds


def _expires(settings: Settings, now: float | None) -> dict[str, str]:
    """`expires_at` for an aggregate item: its last update plus the retention."""
    return {"N": str(int(now if now is not None else time.time()) + settings.retention_seconds)}


@dataclass(frozen=True)
class CounterItem:
    """One aggregate item an event counts in: ADD 1 to each of `adds`, SET each of `sets`."""

    key: dict[str, dict[str, str]]
    adds: tuple[str, ...]
    sets: Mapping[str, dict[str, Any]]


def counter_items(
    event: Mapping[str, Any], settings: Settings, *, now: float | None = None
) -> list[CounterItem]:
    """Every aggregate item one enriched event counts in, and what it adds to each."""
    email_id = str(event["email_id"])
    user_id = event.get("user_id") or None
    day = open_day(event)
    expires = _expires(settings, now)
    day_expires = {"N": str(_day_expiry(day, settings))}
    kind = "human_opens" if is_human(event) else "machine_opens"
    counters = ("opens", kind, *breakdown(event))
    date_value = {"S": day}
    email_value = {"S": email_id}
    items = [
        CounterItem(
            meta_key(email_pk(email_id), STATS_SK), counters, {"email_id": email_value, "expires_at": expires}
        ),
        CounterItem(
            meta_key(email_pk(email_id), day_sk(day)),
            counters,
            {"email_id": email_value, "date": date_value, "expires_at": day_expires},
        ),
        CounterItem(meta_key(ALL_PK, day_sk(day)), counters, {"date": date_value, "expires_at": day_expires}),
        CounterItem(
            meta_key(emails_on_day_pk(day), email_pk(email_id)),
            ("opens", kind),
            {"email_id": email_value, "date": date_value, "expires_at": day_expires},
        ),
    ]
    if user_id:
        items.append(
            CounterItem(
                meta_key(user_pk(str(user_id)), STATS_SK),
                ("opens", kind),
                {"user_id": {"S": str(user_id)}, "expires_at": expires},
            )
        )
    return items


def aggregate_updates(
    event: Mapping[str, Any], settings: Settings, *, now: float | None = None
) -> list[dict[str, Any]]:
    """Counter updates for one enriched event, for the enrichment's own transaction.

    Unconditional on purpose: exactly-once comes from the event's
    `attribute_not_exists(enriched_at)` condition in the same transaction.
    """
    return [
        {"Update": update(settings.meta_table, item.key, sets=item.sets, adds=item.adds)}
        for item in counter_items(event, settings, now=now)
    ]


def _marker_transaction(
    event: Mapping[str, Any], settings: Settings, marker_attr: str, counter: str, expires: dict[str, str]
) -> list[dict[str, Any]]:
    email_id, user_id = str(event["email_id"]), str(event["user_id"])
    marker = update(
        settings.meta_table,
        meta_key(email_pk(email_id), opener_sk(user_id)),
        sets={
            marker_attr: {"S": str(event["opened_at"])},
            "user_id": {"S": user_id},
            "email_id": {"S": email_id},
            "expires_at": expires,
        },
        condition="attribute_not_exists(#marker)",
        condition_names={"#marker": marker_attr},
    )
    return [
        {"Update": marker},
        {
            "Update": update(
                settings.meta_table,
                meta_key(email_pk(email_id), STATS_SK),
                sets={"email_id": {"S": email_id}, "expires_at": expires},
                adds=(counter,),
            )
        },
    ]


def unique_opener_updates(
    event: Mapping[str, Any], settings: Settings, *, now: float | None = None
) -> list[list[dict[str, Any]]]:
    """Transactions that count the event's user as a (human) opener of the email once.

    Each inner list is its OWN TransactWriteItems call; a cancellation whose reason is
    ConditionalCheckFailed means "already counted". Events without a user_id count nobody.
    """
    if not event.get("user_id"):
        return []
    expires = _expires(settings, now)
    transactions = [_marker_transaction(event, settings, "seen_at", "unique_openers", expires)]
    if is_human(event):
        transactions.append(
            _marker_transaction(event, settings, "human_seen_at", "unique_human_openers", expires)
        )
    return transactions


def _bound(
    table: str, key: dict[str, Any], attr: str, moment: str, sets: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    comparison = ">" if attr == "first_open_at" else "<"
    return update(
        table,
        key,
        sets={attr: {"S": moment}},
        set_if_missing=sets,
        condition=f"attribute_not_exists(#s0) OR #s0 {comparison} :s0",
    )


def bound_updates(
    event: Mapping[str, Any], settings: Settings, *, now: float | None = None
) -> list[dict[str, Any]]:
    """`update_item` arguments that move first/last open outwards; a failed condition means
    the bound already covers this event. Safe to repeat and to apply in any order."""
    email_id, moment = str(event["email_id"]), str(event["opened_at"])
    expires = _expires(settings, now)
    targets: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]] = [
        (meta_key(email_pk(email_id), STATS_SK), {"email_id": {"S": email_id}, "expires_at": expires})
    ]
    if event.get("user_id"):
        user_id = str(event["user_id"])
        user_sets = {"user_id": {"S": user_id}, "expires_at": expires}
        targets.append((meta_key(user_pk(user_id), STATS_SK), user_sets))
    return [
        _bound(settings.meta_table, key, attr, moment, sets)
        for key, sets in targets
        for attr in ("first_open_at", "last_open_at")
    ]


def _cancelled_by_condition(error: Exception) -> bool:
    reasons = getattr(error, "response", {}).get("CancellationReasons") or []
    return any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons)


def write_followups(
    client: DynamoDBClient, event: Mapping[str, Any], settings: Settings, *, now: float | None = None
) -> int:
    """Unique openers and first/last open for one enriched event. Idempotent.

    Call it after the enrichment transaction, also when that was cancelled as "already
    enriched". Returns how many unique-opener counts this call added (0 on a replay). Any
    other error raises, so the stream retries the record and this runs again.
    """
    added = 0
    for transaction in unique_opener_updates(event, settings, now=now):
        try:
            client.transact_write_items(TransactItems=transaction)  # type: ignore[arg-type]
            added += 1
        except client.exceptions.TransactionCanceledException as error:
            if not _cancelled_by_condition(error):
                raise
    for bound in bound_updates(event, settings, now=now):
        with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
            client.update_item(**bound)
    return added
