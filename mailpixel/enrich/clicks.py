"""Enrichment of clicks: the clicks table's stream → client, `machine_click` verdict with its
evidence, and geolocation, written onto the click.

The opens' stream handler (`handler.StreamHandler`: poison records, batched geolocation, the
wait for a failing provider, partial batch failures) does the work; this module gives it the
clicks' parsing and verdict, and the per-batch writer (`writer.EnrichmentWriter`) counts them
as it counts opens (`aggregates.CLICKS`): each click claimed once (`attribute_exists(click_key)
AND attribute_not_exists(enriched_at)`, so a replayed record changes nothing and an erased click
is not recreated), a unique-clicker marker per email and user, and one counter transaction per
batch: the email's clicks (all, human, machine) and unique clickers, its day counters, and one
counter item per destination (`email#ID / link#HASH`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from mailpixel.config import Settings
from mailpixel.enrich.aggregates import CLICKS
from mailpixel.enrich.classify.clicks import classify_click, seconds_since_issue
from mailpixel.enrich.classify.ranges import IpRanges
from mailpixel.enrich.classify.user_agents import parse_client
from mailpixel.enrich.handler import StreamHandler, _opened, build_handler, parse_record, request_of
from mailpixel.enrich.writer import EnrichmentWriter
from mailpixel.model.keys import CLICK_KEY


def clicked_at(event: Mapping[str, Any]) -> float | None:
    return _opened(event, "clicked_at")


def click_enrichment(event: Mapping[str, Any], ranges: IpRanges) -> tuple[dict[str, Any], str | None]:
    """Client and verdict (with evidence) for one click; geo and enriched_at are added later."""
    user_agent, lookup_ip = request_of(event)
    client = parse_client(user_agent)
    seconds = seconds_since_issue(event.get("issued_t"), clicked_at(event))
    method = str(event.get("method") or "GET")
    verdict = classify_click(user_agent, lookup_ip, client, ranges, method=method, seconds=seconds)
    enrichment = {
        "client": client,
        "machine_click": verdict.machine_click,
        "machine_reason": verdict.machine_reason,
        "evidence": verdict.evidence,
        "rule": verdict.rule,
    }
    return enrichment, lookup_ip or None


def build_click_handler(settings: Settings, **options: Any) -> StreamHandler:
    """The clicks' stream handler: `build_handler`'s, with the clicks' parse, verdict and write."""
    return build_handler(
        settings,
        make_writer=partial(EnrichmentWriter, kind=CLICKS),
        parse=partial(parse_record, sort_key=CLICK_KEY),
        enrich_item=click_enrichment,
        event_time=clicked_at,
        **options,
    )
