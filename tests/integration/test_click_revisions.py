"""Verdicts that settle: clicks counted human and revised to machine when a honeypot hit, a burst
or a second address arrives later, through the real click enrichment and the clicks' writer
(`enrich/clicks.py` ClickWriter), with records duplicated, reordered and split over batches, and
crashes before and after every step, the revision's transaction included. The verdicts must end
as the rules decide over each recipient's whole sequence, and the aggregates equal a recount."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailpixel.api import stats
from mailpixel.ddb.codec import plain_item
from mailpixel.enrich.classify.clicks import sequence_verdicts
from mailpixel.enrich.classify.ranges import shipped_ranges
from mailpixel.enrich.clicks import ClickWriter, click_enrichment, sequence_click, sequence_rules
from mailpixel.enrich.writer import EnrichmentWriter
from mailpixel.model.clicks import ClickEvent
from mailpixel.model.events import OpenEvent, iso_millis
from mailpixel.model.keys import email_pk, engaged_sk, meta_key
from tests.conftest import all_items
from tests.crash import CrashInjector
from tests.integration.test_aggregates import deliver
from tests.integration.test_aggregates import stored as stored_open
from tests.integration.test_click_aggregates import assert_aggregates_equal_recount, stored
from tests.integration.test_rates import assert_estimated_human_openers_equal_recount

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
# What each recipient does: (seconds after the start, link, address); link "hp" is the honeypot.
SCENARIOS: dict[str, list[tuple[float, str, str]]] = {
    "person": [(900.0, "a", "81.2.69.1"), (4000.0, "b", "81.2.69.1")],
    "burst": [(30.0, "a", "198.51.100.1"), (30.4, "b", "198.51.100.1"), (30.9, "c", "198.51.100.1")],
    # Slow enough for no burst: only the honeypot, arriving after the others, gives it away.
    "honeypot_late": [(60.0, "a", "198.51.100.2"), (68.0, "b", "198.51.100.2"), (75.0, "hp", "198.51.100.2")],
    # The gateway at delivery, the person behind it hours later: that click stays human.
    "gateway_then_person": [
        (40.0, "a", "198.51.100.3"),
        (40.5, "hp", "198.51.100.3"),
        (7200.0, "a", "81.2.69.2"),
        (9000.0, "b", "81.2.69.2"),
    ],
    # A person's click, then a burst of a gateway re-checking the links from its own address.
    "human_then_burst": [
        (20.0, "a", "81.2.69.3"),
        (500.0, "a", "198.51.100.4"),
        (500.3, "b", "198.51.100.4"),
        (500.6, "c", "198.51.100.4"),
    ],
    "two_sources": [(25.0, "a", "198.51.100.5"), (25.5, "a", "198.51.100.6")],
}
# Recipients (of these scenarios, first copy only) who also open as people.
OPENERS = tuple(
    f"{name}-{n}"
    for n, name in enumerate(sorted(SCENARIOS))
    if name in ("burst", "honeypot_late", "two_sources")
)
LINKS = {name: f"https://shop.example.com/{name}" for name in ("a", "b", "c", "hp")}


def one_click(
    request_id: str, user_id: str, at: datetime, link: str, ip: str, email_id: str = "e1"
) -> ClickEvent:
    epoch_ms = int(at.timestamp() * 1000)
    return ClickEvent(
        email_id=email_id,
        clicked_at=iso_millis(epoch_ms),
        request_id=request_id,
        expires_at=epoch_ms // 1000 + 400 * 86_400,
        url=LINKS[link],
        user_id=user_id,
        ip=ip,
        user_agent=CHROME,
        signed=True,
        honeypot=link == "hp" or None,
    )


def make_clicks(seed: int = 3) -> list[ClickEvent]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=1)
    clicks = []
    for email in ("e1", "e2"):
        for n, (scenario, steps) in enumerate(sorted(SCENARIOS.items()) * 2):
            user = f"{scenario}-{n}"
            jitter = rng.uniform(0, 3000)
            for i, (seconds, link, ip) in enumerate(steps):
                at = start + timedelta(seconds=jitter + seconds)
                clicks.append(one_click(f"{email}-{user}-{i}", user, at, link, ip, email))
    return clicks


def enrichment(click: ClickEvent) -> dict[str, Any]:
    found, _ = click_enrichment(stored(click), shipped_ranges())
    return {**found, "geo": {"source": "none"}, "enriched_at": "2026-12-07T00:00:00.000Z"}


def expected_verdicts(settings, clicks: list[ClickEvent]) -> dict[str, bool]:
    """machine_click per request id, as the rules decide over every recipient's whole sequence."""
    by_pair: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for click in clicks:
        by_pair[(click.email_id, click.user_id)].append(stored(click))
    machine: dict[str, bool] = {}
    rules = sequence_rules(settings)
    for items in by_pair.values():
        found = sequence_verdicts([c for c in map(sequence_click, items) if c], rules)
        for item in items:
            own = enrichment(ClickEvent.from_json(item))["machine_click"]
            machine[item["request_id"]] = bool(own or item["click_key"] in found)
    return machine


@pytest.mark.parametrize(
    ("crash", "seed"),
    [
        (None, 1),
        (None, 2),
        (("revise", "before"), 1),
        (("revise", "after"), 2),
        (("commit", "after"), 1),
        (("claim", "after"), 2),
        (("opener", "after"), 1),
    ],
    ids=lambda c: (
        "no-crash" if c is None else ("-".join(reversed(c)) if isinstance(c, tuple) else f"seed{c}")
    ),
)
def test_revised_clicks_move_between_counters_once(store, ddb, settings, crash, seed):
    clicks = make_clicks(seed)
    rng = random.Random(seed)
    for click in clicks:
        store.put_event(click)
    # Duplicated and reordered within each recipient's stream: a honeypot hit or the end of a
    # burst often comes in a later batch than the clicks it revises.
    records = list(clicks) + rng.sample(clicks, len(clicks) // 3)
    rng.shuffle(records)
    # Some recipients whose clicks the rules revise also open as people, counted between the
    # clicks: a revised click that put one in the union of human openers and clickers hands it
    # to their open (and one whose open came first keeps it).
    opens = [
        OpenEvent(c.email_id, c.clicked_at, f"o-{c.request_id}", c.expires_at, user_id=c.user_id)
        for c in clicks
        if c.request_id.endswith("-0") and c.user_id in OPENERS
    ]
    assert opens
    for event in opens:
        store.put_event(event)
    half = len(records) // 2
    injector = CrashInjector(ddb, settings, crash[0], when=crash[1], rate=0.3, seed=seed) if crash else None
    writer = ClickWriter(ddb, settings)
    failed = deliver(writer, [(stored(c), enrichment(c)) for c in records[:half]], rng)
    human = {"machine_open": False, "enriched_at": "2026-12-07T00:00:00.000Z"}
    deliver(EnrichmentWriter(ddb, settings), [(stored_open(o), human) for o in opens], rng)
    failed += deliver(writer, [(stored(c), enrichment(c)) for c in records[half:]], rng)
    if injector is not None:
        injector.enabled = False
        assert injector.crashes[injector.step] > 0 and failed > 0

    items = {item["request_id"]: item for item in all_items(ddb, settings.clicks_table)}
    want = expected_verdicts(settings, clicks)
    assert {rid: items[rid]["machine_click"] for rid in want} == want
    revised = [item for item in items.values() if item.get("verdict_version")]
    assert revised, "the scenarios revise clicks counted human"
    assert all(item["verdict_version"] == 1 and item["evidence"]["rule"] for item in revised)
    # The person behind the gateway stays human; the honeypot's neighbours name it.
    for rid, item in items.items():
        if rid.split("-")[1] == "gateway_then_person" and item["ip"].startswith("81."):
            assert item["machine_click"] is False
        if item["evidence"].get("rule") == "honeypot" and not item.get("honeypot"):
            assert item["evidence"]["honeypot_click"] in {
                i["click_key"] for i in items.values() if i.get("honeypot")
            }
    assert_aggregates_equal_recount(ddb, settings)
    assert_estimated_human_openers_equal_recount(ddb, settings)


def click_batch(store, ddb, settings, *clicks: ClickEvent) -> None:
    """The clicks as one batch of the clicks' stream, through the real writer."""
    for click in clicks:
        store.put_event(click)
    assert ClickWriter(ddb, settings).write_batch([(stored(c), enrichment(c)) for c in clicks]) == [
        True
    ] * len(clicks)


def engaged_marker(ddb, settings, user_id: str) -> dict[str, Any]:
    key = meta_key(email_pk("e1"), engaged_sk(user_id))
    return plain_item(
        ddb.get_item(TableName=settings.meta_table, Key=key, ConsistentRead=True).get("Item", {})
    )


# What makes the first click ("a", counted human alone) a machine's, in a later batch.
LATER = {
    "honeypot": [("hp", 6.0)],
    "burst": [("b", 0.4), ("c", 0.8)],
}


@pytest.mark.parametrize("revised_by", sorted(LATER))
def test_a_user_whose_only_human_event_is_revised_leaves_the_estimated_human_openers(
    store, ddb, settings, revised_by
):
    start = datetime.now(UTC) - timedelta(hours=2)
    click_batch(store, ddb, settings, one_click("c-a", "u1", start, "a", "198.51.100.7"))
    # Another person stays in the union throughout.
    click_batch(store, ddb, settings, one_click("c-p", "u2", start, "a", "81.2.69.7"))
    assert stats.email_stats(ddb, settings.meta_table, "e1")["estimated_human_openers"] == 2
    assert engaged_marker(ddb, settings, "u1")["seen_by"].startswith("click:")

    later = [
        one_click(f"c-{link}", "u1", start + timedelta(seconds=seconds), link, "198.51.100.7")
        for link, seconds in LATER[revised_by]
    ]
    click_batch(store, ddb, settings, *later)
    # A replay of the batch: counted already, and the settle finds nothing left to move.
    assert ClickWriter(ddb, settings).write_batch([(stored(c), enrichment(c)) for c in later]) == [
        False
    ] * len(later)
    first = next(i for i in all_items(ddb, settings.clicks_table) if i["request_id"] == "c-a")
    assert first["machine_click"] is True and first["evidence"]["rule"] == revised_by
    assert assert_estimated_human_openers_equal_recount(ddb, settings)["e1"] == {"u2"}
    assert "seen_by" not in engaged_marker(ddb, settings, "u1")
    assert_aggregates_equal_recount(ddb, settings)


def test_a_revised_click_hands_the_union_to_the_users_human_open(store, ddb, settings):
    start = datetime.now(UTC) - timedelta(hours=2)
    # The click is counted first, so the union's marker names it; the open comes after.
    click_batch(store, ddb, settings, one_click("c-a", "u1", start, "a", "198.51.100.8"))
    opened = OpenEvent(
        "e1",
        iso_millis(int((start + timedelta(seconds=2)).timestamp() * 1000)),
        "o-1",
        2_000_000_000,
        user_id="u1",
    )
    store.put_event(opened)
    writer = EnrichmentWriter(ddb, settings)
    assert writer.write(stored_open(opened), {"machine_open": False, "enriched_at": "x"}) is True
    assert (
        engaged_marker(ddb, settings, "u1")["seen_by"]
        == f"click:{stored(one_click('c-a', 'u1', start, 'a', '198.51.100.8'))['click_key']}"
    )

    click_batch(
        store, ddb, settings, one_click("c-hp", "u1", start + timedelta(seconds=5), "hp", "198.51.100.8")
    )
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert (got["unique_human_clickers"], got["estimated_human_openers"]) == (0, 1)
    assert engaged_marker(ddb, settings, "u1")["seen_by"] == f"open:{opened.open_key}"
    assert_estimated_human_openers_equal_recount(ddb, settings)
    assert_aggregates_equal_recount(ddb, settings)
