"""`mailpixel reclassify`: a past campaign enriched under yesterday's rules and ranges, then
reclassified with today's, ends exactly where enriching it from scratch with today's rules ends:
the same verdicts and evidence on every open and click, the same aggregates (totals, unique
human openers and clickers, breakdowns, first human open, per day, per link). A second run
changes nothing."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from mailpixel.api import stats
from mailpixel.config import Settings
from mailpixel.enrich.classify.ranges import IpRanges, RangeSet, shipped_ranges
from mailpixel.enrich.clicks import ClickWriter, click_enrichment
from mailpixel.enrich.handler import enrichment_for
from mailpixel.enrich.writer import EnrichmentWriter
from mailpixel.model.clicks import ClickEvent
from mailpixel.model.events import OpenEvent, iso_millis
from mailpixel.ops.cli import main
from mailpixel.ops.local.tables import ensure_tables
from tests.conftest import all_items, target_args
from tests.integration.test_click_revisions import engaged_marker
from tests.integration.test_rates import assert_estimated_human_openers_equal_recount

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
MICROSOFT_EOP = "40.107.22.35"  # in the shipped Exchange Online (scanner) ranges


def yesterdays_ranges() -> IpRanges:
    """Before a `ranges refresh`: no Microsoft list yet, and a list (since withdrawn) that put a
    network of people among the scanners."""
    kept = [s for s in shipped_ranges().sets.values() if s.owner != "microsoft"]
    withdrawn = RangeSet("oldscan", "scanner", (ipaddress.ip_network("81.2.69.0/24"),))
    return IpRanges([*kept, withdrawn])


def campaign() -> tuple[list[OpenEvent], list[ClickEvent]]:
    start = datetime.now(UTC) - timedelta(days=2)
    opens, clicks = [], []

    def at(seconds: float) -> tuple[str, int]:
        epoch_ms = int((start + timedelta(seconds=seconds)).timestamp() * 1000)
        return iso_millis(epoch_ms), epoch_ms // 1000 + 400 * 86_400

    people = [("p1", "81.2.69.10"), ("p2", "81.2.69.11"), ("p3", "203.0.113.5"), ("m1", MICROSOFT_EOP)]
    for n, (user, ip) in enumerate(people):
        moment, expires = at(600 + n * 700)
        opens.append(OpenEvent("e1", moment, f"o-{user}", expires, user_id=user, ip=ip, user_agent=OUTLOOK))
        moment, expires = at(610 + n * 700)
        clicks.append(
            ClickEvent(
                "e1",
                moment,
                f"c-{user}",
                expires,
                url="https://shop.example.com/a",
                user_id=user,
                ip=ip,
                user_agent=CHROME,
            )
        )
    # A gateway following 3 links within a second: no burst under yesterday's K=4, one today.
    for i, link in enumerate("abc"):
        moment, expires = at(30 + i * 0.3)
        clicks.append(
            ClickEvent(
                "e1",
                moment,
                f"c-gw-{i}",
                expires,
                url=f"https://shop.example.com/{link}",
                user_id="gw",
                ip="198.51.100.9",
                user_agent=CHROME,
            )
        )
    moment, expires = at(5000)  # the person behind that gateway, later: human either way
    clicks.append(
        ClickEvent(
            "e1",
            moment,
            "c-gw-person",
            expires,
            url="https://shop.example.com/b",
            user_id="gw",
            ip="203.0.113.9",
            user_agent=CHROME,
        )
    )
    return opens, clicks


def enrich(store, ddb, settings: Settings, ranges: IpRanges, opens, clicks) -> None:
    for event in [*opens, *clicks]:
        store.put_event(event)
    entries = []
    for event in opens:
        found, _ = enrichment_for({**event.to_json(), "open_key": event.open_key}, ranges)
        entries.append(
            (
                {**event.to_json(), "open_key": event.open_key},
                {
                    **found,
                    "geo": found.get("geo") or {"source": "none"},
                    "enriched_at": "2026-12-07T00:00:00.000Z",
                },
            )
        )
    assert all(r is True for r in EnrichmentWriter(ddb, settings).write_batch(entries))
    entries = []
    for event in clicks:
        item = {**event.to_json(), "click_key": event.click_key}
        found, _ = click_enrichment(item, ranges)
        entries.append(
            (item, {**found, "geo": {"source": "none"}, "enriched_at": "2026-12-07T00:00:00.000Z"})
        )
    # Two batches, as the stream would bring them.
    writer = ClickWriter(ddb, settings)
    assert all(r is True for r in writer.write_batch(entries[:5]) + writer.write_batch(entries[5:]))


VERDICT = ("machine_open", "machine_click", "machine_reason", "proxy", "client", "evidence")


def verdicts(ddb, settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        item["request_id"]: {k: item.get(k) for k in VERDICT}
        for table in (settings.table, settings.clicks_table)
        for item in all_items(ddb, table)
    }


def aggregates(ddb, settings: Settings) -> dict[str, Any]:
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    today = datetime.now(UTC).date()
    first, last = stats.day_range(str(today - timedelta(days=3)), str(today))
    days = stats.daily(ddb, settings.meta_table, "e1", first, last)
    return {"stats": got, "days": days}


def test_reclassify_moves_a_past_campaign_exactly_where_todays_rules_put_it(store, ddb, settings, capsys):
    opens, clicks = campaign()
    yesterday = settings.with_overrides(click_burst_links=4)
    enrich(store, ddb, yesterday, yesterdays_ranges(), opens, clicks)
    before = verdicts(ddb, settings)
    assert before["o-p1"]["machine_open"] and not before["o-m1"]["machine_open"]
    assert not before["c-gw-0"]["machine_click"]

    # Today's rules from scratch, on tables of their own.
    fresh = settings.with_overrides(
        table=settings.table + "-fresh",
        meta_table=settings.meta_table + "-fresh",
        clicks_table=settings.clicks_table + "-fresh",
    )
    ensure_tables(ddb, fresh.table, fresh.meta_table, fresh.clicks_table)
    from mailpixel.ddb.store import EventStore

    enrich(EventStore(ddb, fresh.table, fresh.clicks_table), ddb, fresh, shipped_ranges(), opens, clicks)

    assert aggregates(ddb, settings) != aggregates(ddb, fresh)
    assert assert_estimated_human_openers_equal_recount(ddb, settings)["e1"] == {"m1", "p3", "gw"}
    dry = [
        "reclassify",
        "--email-id",
        "e1",
        "--dry-run",
        *target_args(settings),
        "--clicks-table",
        settings.clicks_table,
    ]
    assert main(dry) == 0 and "would change" in capsys.readouterr().out
    assert verdicts(ddb, settings) == before  # a dry run changes nothing

    args = ["reclassify", "--email-id", "e1", *target_args(settings), "--clicks-table", settings.clicks_table]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "e1: changed" in printed and "machine:scanner_range:oldscan -> human" in printed
    assert "human -> machine:burst" in printed and "human -> machine:scanner_range:microsoft" in printed

    assert verdicts(ddb, settings) == verdicts(ddb, fresh)
    assert aggregates(ddb, settings) == aggregates(ddb, fresh)
    people = aggregates(ddb, settings)["stats"]
    assert people["unique_human_clickers"] == 4  # p1, p2, p3, and the person behind the gateway
    # The union of human openers and clickers, recounted: p1 and p2 (machine under the withdrawn
    # list) enter it, m1 (Exchange Online's scanner today) leaves it.
    union = assert_estimated_human_openers_equal_recount(ddb, settings)
    assert union["e1"] == {"p1", "p2", "p3", "gw"}
    assert people["estimated_human_openers"] == 4
    assert assert_estimated_human_openers_equal_recount(ddb, fresh) == union
    names = {user: engaged_marker(ddb, settings, user).get("seen_by") for user in ("p1", "m1")}
    assert names == {"p1": f"open:{opens[0].open_key}", "m1": None}

    assert main([*args, "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["changed"] == 0 and again["changes"] == []
