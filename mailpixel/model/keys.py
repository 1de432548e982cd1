"""Every key format of both tables, written once.

Events table (`serverless.yml` EventsTable): partition `email_id`, sort `open_key` =
`<opened_at>#<request_id>` (time first for ranges and order, the request id for uniqueness),
the `by_user` index (`user_id`, `open_key`), and the sparse `unenriched` index (`unenriched`,
`open_key`, keys only): the pixel writes `unenriched` = a shard number taken from the request
id, enrichment removes it, so the index holds exactly the events still to enrich, spread over
UNENRICHED_SHARDS partitions so a campaign's writes to it never meet in one.

Meta table (MetaTable), `pk` / `sk`:
- `email#ID / stats`: an email's totals, unique openers, first/last open, breakdowns.
- `email#ID / day#YYYY-MM-DD`: the same counters per day.
- `all#N / day#YYYY-MM-DD` (N in 0..ALL_SHARDS-1): every email's counters per day, split over
  shards so no single item takes every batch of the deployment (`all / day#…`: before shards).
- `emails#YYYY-MM-DD / email#ID`: which emails were opened that day (lists recent emails).
- `user#ID / stats`: a user's opens and first/last open (no longer written: user stats are read
  from the `by_user` index).
- `email#ID / opener#USER`: the unique-opener marker.
- `batch#TOKEN / batch`: the idempotency marker of one enrichment batch's counter transaction.
- `geo#IP / geo`: the shared geolocation cache (with `MAILPIXEL_IP_STORAGE=truncated|none`, IP
  is the address's /24 or /48 network, never the full address).

Clicks table (ClicksTable): partition `email_id`, sort `click_key` = `<clicked_at>#<request_id>`
(the same shape as `open_key`), and its own `by_user` index (`user_id`, `click_key`). Clicks
live apart so that a query of the events table returns opens only.
"""

from __future__ import annotations

import zlib
from typing import Any

USER_INDEX = "by_user"
OPEN_KEY = "open_key"
CLICK_KEY = "click_key"
UNENRICHED_INDEX = "unenriched"
UNENRICHED = "unenriched"
UNENRICHED_SHARDS = 16
OPEN_KEY_SEPARATOR = "#"

STATS_SK = "stats"
ALL_PK = "all"
ALL_SHARDS = 8
BATCH_SK = "batch"
GEO_SK = "geo"
_EMAIL = "email#"
_USER = "user#"
_EMAILS_ON_DAY = "emails#"
_DAY = "day#"
_OPENER = "opener#"
_GEO = "geo#"
_BATCH = "batch#"

Key = dict[str, dict[str, str]]


def open_key(opened_at: str, request_id: str) -> str:
    return f"{opened_at}{OPEN_KEY_SEPARATOR}{request_id}"


def click_key(clicked_at: str, request_id: str) -> str:
    return open_key(clicked_at, request_id)


def event_key(email_id: str, open_key_value: str) -> Key:
    """The events table's primary key of one open."""
    return {"email_id": {"S": email_id}, "open_key": {"S": open_key_value}}


def event_key_of(event: Any) -> Key:
    """The primary key of an open given as a mapping with `email_id` and `open_key`."""
    return event_key(str(event["email_id"]), str(event["open_key"]))


def meta_key(pk: str, sk: str) -> Key:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def email_pk(email_id: str) -> str:
    return f"{_EMAIL}{email_id}"


def user_pk(user_id: str) -> str:
    return f"{_USER}{user_id}"


def emails_on_day_pk(day: str) -> str:
    return f"{_EMAILS_ON_DAY}{day}"


def day_sk(day: str) -> str:
    return f"{_DAY}{day}"


def opener_sk(user_id: str) -> str:
    return f"{_OPENER}{user_id}"


def webhook_open_sk(user_id: str) -> str:
    """`email#ID / webhook_open#USER`: the first human open of the email by USER was sent."""
    return f"webhook_open#{user_id}"


def geo_key(ip: str) -> Key:
    return meta_key(f"{_GEO}{ip}", GEO_SK)


def ip_of_geo_pk(pk: str) -> str:
    return pk[len(_GEO) :]


def all_pk(shard: int) -> str:
    """One shard of the deployment-wide per-day counters."""
    return f"{ALL_PK}#{shard}"


def all_pks() -> list[str]:
    """Every partition holding deployment-wide day counters, the pre-shard one included."""
    return [ALL_PK, *(all_pk(n) for n in range(ALL_SHARDS))]


def batch_key(token: str) -> Key:
    return meta_key(f"{_BATCH}{token}", BATCH_SK)


def unenriched_shard(request_id: str) -> str:
    """The `unenriched` index partition of an event: stable per request, spread evenly."""
    return str(zlib.crc32(request_id.encode()) % UNENRICHED_SHARDS)
