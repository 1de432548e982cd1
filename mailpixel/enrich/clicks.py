"""Enrichment of clicks: the clicks table's stream → client, `machine_click` verdict with its
evidence, and geolocation, written onto the click.

The opens' stream handler (`handler.StreamHandler`: poison records, batched geolocation, the
wait for a failing provider, partial batch failures) does the work; this module gives it the
clicks' parsing, verdict and write. The write is one conditional UpdateItem
(`attribute_exists(click_key) AND attribute_not_exists(enriched_at)`), so a replayed record
changes nothing and an erased click is not recreated. Click aggregates are not kept yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings
from mailpixel.ddb.codec import to_attr
from mailpixel.ddb.update import update
from mailpixel.enrich.classify.clicks import classify_click, seconds_since_issue
from mailpixel.enrich.classify.ranges import IpRanges
from mailpixel.enrich.classify.user_agents import parse_client
from mailpixel.enrich.handler import StreamHandler, _opened, build_handler, parse_record, request_of
from mailpixel.model.keys import CLICK_KEY

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CLICK_ENRICHED_FIELDS = ("client", "machine_click", "machine_reason", "evidence", "geo", "enriched_at")
CONDITION = f"attribute_exists({CLICK_KEY}) AND attribute_not_exists(enriched_at)"


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


class ClickWriter:
    """Writes a click's enrichment once, into the clicks table."""

    def __init__(self, client: DynamoDBClient, settings: Settings) -> None:
        self.client = client
        self.table = settings.clicks_table

    def write(self, event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> bool:
        """True when written now; False when already enriched (a replayed record) or erased."""
        sets = {
            name: to_attr(enrichment[name])
            for name in CLICK_ENRICHED_FIELDS
            if enrichment.get(name) is not None
        }
        key = {"email_id": {"S": str(event["email_id"])}, CLICK_KEY: {"S": str(event[CLICK_KEY])}}
        try:
            self.client.update_item(
                **update(self.table, key, sets=sets, removes=("pending_ip",), condition=CONDITION)
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def write_batch(
        self, entries: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[bool | Exception]:
        """Each click on its own (clicks have no counters to sum per batch): True, False or the
        error, as `EnrichmentWriter.write_batch` answers."""
        results: list[bool | Exception] = []
        for event, enrichment in entries:
            try:
                results.append(self.write(event, enrichment))
            except Exception as exc:  # noqa: BLE001 - the handler reports the record and stops there
                results.append(exc)
        return results


def build_click_handler(settings: Settings, **options: Any) -> StreamHandler:
    """The clicks' stream handler: `build_handler`'s, with the clicks' parse, verdict and write."""
    return build_handler(
        settings,
        make_writer=ClickWriter,
        parse=partial(parse_record, sort_key=CLICK_KEY),
        enrich_item=click_enrichment,
        event_time=clicked_at,
        set_aside_unwritable=False,
        **options,
    )
