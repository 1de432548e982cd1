"""The read side of the aggregates: what the API, the dashboard and `mailpixel stats` show.

Each answer is a bounded number of requests: an email's stats one BatchGetItem (its counters
and its recipient counts) and one Query of its links' click counters, a per-day series
one Query (one per shard of `all` for every email together), a user's stats one Query of the
`by_user` index, the recent emails one Query per day plus one BatchGetItem per 100 emails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mailpixel.ddb.batch import batch_get
from mailpixel.ddb.codec import plain_item
from mailpixel.ddb.recipients import recipients_of
from mailpixel.ddb.store import paged
from mailpixel.model.counters import CLIENT_PREFIX, COUNTERS, COUNTRY_PREFIX, MACHINE_PREFIX, PROXY_PREFIX
from mailpixel.model.keys import (
    STATS_SK,
    USER_INDEX,
    all_pks,
    day_sk,
    email_pk,
    emails_on_day_pk,
    link_sk,
    meta_key,
    recipients_key,
)
from mailpixel.model.query import BadQuery, named_time_bound

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_DAYS = 400
_MAPS = {
    MACHINE_PREFIX: "machine_opens_by_reason",
    CLIENT_PREFIX: "clients",
    COUNTRY_PREFIX: "countries",
    PROXY_PREFIX: "proxies",
}


def shape(item: Mapping[str, Any]) -> dict[str, Any]:
    """A stored aggregate item as the API shows it: flat `prefix:name` counters become maps,
    keys and TTL bookkeeping are dropped, missing counters are 0."""
    result: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    result.update({field: {} for field in _MAPS.values()})
    for name, value in item.items():
        if name in ("pk", "sk", "expires_at"):
            continue
        prefix = next((p for p in _MAPS if name.startswith(p)), None)
        if prefix is None:
            result[name] = value
        else:
            result[_MAPS[prefix]][name[len(prefix) :]] = value
    return result


@dataclass(frozen=True)
class Rate:
    """A rate the stats show: `numerator / denominator`, both fields of the stats (a dotted name
    reads inside `recipients`), rounded to 4 places; None while the denominator is unknown or 0."""

    name: str
    numerator: str
    denominator: str

    @property
    def formula(self) -> str:
        return f"{self.numerator} / {self.denominator}"

    def value(self, stats: Mapping[str, Any]) -> float | None:
        numerator, denominator = _field(stats, self.numerator), _field(stats, self.denominator)
        return round(numerator / denominator, 4) if denominator else None


def _field(stats: Mapping[str, Any], name: str) -> int:
    value: Any = stats
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return int(value or 0)


# Written once: the API's `rates` (which `mailpixel stats` and the dashboard show) give these
# names and formulas; openapi.yaml describes each (a contract test checks the formulas match),
# and docs/stats/index.md, "Rates", says why each divides by what it does.
RATES = (
    Rate("open_rate", "unique_human_openers", "recipients.tracked_opens"),
    Rate("estimated_human_open_rate", "estimated_human_openers", "recipients.tracked_opens"),
    Rate("click_rate", "unique_human_clickers", "recipients.tracked_clicks"),
    Rate("click_to_open_rate", "unique_human_clickers", "unique_human_openers"),
    Rate("machine_open_share", "machine_opens", "opens"),
    Rate("machine_click_share", "machine_clicks", "clicks"),
)


def empty_email_stats(email_id: str) -> dict[str, Any]:
    stats = {
        **shape({}),
        "email_id": email_id,
        "unique_openers": 0,
        "unique_human_openers": 0,
        "estimated_human_openers": 0,
        "unique_clickers": 0,
        "unique_human_clickers": 0,
        "first_open_at": None,
        "first_human_open_at": None,
        "last_open_at": None,
        "recipients": None,
    }
    return with_rates(stats)


def with_rates(stats: dict[str, Any]) -> dict[str, Any]:
    """`rates`: each of RATES with its value and formula. Machine opens and scanner clicks are
    left out of every human figure, since they would only blur it. `click_to_open_rate` is also
    kept at the top level, where it was first shown."""
    stats["rates"] = {rate.name: {"value": rate.value(stats), "formula": rate.formula} for rate in RATES}
    stats["click_to_open_rate"] = stats["rates"]["click_to_open_rate"]["value"]
    return stats


def email_stats(client: DynamoDBClient, table: str, email_id: str) -> dict[str, Any]:
    """An email's aggregates and recipient counts in one BatchGetItem, and its links' click
    counts in one Query; zeros when nothing has been counted yet."""
    stats = _batch_stats(client, table, [email_id], every=True)[email_id]
    stats["links"] = email_links(client, table, email_id)
    return stats


def email_links(client: DynamoDBClient, table: str, email_id: str) -> list[dict[str, Any]]:
    """Clicks per destination of one email, most clicked by people first."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :link)",
        "ExpressionAttributeValues": {":pk": {"S": email_pk(email_id)}, ":link": {"S": link_sk("")}},
        "ProjectionExpression": "#u, clicks, human_clicks, machine_clicks",
        "ExpressionAttributeNames": {"#u": "url"},
    }
    links: list[dict[str, Any]] = [
        {
            "url": str(item.get("url", "")),
            **{name: int(item.get(name, 0)) for name in ("clicks", "human_clicks", "machine_clicks")},
        }
        for item in (plain_item(raw) for raw in paged(client.query, **kwargs))
    ]
    links.sort(key=lambda link: (-int(link["human_clicks"]), -int(link["clicks"]), str(link["url"])))
    return links


def user_stats(client: DynamoDBClient, table: str, user_id: str) -> dict[str, Any]:
    """A user's enriched opens, read from the `by_user` index of the events `table`.

    Nothing is written per user when opens are enriched (a per-user counter item would be one
    more write per open, and one more item per batch transaction); a user's opens are few, so
    one Query of their index partition, reading only the attributes counted, answers."""
    result: dict[str, Any] = {
        "user_id": user_id,
        "opens": 0,
        "human_opens": 0,
        "machine_opens": 0,
        "first_open_at": None,
        "last_open_at": None,
    }
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": USER_INDEX,
        "KeyConditionExpression": "user_id = :u",
        "ExpressionAttributeValues": {":u": {"S": user_id}},
        "ProjectionExpression": "opened_at, enriched_at, machine_open",
    }
    for raw in paged(client.query, **kwargs):
        item = plain_item(raw)
        if "enriched_at" not in item:
            continue
        result["opens"] += 1
        result["machine_opens" if item.get("machine_open") else "human_opens"] += 1
        moment = str(item["opened_at"])
        if result["first_open_at"] is None or moment < result["first_open_at"]:
            result["first_open_at"] = moment
        if result["last_open_at"] is None or moment > result["last_open_at"]:
            result["last_open_at"] = moment
    return result


def parse_day(value: str | None, name: str) -> date | None:
    """An ISO date, or the UTC day of an ISO date-time."""
    bound = named_time_bound(value, name)
    return date.fromisoformat(bound[:10]) if bound else None


def day_range(
    since: str | None, until: str | None, *, default_days: int = 30, today: date | None = None
) -> tuple[date, date]:
    """Inclusive [first, last] days; `until` defaults to today and `since` to `default_days` before."""
    last = parse_day(until, "until") or (today or datetime.now(UTC).date())
    try:
        first = parse_day(since, "since") or last - timedelta(days=default_days - 1)
    except OverflowError:  # `until` within default_days of year 1
        raise BadQuery(f"until ({last}) leaves no {default_days}-day range before it; give since") from None
    if first > last:
        raise BadQuery(f"since ({first}) is after until ({last})")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadQuery(f"a range covers at most {MAX_DAYS} days")
    return first, last


def _days(first: date, last: date) -> Iterable[date]:
    return (first + timedelta(days=n) for n in range((last - first).days + 1))


def daily(
    client: DynamoDBClient, table: str, email_id: str | None, first: date, last: date
) -> list[dict[str, Any]]:
    """Per-day counts of one email (or of all emails: the sum of the `all` shards), one entry
    per day, zeros included."""
    pks = [email_pk(email_id)] if email_id is not None else all_pks()
    found: dict[str, list[dict[str, Any]]] = {}
    for pk in pks:
        kwargs: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": {"S": pk},
                ":lo": {"S": day_sk(first.isoformat())},
                ":hi": {"S": day_sk(last.isoformat())},
            },
        }
        # One page for any range within MAX_DAYS unless a day has thousands of clients.
        for item in paged(client.query, **kwargs):
            row = shape(plain_item(item))
            found.setdefault(str(row["date"]), []).append(row)
    result = []
    for day in _days(first, last):
        row = {**totals(found.get(day.isoformat(), [])), "date": day.isoformat()}
        result.append(row)
    return result


def totals(days: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum a per-day series: the counters and each breakdown map."""
    result = shape({})
    for row in days:
        for name in COUNTERS:
            result[name] += int(row.get(name, 0))
        for field in _MAPS.values():
            for key, value in (row.get(field) or {}).items():
                result[field][key] = result[field].get(key, 0) + int(value)
    return result


def recent_emails(
    client: DynamoDBClient, table: str, *, days: int = 7, limit: int = 50, today: date | None = None
) -> list[dict[str, Any]]:
    """Emails opened in the last `days` days, most recently opened first, with their stats."""
    if not 1 <= days <= MAX_DAYS:
        raise BadQuery(f"days must be between 1 and {MAX_DAYS}")
    if not 1 <= limit <= 1000:
        raise BadQuery("limit must be between 1 and 1000")
    last = today or datetime.now(UTC).date()
    seen: dict[str, str] = {}
    for day in _days(last - timedelta(days=days - 1), last):
        kwargs: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": emails_on_day_pk(day.isoformat())}},
            "ProjectionExpression": "email_id",
        }
        for item in paged(client.query, **kwargs):
            seen[item["email_id"]["S"]] = day.isoformat()
    stats = _batch_stats(client, table, list(seen))
    rows = [stats[email_id] for email_id in seen if email_id in stats]
    rows.sort(key=lambda row: (str(row.get("last_open_at") or ""), row["email_id"]), reverse=True)
    return rows[:limit]


def _batch_stats(
    client: DynamoDBClient, table: str, email_ids: list[str], *, every: bool = False
) -> dict[str, dict[str, Any]]:
    """Stats of each email with a stats item (`every`: of each email, zeros if need be), with
    its recipient counts and rates, from one strongly consistent read of both items."""
    keys = [key for e in email_ids for key in (meta_key(email_pk(e), STATS_SK), recipients_key(e))]
    counted: dict[str, dict[str, Any]] = {}
    recipients: dict[str, dict[str, int] | None] = {}
    for item in batch_get(client, table, keys, consistent=True):
        row = plain_item(item)
        email_id = email_pk.value_of(str(row["pk"]))
        if row["sk"] == STATS_SK:
            counted[email_id] = shape(row)
        else:
            recipients[email_id] = recipients_of(row)
    found: dict[str, dict[str, Any]] = {}
    for email_id in email_ids:
        if email_id in counted or every:
            stats = {**empty_email_stats(email_id), **counted.get(email_id, {})}
            stats["recipients"] = recipients.get(email_id)
            found[email_id] = with_rates(stats)
    return found
