"""Every key format of both tables, written once.

Events table (`serverless.yml` EventsTable): partition `email_id`, sort `open_key` =
`<opened_at>#<request_id>` (time first for ranges and order, the request id for uniqueness),
the `by_user` index (`user_id`, `open_key`), and the sparse `unenriched` index (`unenriched`,
`open_key`, keys only): the pixel writes `unenriched` = a shard number taken from the request
id, enrichment removes it, so the index holds exactly the events still to enrich, spread over
UNENRICHED_SHARDS partitions so a campaign's writes to it never meet in one.

Meta table (MetaTable), `pk` / `sk`:
- `email#ID / stats`: an email's totals (opens and clicks), unique openers and clickers,
  first/last open and first human open, breakdowns.
- `email#ID / day#YYYY-MM-DD`: the same counters per day.
- `all#N / day#YYYY-MM-DD` (N in 0..ALL_SHARDS-1): every email's counters per day, split over
  shards so no single item takes every batch of the deployment (`all / day#…`: before shards).
- `emails#YYYY-MM-DD / email#ID`: which emails were opened that day (lists recent emails).
- `user#ID / stats`: a user's opens and first/last open (no longer written: user stats are read
  from the `by_user` index).
- `email#ID / opener#USER`: the unique-opener marker.
- `email#ID / webhook_open#USER`: the first human open by USER was sent to the webhook.
- `email#ID / clicker#USER`: the unique-clicker marker.
- `email#ID / link#HASH`: one destination's click counters (`url`, `clicks`, `human_clicks`).
- `email#ID / engaged#USER`: USER opened or clicked the email as a person (the union behind
  `estimated_human_openers`: a click implies an open).
- `email#ID / recipients`: how many recipients the email was sent to and how many of them were
  tracked for opens and for clicks (`mailpixel.ddb.recipients`), the denominators of the rates.
- `batch#TOKEN / batch`: the idempotency marker of one enrichment batch's counter transaction.
- `geo#IP / geo`: the shared geolocation cache (with `MAILPIXEL_IP_STORAGE=truncated|none`, IP
  is the address's /24 or /48 network, never the full address).

Clicks table (ClicksTable): partition `email_id`, sort `click_key` = `<clicked_at>#<request_id>`
(the same shape as `open_key`), and its own `by_user` index (`user_id`, `click_key`). Clicks
live apart so that a query of the events table returns opens only.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
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
RECIPIENTS_SK = "recipients"
GEO_SK = "geo"

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


@dataclass(frozen=True)
class Prefix:
    """One meta-table key format `<prefix><value>`: makes the key and reads the value back."""

    text: str

    def __call__(self, value: str) -> str:
        return self.text + value

    def value_of(self, key: str) -> str:
        return key.removeprefix(self.text)


# An email's partition: its stats, day counters, opener and webhook markers.
email_pk = Prefix("email#")
day_sk = Prefix("day#")
emails_on_day_pk = Prefix("emails#")
# `email#ID / opener#USER`: USER is one of the email's unique openers.
opener_sk = Prefix("opener#")
# `email#ID / webhook_open#USER`: the first human open of the email by USER was sent.
webhook_open_sk = Prefix("webhook_open#")
# `email#ID / clicker#USER`: USER is one of the email's unique clickers.
clicker_sk = Prefix("clicker#")
# `email#ID / link#HASH`: the clicks on one destination of the email (`link_sk_of`).
link_sk = Prefix("link#")
# `email#ID / engaged#USER`: USER opened or clicked the email as a person (opens and clicks
# both set it; the first event to do so is named, so the user is counted once).
engaged_sk = Prefix("engaged#")
user_pk = Prefix("user#")
batch_pk = Prefix("batch#")
geo_pk = Prefix("geo#")


def all_pk(shard: int) -> str:
    """One shard of the deployment-wide per-day counters."""
    return f"{ALL_PK}#{shard}"


def all_pks() -> list[str]:
    """Every partition holding deployment-wide day counters, the pre-shard one included."""
    return [ALL_PK, *(all_pk(n) for n in range(ALL_SHARDS))]


def link_sk_of(url: str) -> str:
    """The sort key of a destination's click counters: a hash, since a URL can be longer than
    a sort key may be (1024 bytes); the item keeps the URL itself in `url`."""
    return link_sk(hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:24])


def batch_key(token: str) -> Key:
    return meta_key(batch_pk(token), BATCH_SK)


def recipients_key(email_id: str) -> Key:
    return meta_key(email_pk(email_id), RECIPIENTS_SK)


def geo_key(ip: str) -> Key:
    return meta_key(geo_pk(ip), GEO_SK)


def unenriched_shard(request_id: str) -> str:
    """The `unenriched` index partition of an event: stable per request, spread evenly."""
    return str(zlib.crc32(request_id.encode()) % UNENRICHED_SHARDS)
