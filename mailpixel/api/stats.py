"""The read side of the aggregates: what the API, the dashboard and `mailpixel stats` show.

Each answer is a bounded number of requests: an email's stats one GetItem (and one Query of
its links' click counters), a per-day series
one Query (one per shard of `all` for every email together), a user's stats one Query of the
`by_user` index, the recent emails one Query per day plus one BatchGetItem per 100 emails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mailpixel.ddb.batch import batch_get
from mailpixel.ddb.codec import plain_item
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


def empty_email_stats(email_id: str) -> dict[str, Any]:
    return {
        **shape({}),
        "email_id": email_id,
        "unique_openers": 0,
        "unique_human_openers": 0,
        "unique_clickers": 0,
        "unique_human_clickers": 0,
        "first_open_at": None,
        "first_human_open_at": None,
        "last_open_at": None,
        "click_to_open_rate": None,
    }


def with_rates(stats: dict[str, Any]) -> dict[str, Any]:
    """`click_to_open_rate`: unique human clickers over unique human openers (machine opens and
    scanner clicks would only blur it), None before the first human open. It can pass 1 when
    people click in a client that blocked the images."""
    openers = int(stats.get("unique_human_openers") or 0)
    clickers = int(stats.get("unique_human_clickers") or 0)
    stats["click_to_open_rate"] = round(clickers / openers, 4) if openers else None
    return stats


def email_stats(client: DynamoDBClient, table: str, email_id: str) -> dict[str, Any]:
    """An email's aggregates in one GetItem, and its links' click counts in one Query; zeros
    when nothing has been counted yet."""
    response = client.get_item(
        TableName=table, Key=meta_key(email_pk(email_id), STATS_SK), ConsistentRead=True
    )
    stats = empty_email_stats(email_id)
    if "Item" in response:
        stats.update(shape(plain_item(response["Item"])))
    stats["links"] = email_links(client, table, email_id)
    return with_rates(stats)


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


def _batch_stats(client: DynamoDBClient, table: str, email_ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for item in batch_get(client, table, [meta_key(email_pk(e), STATS_SK) for e in email_ids]):
        row = plain_item(item)
        email_id = str(row["email_id"])
        found[email_id] = with_rates({**empty_email_stats(email_id), **shape(row)})
    return found
