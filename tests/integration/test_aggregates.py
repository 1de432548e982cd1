"""Aggregates against DynamoDB Local: duplicated, replayed and out-of-order enrichment records,
batches cut short by a crash between any two steps of the write, all checked against a count
made by reading every event back from the events table."""

from __future__ import annotations

import io
import json
import random
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailpixel.api import stats
from mailpixel.api.app import create_api_app
from mailpixel.ddb.codec import plain_item
from mailpixel.ddb.store import EventStore
from mailpixel.enrich import aggregates
from mailpixel.enrich.writer import EnrichmentWriter
from mailpixel.model.events import OpenEvent, iso_millis
from mailpixel.ops.cli import main
from tests.conftest import all_items, target_args
from tests.crash import STEPS, CrashInjector

CLIENTS = ["Apple Mail", "Outlook", "Thunderbird", "Gmail", "Some Odd Reader 9"]
COUNTRIES = ["US", "FR", "DE", "JP", "zz-bad"]
REASONS = ["apple_mpp", "security_scanner", "bot"]


def make_events(
    count: int,
    *,
    seed: int = 7,
    emails: int = 3,
    users: int = 8,
    days: int = 3,
    names: list[str] | None = None,
) -> list[OpenEvent]:
    """Opens spread over the last `days` days (so the recent-emails list finds them)."""
    rng = random.Random(seed)
    names = names or [f"campaign-{n}" for n in range(emails)]
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    events = []
    for n in range(count):
        moment = start + timedelta(seconds=rng.randrange(days * 86_400 - 1))
        if moment > datetime.now(UTC):
            moment = datetime.now(UTC) - timedelta(seconds=rng.randrange(1, 3600))
        epoch_ms = int(moment.timestamp() * 1000)
        events.append(
            OpenEvent(
                email_id=names[min(int(rng.expovariate(1.2)), len(names) - 1)]
                if len(names) > 1
                else names[0],
                opened_at=iso_millis(epoch_ms),
                request_id=f"req-{n:04d}",
                expires_at=epoch_ms // 1000 + 400 * 86_400,
                user_id=f"user-{rng.randrange(users)}" if rng.random() > 0.1 else None,
                ip="198.51.100.7",
                user_agent="Mozilla/5.0",
            )
        )
    return events


def enrichment_for(event: OpenEvent) -> dict[str, Any]:
    """What the enrichment step would decide, as a deterministic function of the event."""
    rng = random.Random(event.request_id)
    if rng.random() < 0.35:
        return {"machine_open": True, "machine_reason": rng.choice(REASONS), "client": {"name": "Apple Mail"}}
    result: dict[str, Any] = {"machine_open": False, "client": {"name": rng.choice(CLIENTS), "os": "iOS"}}
    if rng.random() < 0.2:
        result["proxy"] = "gmail"
        result["geo"] = {"country": "US", "source": "proxy:gmail"}
    else:
        result["geo"] = {"country": rng.choice(COUNTRIES), "city": "Somewhere", "source": "ipinfo"}
    return result


def stored(event: OpenEvent) -> dict[str, Any]:
    """The event as the stream hands it to enrichment."""
    return {**event.to_json(), "open_key": event.open_key}


def enrichment(event: OpenEvent) -> dict[str, Any]:
    return {**enrichment_for(event), "enriched_at": "2026-11-24T00:00:00.000Z"}


def deliver(
    writer: EnrichmentWriter, records: list[tuple[dict[str, Any], dict[str, Any]]], rng: random.Random
) -> int:
    """Hand `records` to the writer as a stream shard does: batches of varying size, each
    resumed from its first failed record (Lambda's checkpoint). Returns how many batches failed."""
    failed = 0
    for _ in range(5000):
        if not records:
            return failed
        size = rng.randint(1, 15)
        results = writer.write_batch(records[:size])
        first = next((n for n, r in enumerate(results) if isinstance(r, Exception)), None)
        if first is None:
            records = records[size:]
        else:
            failed += 1
            records = records[first:]
    raise AssertionError("the stream never drained")


def seed(
    store: EventStore,
    ddb,
    settings,
    events: list[OpenEvent],
    *,
    rng_seed: int = 3,
    crash: tuple[str, ...] | None = None,
) -> int:
    """Store the events, then enrich them as a misbehaving stream would deliver them:
    shuffled, a third twice, in batches of 1 to 15; with `crash` = (step, before|after), a
    share of that step's calls dies and its batch is delivered again from the failed record.
    `(step, when, step2)` crashes the second step too (after the call), e.g. the adoption of
    claims that a crash after the first step left behind."""
    rng = random.Random(rng_seed)
    for event in events:
        store.put_event(event)
    records = list(events) + rng.sample(events, len(events) // 3)
    rng.shuffle(records)
    writer = EnrichmentWriter(ddb, settings)
    injectors = []
    if crash:
        injectors.append(CrashInjector(ddb, settings, crash[0], when=crash[1], seed=rng_seed))
        injectors += [CrashInjector(ddb, settings, step, rate=0.5, seed=rng_seed + 1) for step in crash[2:]]
    failed = deliver(writer, [(stored(e), enrichment(e)) for e in records], rng)
    for injector in injectors:
        injector.enabled = False
        assert injector.crashes[injector.step] > 0, f"no crash was injected at {injector.step}"
    assert failed > 0 or not injectors
    return failed


def expected_from_events(ddb, settings) -> dict[str, Any]:
    """Every aggregate, recounted from the events table alone."""
    per_email: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "opens": 0,
            "human_opens": 0,
            "machine_opens": 0,
            "reasons": Counter(),
            "clients": Counter(),
            "countries": Counter(),
            "proxies": Counter(),
            "users": set(),
            "humans": set(),
            "times": [],
            "human_times": [],
        }
    )
    per_day: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    per_user: dict[str, list[str]] = defaultdict(list)
    for item in all_items(ddb, settings.table):
        assert "enriched_at" in item
        e = per_email[item["email_id"]]
        day = item["opened_at"][:10]
        e["opens"] += 1
        e["times"].append(item["opened_at"])
        human = not item["machine_open"]
        kind = "human_opens" if human else "machine_opens"
        e[kind] += 1
        for key in ((item["email_id"], day), ("*", day)):
            per_day[key]["opens"] += 1
            per_day[key][kind] += 1
        if item.get("user_id"):
            e["users"].add(item["user_id"])
            per_user[item["user_id"]].append(item["opened_at"])
            if human:
                e["humans"].add(item["user_id"])
        if not human:
            e["reasons"][item["machine_reason"]] += 1
            continue
        e["human_times"].append(item["opened_at"])
        name = item["client"]["name"]
        e["clients"][name if name in aggregates.KNOWN_CLIENTS else "Other"] += 1
        if item.get("proxy"):
            e["proxies"][item["proxy"]] += 1
        else:
            country = item["geo"]["country"]
            e["countries"][country if len(country) == 2 and country.isupper() else "unknown"] += 1
    return {"emails": per_email, "days": per_day, "users": per_user}


CRASHES = [
    None,
    *((step, when) for step in STEPS if step != "adopt" for when in ("before", "after")),
    ("claim", "after", "adopt"),  # the retry that adopts orphaned claims dies as well
]


@pytest.mark.parametrize(
    "crash", CRASHES, ids=lambda c: "no-crash" if c is None else "-".join((c[1], *c[:1], *c[2:]))
)
def test_aggregates_equal_a_recount_after_duplicates_replays_and_reordering(store, ddb, settings, crash):
    events = make_events(60)
    seed(store, ddb, settings, events, crash=crash)
    expected = expected_from_events(ddb, settings)
    assert sum(e["opens"] for e in expected["emails"].values()) == len(events)

    for email_id, e in expected["emails"].items():
        got = stats.email_stats(ddb, settings.meta_table, email_id)
        assert got["opens"] == e["opens"]
        assert got["human_opens"] == e["human_opens"]
        assert got["machine_opens"] == e["machine_opens"]
        assert got["machine_opens_by_reason"] == dict(e["reasons"])
        assert got["clients"] == dict(e["clients"])
        assert got["countries"] == dict(e["countries"])
        assert got["proxies"] == dict(e["proxies"])
        assert got["unique_openers"] == len(e["users"])
        assert got["unique_human_openers"] == len(e["humans"])
        assert got["first_open_at"] == min(e["times"])
        assert got["last_open_at"] == max(e["times"])
        assert got["first_human_open_at"] == min(e["human_times"], default=None)

    first_day = min(day for _, day in expected["days"])
    last_day = max(day for _, day in expected["days"])
    first, last = stats.day_range(first_day, last_day)
    for email_id in [*expected["emails"], None]:
        series = stats.daily(ddb, settings.meta_table, email_id, first, last)
        for row in series:
            want = expected["days"].get((email_id or "*", row["date"]), Counter())
            assert (row["opens"], row["human_opens"], row["machine_opens"]) == (
                want["opens"],
                want["human_opens"],
                want["machine_opens"],
            ), (email_id, row["date"])

    for user_id, times in expected["users"].items():
        got = stats.user_stats(ddb, settings.table, user_id)
        assert (got["opens"], got["first_open_at"], got["last_open_at"]) == (
            len(times),
            min(times),
            max(times),
        )

    recent = stats.recent_emails(ddb, settings.meta_table, days=7)
    assert {r["email_id"] for r in recent} == set(expected["emails"])
    assert [r["last_open_at"] for r in recent] == sorted((r["last_open_at"] for r in recent), reverse=True)


def test_every_meta_item_expires_and_user_items_name_the_user(store, ddb, settings):
    seed(store, ddb, settings, make_events(20, seed=11))
    items = all_items(ddb, settings.meta_table)
    assert items
    for item in items:
        assert isinstance(item["expires_at"], int) and item["expires_at"] > datetime.now(UTC).timestamp(), (
            item
        )
        if item["pk"].startswith("user#") or item["sk"].startswith(("opener#", "engaged#")):
            assert item["user_id"] == item["pk"].removeprefix("user#") or item["sk"] in (
                f"opener#{item['user_id']}",
                f"engaged#{item['user_id']}",
            )
    kinds = {(i["pk"].split("#")[0], i["sk"].split("#")[0]) for i in items}
    assert kinds == {
        ("email", "stats"),
        ("email", "day"),
        ("all", "day"),
        ("emails", "email"),
        ("email", "opener"),
        ("email", "engaged"),  # human openers: the estimated human openers' union (issue 17)
        ("batch", "batch"),
    }


def one_event(request_id: str, opened_at: str, user_id: str | None = "u1", email_id: str = "e1") -> OpenEvent:
    return OpenEvent(
        email_id=email_id,
        opened_at=opened_at,
        request_id=request_id,
        expires_at=2_000_000_000,
        user_id=user_id,
    )


def enrich_one(store, ddb, settings, event: OpenEvent, **enrichment: Any) -> bool:
    store.put_event(event)
    return EnrichmentWriter(ddb, settings).write(stored(event), {"enriched_at": "x", **enrichment})


def prefetch_then_people(store, ddb, settings, day: str, people: int) -> None:
    """Apple's prefetch for u9 at 09:00 on `day` (an opener, not a human one), then `people`
    readers u0, u1, … from 10:00, a minute apart: what a click-to-open rate divides by."""
    mpp = one_event("mpp", f"{day}T09:00:00.000Z", user_id="u9")
    enrich_one(store, ddb, settings, mpp, machine_open=True, machine_reason="apple_mpp")
    for n in range(people):
        person = one_event(f"h{n}", f"{day}T10:{n:02d}:00.000Z", user_id=f"u{n}")
        enrich_one(store, ddb, settings, person, machine_open=False)


def test_replayed_record_counts_once_and_reports_it(store, ddb, settings):
    event = one_event("r1", "2026-11-24T10:00:00.000Z")
    assert enrich_one(store, ddb, settings, event, machine_open=False) is True
    assert enrich_one(store, ddb, settings, event, machine_open=False) is False
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert (got["opens"], got["human_opens"], got["unique_openers"], got["unique_human_openers"]) == (
        1,
        1,
        1,
        1,
    )


@pytest.mark.parametrize("order", ["machine_first", "human_first"])
def test_a_person_after_apples_prefetch_is_one_unique_human_opener(store, ddb, settings, order):
    machine: tuple[OpenEvent, dict[str, Any]] = (
        one_event("m", "2026-11-24T10:00:00.000Z"),
        {"machine_open": True, "machine_reason": "apple_mpp"},
    )
    human: tuple[OpenEvent, dict[str, Any]] = (
        one_event("h", "2026-11-24T12:00:00.000Z"),
        {"machine_open": False},
    )
    for event, verdict in [machine, human] if order == "machine_first" else [human, machine]:
        enrich_one(store, ddb, settings, event, **verdict)
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert (got["opens"], got["unique_openers"], got["unique_human_openers"]) == (2, 1, 1)
    assert got["machine_opens_by_reason"] == {"apple_mpp": 1}
    assert got["first_human_open_at"] == "2026-11-24T12:00:00.000Z"
    assert (got["first_open_at"], got["last_open_at"]) == (
        "2026-11-24T10:00:00.000Z",
        "2026-11-24T12:00:00.000Z",
    )


def test_bounds_only_move_outwards_and_a_replay_adds_no_opener(store, ddb, settings):
    late = one_event("late", "2026-11-24T18:00:00.000Z")
    assert enrich_one(store, ddb, settings, late, machine_open=False) is True
    assert enrich_one(store, ddb, settings, late, machine_open=False) is False
    enrich_one(store, ddb, settings, one_event("early", "2026-11-23T08:00:00.000Z"), machine_open=False)
    enrich_one(store, ddb, settings, one_event("mid", "2026-11-24T09:00:00.000Z"), machine_open=False)
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert (got["first_open_at"], got["last_open_at"]) == (
        "2026-11-23T08:00:00.000Z",
        "2026-11-24T18:00:00.000Z",
    )
    assert (got["opens"], got["unique_openers"], got["unique_human_openers"]) == (3, 1, 1)
    user = stats.user_stats(ddb, settings.table, "u1")
    assert (user["opens"], user["first_open_at"], user["last_open_at"]) == (
        3,
        "2026-11-23T08:00:00.000Z",
        "2026-11-24T18:00:00.000Z",
    )


def test_a_batch_writes_each_counter_item_once_with_no_per_open_transaction(store, ddb, settings):
    """100 opens of one campaign in one batch: one transaction, each aggregate item in it once."""
    events = [
        one_event(f"c{n}", f"2026-11-24T10:{n // 60:02d}:{n % 60:02d}.000Z", user_id=f"u{n % 70}")
        for n in range(100)
    ]
    for event in events:
        store.put_event(event)
    calls: list[tuple[str, dict[str, Any]]] = []
    ddb.meta.events.register(
        "provide-client-params.dynamodb", lambda params, model, **_: calls.append((model.name, params))
    )
    results = EnrichmentWriter(ddb, settings).write_batch([(stored(e), enrichment(e)) for e in events])
    assert results == [True] * 100
    transactions = [p for name, p in calls if name == "TransactWriteItems"]
    assert len(transactions) == 1
    keys = [
        json.dumps(entry[kind]["Key"], sort_keys=True)
        for entry in transactions[0]["TransactItems"]
        for kind in entry
        if "Key" in entry[kind]
    ]
    assert len(keys) == len(set(keys)) == 4  # email stats, email day, one `all` shard, emails-on-day
    updates = Counter(p["TableName"] for name, p in calls if name == "UpdateItem")
    assert updates[settings.table] == 100  # one claim per event
    # one opener marker per user, one engaged marker per user with a human open (issue 17's
    # estimated human openers); first, last and first human open
    people = {e.user_id for e in events if not enrichment(e).get("machine_open")}
    assert 0 < len(people) < 70
    assert updates[settings.meta_table] == 70 + len(people) + 3
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert (got["opens"], got["unique_openers"]) == (100, 70)


def test_opens_without_a_user_count_but_identify_nobody(store, ddb, settings):
    enrich_one(
        store, ddb, settings, one_event("anon", "2026-11-24T10:00:00.000Z", user_id=None), machine_open=False
    )
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert (got["opens"], got["unique_openers"]) == (1, 0)
    assert not any(i["pk"].startswith("user#") for i in all_items(ddb, settings.meta_table))


def test_forged_client_names_and_reasons_stay_a_closed_set(store, ddb, settings):
    for n in range(30):
        enrich_one(
            store,
            ddb,
            settings,
            one_event(f"f{n}", f"2026-11-24T10:00:{n:02d}.000Z"),
            machine_open=False,
            client={"name": f"EvilReader{n} {'x' * 300}"},
            geo={"country": f"Q{n}"},
        )
    enrich_one(
        store,
        ddb,
        settings,
        one_event("b", "2026-11-24T11:00:00.000Z"),
        machine_open=True,
        machine_reason="DROP TABLE; " + "y" * 100,
    )
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert got["clients"] == {"Other": 30}
    assert got["countries"] == {"unknown": 30}
    assert got["machine_opens_by_reason"] == {"other": 1}
    stored = plain_item(
        ddb.get_item(TableName=settings.meta_table, Key={"pk": {"S": "email#e1"}, "sk": {"S": "stats"}})[
            "Item"
        ]
    )
    assert max(len(name) for name in stored) < 40


def test_cli_stats_and_api_agree_with_the_recount(store, ddb, settings, capsys):
    seed(store, ddb, settings, make_events(40, seed=5, emails=2))
    expected = expected_from_events(ddb, settings)["emails"]["campaign-0"]
    target = ["--endpoint-url", settings.endpoint_url, "--meta-table", settings.meta_table]
    code = main(["stats", "--email-id", "campaign-0", "--format", "json", *target])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    app = create_api_app(settings.with_overrides(api_keys=("k",)))
    from_api = (
        app.test_client()
        .get("/api/emails/campaign-0/stats", headers={"Authorization": "Bearer k"})
        .get_json()
    )
    assert printed == from_api
    assert (printed["opens"], printed["human_opens"], printed["unique_human_openers"]) == (
        expected["opens"],
        expected["human_opens"],
        len(expected["humans"]),
    )

    code = main(["stats", "--email-id", "campaign-0", *target])
    table = capsys.readouterr().out
    assert code == 0
    lines = dict(line.split(None, 1) for line in table.splitlines())
    assert lines["opens"] == str(expected["opens"])
    assert lines["unique_human_openers"] == str(len(expected["humans"]))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_csv_streams_rows_with_a_progress_bar_only_on_a_terminal(store, ddb, settings, monkeypatch, capsys):
    for event in make_events(25, seed=2, emails=1):
        store.put_event(event)

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(["opens", "--email-id", "campaign-0", "--format", "csv", *target_args(settings)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 26 and lines[0].startswith("opened_at,")
    assert "25 rows" in terminal.getvalue()

    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    main(["opens", "--email-id", "campaign-0", "--format", "csv", *target_args(settings)])
    assert quiet.getvalue() == ""
    assert len(capsys.readouterr().out.splitlines()) == 26
