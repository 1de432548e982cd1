"""Aggregates kept as events are enriched, so stats are one GetItem and a chart one Query.

Everything here is written per *batch* of stream records, never per open on a shared item
(`writer.py` runs the steps; docs/scale.md has the numbers):

1. **Counters** (`sum_counters`, `counter_transaction`): the batch's events are summed per
   aggregate item, and each item gets one `ADD` of the sums, all in one TransactWriteItems with
   a `Put` of the batch's idempotency marker `batch#TOKEN` (`attribute_not_exists`). The events
   counted carry `counted_by = TOKEN`; an event whose token has no marker was claimed by an
   attempt that died before its transaction, and is counted again under a new token.
2. **Unique openers** (`opener_update`): the marker `email#ID / opener#USER` remembers *which
   event* first made the user an opener (`seen_by`, and `human_seen_by` for a person), set with
   `if_not_exists`. A batch adds one unique opener when the marker names an event this batch
   counts, so the opener is counted exactly when (and as often as) that event is: once.
   The marker `email#ID / engaged#USER` does the same for the union of human openers and human
   clickers (`engaged_update`): opens and clicks both set it, so a person who opened and
   clicked adds one `estimated_human_openers`, whichever came first.
3. **First and last open** (`bound_updates`): conditional `SET`s that only move a bound
   outwards, once per email per batch. min and max are idempotent and commutative, so replays
   and out-of-order records leave them right.

Per-user stats are read from the `by_user` index (`api/stats.py`), so a batch writes nothing
per user but the opener marker. The deployment-wide day counters are split over `ALL_SHARDS`
items, one chosen per transaction.

The items and their keys are listed in `mailpixel.model.keys`, the counters' names in
`mailpixel.model.counters`. Breakdown names come from a closed set (known clients, ISO country
codes, `[a-z0-9_]` reasons), so a stream of forged user agents cannot grow an item towards
DynamoDB's 400 KB limit.
"""

from __future__ import annotations

import calendar
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from mailpixel.config import Settings
from mailpixel.ddb.codec import to_attr
from mailpixel.ddb.update import update
from mailpixel.model.counters import CLIENT_PREFIX, COUNTRY_PREFIX, MACHINE_PREFIX, PROXY_PREFIX
from mailpixel.model.keys import (
    CLICK_KEY,
    OPEN_KEY,
    STATS_SK,
    Key,
    Prefix,
    all_pk,
    batch_key,
    clicker_sk,
    day_sk,
    email_pk,
    emails_on_day_pk,
    engaged_sk,
    link_sk_of,
    meta_key,
    opener_sk,
)

UNKNOWN = "unknown"
# On an enriched event: the token of the batch that counted it (`writer.py`).
COUNTED_BY = "counted_by"
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


@dataclass(frozen=True)
class Kind:
    """One kind of event the per-batch writer counts: opens (the events table) or clicks (the
    clicks table). Both go through the same steps (claim, unique-user marker, counters in one
    transaction with the batch's marker), and their attribute names follow one pattern from
    `name`: `open_key`, `opened_at`, `machine_open`, `opens`, `unique_openers`; `click_key`,
    `clicked_at`, `machine_click`, `clicks`, `unique_clickers`."""

    name: str
    table: Callable[[Settings], str]
    marker: Prefix  # the unique-user marker under `email#ID`
    # Besides the verdict and enriched_at, what enrichment sets.
    enriched: tuple[str, ...]
    # Opens only: breakdowns, the recent-emails index and first/last open. Clicks only: one
    # counter item per destination.
    breakdowns: bool = False
    bounds: bool = False
    per_link: bool = False

    @property
    def sort_key(self) -> str:
        return f"{self.name}_key"

    @property
    def time_field(self) -> str:
        return f"{self.name}ed_at"

    @property
    def verdict_field(self) -> str:
        return f"machine_{self.name}"

    @property
    def enriched_fields(self) -> tuple[str, ...]:
        return (self.verdict_field, "machine_reason", *self.enriched, "enriched_at")

    @property
    def counters(self) -> tuple[str, str, str]:
        """(total, human, machine)."""
        plural = f"{self.name}s"
        return plural, f"human_{plural}", f"machine_{plural}"

    @property
    def unique(self) -> tuple[str, str]:
        """The stats item's unique users: all, and those with a human event."""
        return f"unique_{self.name}ers", f"unique_human_{self.name}ers"

    @property
    def condition(self) -> str:
        """Enrich once, and never recreate an erased event."""
        return f"attribute_exists({self.sort_key}) AND attribute_not_exists(enriched_at)"

    def key(self, event: Mapping[str, Any]) -> Key:
        return {"email_id": {"S": str(event["email_id"])}, self.sort_key: {"S": str(event[self.sort_key])}}

    def is_human(self, event: Mapping[str, Any]) -> bool:
        return not bool(event.get(self.verdict_field))

    def day(self, event: Mapping[str, Any]) -> str:
        return str(event[self.time_field])[:10]


OPENS = Kind(
    "open",
    lambda settings: settings.table,
    opener_sk,
    ("client", "proxy", "evidence", "geo"),
    breakdowns=True,
    bounds=True,
)
CLICKS = Kind("click", lambda s: s.clicks_table, clicker_sk, ("client", "evidence", "geo"), per_link=True)
assert (OPENS.sort_key, CLICKS.sort_key) == (OPEN_KEY, CLICK_KEY)  # nosec B101 - the key names agree


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
    """Whether an open was a person's."""
    return OPENS.is_human(event)


def breakdown(event: Mapping[str, Any]) -> list[str]:
    """The breakdown counters this open adds one to."""
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


def _day_expiry(day: str, settings: Settings) -> int:
    """A day's counts live as long as that day's last events."""
    end = date.fromisoformat(day) + timedelta(days=1)
    return calendar.timegm(end.timetuple()) + settings.retention_seconds


def _expires(settings: Settings, now: float | None) -> dict[str, str]:
    """`expires_at` for an aggregate item: its last update plus the retention."""
    return {"N": str(int(now if now is not None else time.time()) + settings.retention_seconds)}


@dataclass
class CounterItem:
    """One aggregate item: ADD each of `adds` (name → amount), SET each of `sets`."""

    key: Key
    adds: Counter[str]
    sets: Mapping[str, dict[str, Any]]


def counter_items(
    event: Mapping[str, Any],
    settings: Settings,
    *,
    shard: int = 0,
    now: float | None = None,
    kind: Kind = OPENS,
) -> list[CounterItem]:
    """Every aggregate item one enriched event counts in, and what it adds to each."""
    email_id = str(event["email_id"])
    day = kind.day(event)
    expires = _expires(settings, now)
    day_expires = {"N": str(_day_expiry(day, settings))}
    total, human, machine = kind.counters
    verdict = human if kind.is_human(event) else machine
    counters = Counter((total, verdict, *(breakdown(event) if kind.breakdowns else ())))
    date_value = {"S": day}
    email_value = {"S": email_id}
    day_sets = {"email_id": email_value, "date": date_value, "expires_at": day_expires}
    items = [
        CounterItem(
            meta_key(email_pk(email_id), STATS_SK), counters, {"email_id": email_value, "expires_at": expires}
        ),
        CounterItem(meta_key(email_pk(email_id), day_sk(day)), counters, day_sets),
        CounterItem(
            meta_key(all_pk(shard), day_sk(day)), counters, {"date": date_value, "expires_at": day_expires}
        ),
    ]
    pair = Counter((total, verdict))
    if kind.bounds:  # the recent-emails index lists emails by the days they were opened
        items.append(CounterItem(meta_key(emails_on_day_pk(day), email_pk(email_id)), pair, day_sets))
    url = event.get("url")
    if kind.per_link and isinstance(url, str):
        url = counted_link(url)
        link_sets = {"email_id": email_value, "url": {"S": url}, "expires_at": expires}
        items.append(CounterItem(meta_key(email_pk(email_id), link_sk_of(url)), pair, link_sets))
    return items


def counted_link(url: str) -> str:
    """The destination as per-link counters keep it: scheme, host, path and the query's names,
    without the query's values or the fragment. Personalised links
    (`?email=erin%40example.com&token=…`) are one link per recipient with their data in it:
    counters shared by every recipient must not keep it, and `forget --user-id` cannot reach
    a counter. `?utm_source=mail` and `?utm_source=ads` count as one link (docs/privacy.md, "Per-link
    counters")."""
    base, _, query = url.partition("#")[0].partition("?")
    if not query:
        return base
    names = [part.split("=", 1)[0] + "=" for part in query.split("&") if "=" in part]
    return f"{base}?{'&'.join(names)}" if names else base


def _key_id(key: Key) -> tuple[str, str]:
    return key["pk"]["S"], key["sk"]["S"]


def sum_counters(
    events: Iterable[Mapping[str, Any]],
    settings: Settings,
    *,
    shard: int = 0,
    now: float | None = None,
    kind: Kind = OPENS,
) -> list[CounterItem]:
    """The events' counts summed per aggregate item: what one batch ADDs to each item, once."""
    summed: dict[tuple[str, str], CounterItem] = {}
    for event in events:
        for item in counter_items(event, settings, shard=shard, now=now, kind=kind):
            found = summed.get(_key_id(item.key))
            if found is None:
                summed[_key_id(item.key)] = CounterItem(item.key, Counter(item.adds), item.sets)
            else:
                found.adds.update(item.adds)
    return list(summed.values())


def item_keys(event: Mapping[str, Any], settings: Settings, kind: Kind = OPENS) -> set[tuple[str, str]]:
    """The aggregate items an event's counts land in (shard 0 standing for the shared shard)."""
    return {_key_id(item.key) for item in counter_items(event, settings, kind=kind)}


@dataclass
class Openers:
    """Unique openers (and unique human openers) a batch adds, per email; of a batch of clicks,
    unique clickers."""

    all: Counter[str] = field(default_factory=Counter)
    human: Counter[str] = field(default_factory=Counter)
    # Users new to the union of human openers and human clickers (`engaged_update`).
    engaged: Counter[str] = field(default_factory=Counter)


def counter_transaction(
    settings: Settings,
    token: str,
    counters: Iterable[CounterItem],
    openers: Openers,
    *,
    now: float | None = None,
    kind: Kind = OPENS,
) -> list[dict[str, Any]]:
    """TransactItems of one batch: its marker (once only) and one ADD per counter item."""
    marker = {
        "Put": {
            "TableName": settings.meta_table,
            "Item": {**batch_key(token), "expires_at": _expires(settings, now)},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    items: list[dict[str, Any]] = [marker]
    for item in counters:
        adds = Counter(item.adds)
        if item.key["sk"]["S"] == STATS_SK:
            email_id = email_pk.value_of(item.key["pk"]["S"])
            adds.update({kind.unique[0]: openers.all[email_id], kind.unique[1]: openers.human[email_id]})
            adds[ESTIMATED_HUMAN_OPENERS] += openers.engaged[email_id]
        amounts = {name: n for name, n in adds.items() if n}
        items.append({"Update": update(settings.meta_table, item.key, sets=item.sets, adds=amounts)})
    return items


def opener_update(
    settings: Settings,
    email_id: str,
    user_id: str,
    first_key: str,
    human_key: str | None,
    *,
    marker: Prefix,
    now: float | None = None,
) -> dict[str, Any]:
    """`update_item` arguments naming `first_key` (and `human_key`) as the events that made the
    user an opener (`marker=opener_sk`; a clicker: `clicker_sk`) of the email, unless earlier events already
    are. Returns the item as it is after, so the caller sees which events the marker names."""
    claims = {"seen_by": {"S": first_key}}
    if human_key is not None:
        claims["human_seen_by"] = {"S": human_key}
    args = update(
        settings.meta_table,
        meta_key(email_pk(email_id), marker(user_id)),
        sets={"user_id": {"S": user_id}, "email_id": {"S": email_id}, "expires_at": _expires(settings, now)},
        set_if_missing=claims,
    )
    args["ReturnValues"] = "ALL_NEW"
    return args


# --- Estimated human openers: "a click implies an open" (Braze, MailBlue) ---------------------
# The stats item's count of users who opened *or* clicked the email as a person: the human
# openers plus the human clickers whose every open was a machine's (Apple's prefetch) or was
# never seen (images blocked). Each such user is counted once through the `engaged#USER` marker.
ESTIMATED_HUMAN_OPENERS = "estimated_human_openers"


def engaged_claim(kind: Kind, event_key: str) -> str:
    """How the `engaged#USER` marker names the event that made the user a human opener or
    clicker: the kind first, since an open and a click can share a sort key."""
    return f"{kind.name}:{event_key}"


def engaged_update(
    settings: Settings, email_id: str, user_id: str, kind: Kind, human_key: str, *, now: float | None = None
) -> dict[str, Any]:
    """`update_item` arguments naming the human event `human_key` (of `kind`) as the one that
    put the user in the union, unless an earlier event (open or click) already did; the caller
    adds one estimated human opener when the marker after the update names this event."""
    return opener_update(
        settings, email_id, user_id, engaged_claim(kind, human_key), None, marker=engaged_sk, now=now
    )


def bound_updates(
    settings: Settings,
    email_id: str,
    first: str,
    last: str,
    *,
    first_human: str | None = None,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """`update_item` arguments that move the email's first/last open (and first human open)
    outwards; a failed condition means the bound already covers these events. Safe to repeat,
    in any order."""
    key = meta_key(email_pk(email_id), STATS_SK)
    sets = {"email_id": {"S": email_id}, "expires_at": _expires(settings, now)}
    bounds = [("first_open_at", first, ">"), ("last_open_at", last, "<")]
    if first_human is not None:
        bounds.append(("first_human_open_at", first_human, ">"))
    return [
        update(
            settings.meta_table,
            key,
            sets={attr: {"S": moment}},
            set_if_missing=sets,
            condition=f"attribute_not_exists(#s0) OR #s0 {comparison} :s0",
        )
        for attr, moment, comparison in bounds
    ]


# Revisions: a verdict that changes after its event was counted (a click found in a burst or
# next to a honeypot hit; `mailpixel reclassify`). The event moves between counters in one
# transaction that also changes the event, conditioned on the event's `verdict_version`: the
# transaction commits once, and a replay, a duplicate or a retry after a lost answer finds the
# version moved on and changes nothing. A ConditionCheck on the marker of the batch that counted
# the event keeps a revision from moving counts the event has not added yet (a claim whose batch
# died before its transaction is counted later, by adoption, under its stored verdict).
VERDICT_VERSION = "verdict_version"
HUMAN_SEEN_BY = "human_seen_by"


@dataclass(frozen=True)
class HumanMarkerChange:
    """How a revision changes the user's unique-user marker (`kind.marker`): its event that made
    the user a human opener (clicker) before (`was`, None: none) and after (`now`), and what the
    email's unique human count moves by (-1, 0 or +1)."""

    was: str | None
    now: str | None
    delta: int


def human_marker_change(
    event_key: str, becomes_human: bool, marker_human: str | None, other_human: str | None
) -> HumanMarkerChange | None:
    """The marker change when the event `event_key` becomes human (or machine); `marker_human`
    is the marker's `human_seen_by` now, `other_human` another counted human event of the user
    (the earliest), if any. None: the marker stays as it is."""
    if becomes_human:
        return HumanMarkerChange(None, event_key, 1) if marker_human is None else None
    if marker_human != event_key:
        return None
    return HumanMarkerChange(event_key, other_human, 0 if other_human else -1)


def human_marker_update(
    settings: Settings, email_id: str, user_id: str, change: HumanMarkerChange, *, kind: Kind
) -> dict[str, Any]:
    """A TransactItem moving the user's marker from `change.was` to `change.now`, conditioned on
    `was`, so a marker changed meanwhile cancels the transaction."""
    was: tuple[str, dict[str, Any]] = (
        (f"{HUMAN_SEEN_BY} = :was", {":was": {"S": change.was}})
        if change.was
        else (f"attribute_not_exists({HUMAN_SEEN_BY})", {})
    )
    return {
        "Update": update(
            settings.meta_table,
            meta_key(email_pk(email_id), kind.marker(user_id)),
            sets={HUMAN_SEEN_BY: {"S": change.now}} if change.now else {},
            removes=() if change.now else (HUMAN_SEEN_BY,),
            condition=f"attribute_exists(pk) AND {was[0]}",
            condition_values=was[1],
        )
    }


def unique_human_update(settings: Settings, email_id: str, delta: int, *, kind: Kind) -> dict[str, Any]:
    """A TransactItem adding `delta` to the email's unique human openers (clickers)."""
    return {
        "Update": update(
            settings.meta_table, meta_key(email_pk(email_id), STATS_SK), adds={kind.unique[1]: delta}
        )
    }


def revision_counters(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    settings: Settings,
    *,
    kind: Kind,
    shard: int = 0,
    now: float | None = None,
) -> list[CounterItem]:
    """Per aggregate item, the new verdict's counts minus the old one's (items left unchanged
    are omitted)."""
    moved: dict[tuple[str, str], CounterItem] = {}
    for event, sign in ((old, -1), (new, 1)):
        for item in counter_items(event, settings, shard=shard, now=now, kind=kind):
            found = moved.setdefault(_key_id(item.key), CounterItem(item.key, Counter(), item.sets))
            for name, amount in item.adds.items():
                found.adds[name] += sign * amount
    return [item for item in moved.values() if any(item.adds.values())]


def revision_transaction(
    settings: Settings,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    changed: Mapping[str, Any],
    *,
    kind: Kind,
    marker: HumanMarkerChange | None = None,
    shard: int = 0,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """TransactItems revising one counted event from `old` (as stored) to `new`: the event's
    `changed` attributes (None: removed) and its next `verdict_version`, the counters moved,
    the user's marker and the email's unique human users."""
    version = int(old.get(VERDICT_VERSION) or 0)
    sets = {name: to_attr(value) for name, value in changed.items() if value is not None}
    sets[VERDICT_VERSION] = {"N": str(version + 1)}
    event_update = update(
        kind.table(settings),
        kind.key(old),
        sets=sets,
        removes=tuple(name for name, value in changed.items() if value is None),
        condition=(
            f"{COUNTED_BY} = :counted AND "
            + (f"{VERDICT_VERSION} = :version" if version else f"attribute_not_exists({VERDICT_VERSION})")
        ),
        condition_values={":counted": {"S": str(old[COUNTED_BY])}}
        | ({":version": {"N": str(version)}} if version else {}),
    )
    items: list[dict[str, Any]] = [
        {
            "ConditionCheck": {
                "TableName": settings.meta_table,
                "Key": batch_key(str(old[COUNTED_BY])),
                "ConditionExpression": "attribute_exists(pk)",
            }
        },
        {"Update": event_update},
    ]
    counters = revision_counters(old, new, settings, kind=kind, shard=shard, now=now)
    email_id = str(old["email_id"])
    if marker is not None and marker.delta:
        stats = meta_key(email_pk(email_id), STATS_SK)
        found = next((c for c in counters if c.key == stats), None)
        if found is None:
            found = CounterItem(
                stats, Counter(), {"email_id": {"S": email_id}, "expires_at": _expires(settings, now)}
            )
            counters.append(found)
        found.adds[kind.unique[1]] += marker.delta
    for item in counters:
        amounts = {name: n for name, n in item.adds.items() if n}
        items.append({"Update": update(settings.meta_table, item.key, sets=item.sets, adds=amounts)})
    if marker is not None and old.get("user_id"):
        items.append(human_marker_update(settings, email_id, str(old["user_id"]), marker, kind=kind))
    return items
