"""Click aggregates against DynamoDB Local: clicks, human and machine clicks, unique (human)
clickers, per-link counts and day counters, kept by the per-batch writer under duplicated,
replayed and reordered records and crashes between its steps, checked against a recount of the
clicks table; and the click-to-open rate the read side derives from them."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailpixel.api import stats
from mailpixel.enrich.aggregates import CLICKS, counted_link
from mailpixel.enrich.writer import EnrichmentWriter
from mailpixel.model.clicks import ClickEvent
from mailpixel.model.events import iso_millis
from tests.conftest import all_items
from tests.crash import CrashInjector
from tests.integration.test_aggregates import deliver

LINKS = [
    "https://shop.example.com/sale?x=1#top",
    "https://shop.example.com/",
    "https://blog.example.org/post/42?utm_source=mail",
    "https://example.net/" + "very-long-path/" * 120,  # longer than a sort key may be
]


def make_clicks(count: int, *, seed: int = 5, emails: int = 2, users: int = 6) -> list[ClickEvent]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=1)
    clicks = []
    for n in range(count):
        epoch_ms = int((start + timedelta(seconds=rng.randrange(86_000))).timestamp() * 1000)
        clicks.append(
            ClickEvent(
                email_id=f"newsletter/{rng.randrange(emails)}",
                clicked_at=iso_millis(epoch_ms),
                request_id=f"click-{n:04d}",
                expires_at=epoch_ms // 1000 + 400 * 86_400,
                url=rng.choice(LINKS),
                user_id=f"user-{rng.randrange(users)}" if rng.random() > 0.1 else None,
                ip="198.51.100.9",
                user_agent="Mozilla/5.0",
                signed=True,
            )
        )
    return clicks


def verdict(click: ClickEvent) -> dict[str, Any]:
    """What click enrichment would decide, as a deterministic function of the click."""
    machine = random.Random(click.request_id).random() < 0.4
    result: dict[str, Any] = {"machine_click": machine, "client": {"name": "Chrome"}}
    if machine:
        result["machine_reason"] = "security_scanner"
    return {**result, "enriched_at": "2026-11-24T00:00:00.000Z"}


def stored(click: ClickEvent) -> dict[str, Any]:
    return {**click.to_json(), "click_key": click.click_key}


def enrich(store, ddb, settings, clicks: list[ClickEvent], *, crash: tuple[str, str] | None, seed: int = 9):
    rng = random.Random(seed)
    for click in clicks:
        store.put_event(click)
    records = list(clicks) + rng.sample(clicks, len(clicks) // 3)
    rng.shuffle(records)
    injector = CrashInjector(ddb, settings, crash[0], when=crash[1], seed=seed) if crash else None
    failed = deliver(
        EnrichmentWriter(ddb, settings, kind=CLICKS), [(stored(c), verdict(c)) for c in records], rng
    )
    if injector is not None:
        injector.enabled = False
        assert injector.crashes[injector.step] > 0 and failed > 0


def recount(ddb, settings) -> dict[str, dict[str, Any]]:
    per_email: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "counts": Counter(),
            "users": set(),
            "humans": set(),
            "links": defaultdict(Counter),
            "days": defaultdict(Counter),
        }
    )
    for item in all_items(ddb, settings.clicks_table):
        assert "enriched_at" in item
        e = per_email[item["email_id"]]
        kind = "machine_clicks" if item["machine_click"] else "human_clicks"
        link = counted_link(item["url"])
        for counter in (e["counts"], e["links"][link], e["days"][item["clicked_at"][:10]]):
            counter.update(("clicks", kind))
        if item.get("user_id"):
            e["users"].add(item["user_id"])
            if not item["machine_click"]:
                e["humans"].add(item["user_id"])
    return per_email


def assert_aggregates_equal_recount(ddb, settings) -> dict[str, dict[str, Any]]:
    """Every email's click aggregates (totals, unique clickers, per link, per day) equal a
    recount of the clicks table as it is; returns the recount."""
    expected = recount(ddb, settings)
    for email_id, e in expected.items():
        got = stats.email_stats(ddb, settings.meta_table, email_id)
        for name in ("clicks", "human_clicks", "machine_clicks"):
            assert got[name] == e["counts"][name], name
        assert (got["unique_clickers"], got["unique_human_clickers"]) == (len(e["users"]), len(e["humans"]))
        links = {link["url"]: link for link in got["links"]}
        assert set(links) == set(e["links"])
        for url, counts in e["links"].items():
            assert (links[url]["clicks"], links[url]["human_clicks"], links[url]["machine_clicks"]) == (
                counts["clicks"],
                counts["human_clicks"],
                counts["machine_clicks"],
            )
        human = [link["human_clicks"] for link in got["links"]]
        assert human == sorted(human, reverse=True)
        first, last = stats.day_range(min(e["days"]), max(e["days"]))
        for row in stats.daily(ddb, settings.meta_table, email_id, first, last):
            want = e["days"].get(row["date"], Counter())
            assert (row["clicks"], row["human_clicks"]) == (want["clicks"], want["human_clicks"])
    return expected


@pytest.mark.parametrize(
    "crash",
    [None, ("claim", "after"), ("opener", "after"), ("opener", "before"), ("commit", "after")],
    ids=lambda c: "no-crash" if c is None else "-".join(reversed(c)),
)
def test_click_aggregates_equal_a_recount(store, ddb, settings, crash):
    clicks = make_clicks(50)
    enrich(store, ddb, settings, clicks, crash=crash)
    expected = assert_aggregates_equal_recount(ddb, settings)
    assert sum(e["counts"]["clicks"] for e in expected.values()) == len(clicks)
    for email_id in expected:
        got = stats.email_stats(ddb, settings.meta_table, email_id)
        # No opens were counted: there is no rate to give.
        assert got["opens"] == 0 and got["click_to_open_rate"] is None


def test_click_to_open_rate_is_unique_human_clickers_over_unique_human_openers(store, ddb, settings):
    from tests.integration.test_aggregates import prefetch_then_people

    # Four people, and an Apple prefetch for a fifth user: an opener, not a human one.
    prefetch_then_people(store, ddb, settings, "2026-11-24", 4)
    people = [c for c in make_clicks(12, emails=1, users=3) if c.user_id]
    clicks = [replace(c, email_id="e1") for c in people]
    writer = EnrichmentWriter(ddb, settings, kind=CLICKS)
    for click in clicks:
        store.put_event(click)
    assert all(
        r is True
        for r in writer.write_batch([(stored(c), {**verdict(c), "machine_click": False}) for c in clicks])
    )
    # A scanner's click from another user adds a clicker, not a human one.
    scanner = replace(clicks[0], request_id="scan", user_id="u9")
    store.put_event(scanner)
    assert writer.write(stored(scanner), {**verdict(scanner), "machine_click": True}) is True
    assert writer.write(stored(scanner), {**verdict(scanner), "machine_click": True}) is False

    got = stats.email_stats(ddb, settings.meta_table, "e1")
    humans = {c.user_id for c in clicks}
    assert (got["unique_human_openers"], got["unique_openers"]) == (4, 5)
    assert (got["unique_human_clickers"], got["unique_clickers"]) == (len(humans), len(humans) + 1)
    assert got["click_to_open_rate"] == round(len(humans) / 4, 4)
    assert got["first_human_open_at"] == "2026-11-24T10:00:00.000Z"
    assert got["first_open_at"] == "2026-11-24T09:00:00.000Z"
    # The recent-emails rows carry the rate as well (without the per-link list).
    (row,) = stats.recent_emails(ddb, settings.meta_table, days=30)
    assert row["click_to_open_rate"] == got["click_to_open_rate"] and "links" not in row


def test_forget_user_removes_their_clicker_markers(store, ddb, settings):
    from mailpixel.ops.erasure import Eraser

    clicks = [c for c in make_clicks(20, users=3) if c.user_id]
    enrich(store, ddb, settings, clicks, crash=None)
    markers = [i for i in all_items(ddb, settings.meta_table) if i["sk"].startswith("clicker#")]
    assert {m["user_id"] for m in markers} == {c.user_id for c in clicks}
    Eraser(ddb, settings.table, settings.meta_table, settings.clicks_table).forget_user("user-1")
    left = all_items(ddb, settings.meta_table)
    assert not [i for i in left if i.get("user_id") == "user-1" or i["sk"] == "clicker#user-1"]
    assert [i for i in left if i["sk"].startswith("clicker#")]  # other users' markers stay


def test_per_link_counters_keep_no_recipients_data(store, ddb, settings):
    """Personalised destinations count as one link without their values: after `forget`, no
    trace of the recipient is left in the per-link counters the API and dashboard show."""
    from mailpixel.ops.erasure import Eraser

    personal = [
        replace(
            click,
            email_id="e1",
            user_id=user,
            url=f"https://shop.example.com/sale?email={user}%40example.com"
            f"&token={token}&utm_source=mail#u={user}",
        )
        for click, (user, token) in zip(
            make_clicks(2), [("erin", "t0k3n-erin"), ("frank", "t0k3n-frank")], strict=True
        )
    ]
    enrich(store, ddb, settings, personal, crash=None)
    Eraser(ddb, settings.table, settings.meta_table, settings.clicks_table).forget_user("erin")
    (link,) = stats.email_stats(ddb, settings.meta_table, "e1")["links"]
    assert link["url"] == "https://shop.example.com/sale?email=&token=&utm_source=" and link["clicks"] == 2
    assert "erin" not in repr(all_items(ddb, settings.meta_table))
    assert counted_link("https://a.example/p?flag&x=1&y") == "https://a.example/p?x="
    assert (
        counted_link("https://a.example/p?token")
        == counted_link("https://a.example/p#x")
        == "https://a.example/p"
    )
