"""Every key format of both tables, written once.

Events table (`serverless.yml` EventsTable): partition `email_id`, sort `open_key` =
`<opened_at>#<request_id>` (time first for ranges and order, the request id for uniqueness),
and the `by_user` index (`user_id`, `open_key`).

Meta table (MetaTable), `pk` / `sk`:
- `email#ID / stats`: an email's totals, unique openers, first/last open, breakdowns.
- `email#ID / day#YYYY-MM-DD` and `all / day#YYYY-MM-DD`: the same counters per day.
- `emails#YYYY-MM-DD / email#ID`: which emails were opened that day (lists recent emails).
- `user#ID / stats`: a user's opens and first/last open.
- `email#ID / opener#USER`: the unique-opener marker.
- `geo#IP / geo`: the shared geolocation cache (with `MAILPIXEL_IP_STORAGE=truncated|none`, IP
  is the address's /24 or /48 network, never the full address).

Clicks table (ClicksTable): partition `email_id`, sort `click_key` = `<clicked_at>#<request_id>`
(the same shape as `open_key`), and its own `by_user` index (`user_id`, `click_key`). Clicks
live apart so that a query of the events table returns opens only.
"""

from __future__ import annotations

from typing import Any

USER_INDEX = "by_user"
OPEN_KEY = "open_key"
CLICK_KEY = "click_key"
OPEN_KEY_SEPARATOR = "#"

STATS_SK = "stats"
ALL_PK = "all"
GEO_SK = "geo"
_EMAIL = "email#"
_USER = "user#"
_EMAILS_ON_DAY = "emails#"
_DAY = "day#"
_OPENER = "opener#"
_GEO = "geo#"

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
