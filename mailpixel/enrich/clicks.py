"""Enrichment of clicks: the clicks table's stream → client, `machine_click` verdict with its
evidence, and geolocation, written onto the click; then the sequence rules, which may revise it.

The opens' stream handler (`handler.StreamHandler`: poison records, batched geolocation, the
wait for a failing provider, partial batch failures) does the work; this module gives it the
clicks' parsing and verdict, and the per-batch writer (`writer.EnrichmentWriter`) counts them
as it counts opens (`aggregates.CLICKS`): each click claimed once (`attribute_exists(click_key)
AND attribute_not_exists(enriched_at)`, so a replayed record changes nothing and an erased click
is not recreated), a unique-clicker marker per email and user, and one counter transaction per
batch: the email's clicks (all, human, machine) and unique clickers, its day counters, and one
counter item per destination (`email#ID / link#HASH`).

After the batch is counted, `ClickWriter` settles it: for each recipient whose clicks the batch
holds, it reads that recipient's clicks of the email around them and runs the sequence rules
(`classify.clicks.sequence_verdicts`: honeypot, multi_source, burst). A counted human click they
make a machine's is revised (`aggregates.revision_transaction`): its verdict and evidence, the
counters and the unique human clickers move in one transaction conditioned on the click's
`verdict_version`, so replays, duplicates and crashes move them once; a click that put its user
among the estimated human openers hands that to their earliest other counted human open or click
(or leaves the union, one fewer) in the same transaction. A replayed record settles
again, which finds nothing left to move; a settle that fails reports the batch for retry.
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings
from mailpixel.ddb.batch import batch_get
from mailpixel.ddb.codec import plain_item
from mailpixel.enrich.aggregates import (
    CLICKS,
    COUNTED_BY,
    ENGAGED,
    OPENS,
    HumanMarker,
    Kind,
    engaged_claim,
    engaged_claims,
    human_marker,
    human_marker_change,
    revision_transaction,
)
from mailpixel.enrich.classify.clicks import (
    SequenceClick,
    SequenceRules,
    classify_click,
    seconds_since_issue,
    sequence_verdicts,
)
from mailpixel.enrich.classify.machine import SECURITY_SCANNER
from mailpixel.enrich.classify.ranges import IpRanges
from mailpixel.enrich.classify.user_agents import parse_client
from mailpixel.enrich.handler import StreamHandler, _opened, build_handler, parse_record, request_of
from mailpixel.enrich.writer import RETRY, EnrichmentWriter, Entry
from mailpixel.model.events import iso_millis
from mailpixel.model.keys import ALL_SHARDS, CLICK_KEY, USER_INDEX, email_pk, meta_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def clicked_at(event: Mapping[str, Any]) -> float | None:
    return _opened(event, "clicked_at")


def sequence_rules(settings: Settings) -> SequenceRules:
    return SequenceRules(
        burst_links=settings.click_burst_links,
        burst_seconds=settings.click_burst_seconds,
        multi_source_seconds=settings.click_multi_source_seconds,
        honeypot_window_seconds=settings.click_honeypot_window_seconds,
    )


def click_enrichment(event: Mapping[str, Any], ranges: IpRanges) -> tuple[dict[str, Any], str | None]:
    """Client and verdict (with evidence) for one click; geo and enriched_at are added later."""
    user_agent, lookup_ip = request_of(event)
    client = parse_client(user_agent)
    seconds = seconds_since_issue(event.get("issued_t"), clicked_at(event))
    method = str(event.get("method") or "GET")
    verdict = classify_click(
        user_agent,
        lookup_ip,
        client,
        ranges,
        method=method,
        seconds=seconds,
        honeypot=event.get("honeypot") is True,
    )
    enrichment = {
        "client": client,
        "machine_click": verdict.machine_click,
        "machine_reason": verdict.machine_reason,
        "evidence": verdict.evidence,
        "rule": verdict.rule,
    }
    return enrichment, lookup_ip or None


def sequence_click(item: Mapping[str, Any]) -> SequenceClick | None:
    at = clicked_at(item)
    if at is None:
        return None
    ip = item.get("ip")
    return SequenceClick(
        str(item[CLICK_KEY]),
        at,
        str(item.get("url")),
        ip if isinstance(ip, str) else None,
        item.get("honeypot") is True,
    )


def revised(item: Mapping[str, Any], evidence: Mapping[str, Any], at: str) -> dict[str, Any]:
    """What a revision rewrites on a human click made a machine's by a sequence rule: the rule's
    evidence, with what the per-click verdict had found (its range owner, its seconds)."""
    kept = {k: v for k, v in (item.get("evidence") or {}).items() if k != "rule"}
    return {
        "machine_click": True,
        "machine_reason": SECURITY_SCANNER,
        "evidence": {**kept, **evidence},
        "revised_at": at,
    }


class ClickWriter(EnrichmentWriter):
    """The clicks' per-batch writer: count the batch, then settle its recipients' sequences."""

    def __init__(self, client: DynamoDBClient, settings: Settings, **options: Any) -> None:
        super().__init__(client, settings, kind=CLICKS, **options)
        self.rules = sequence_rules(settings)

    def write_batch(self, entries: Sequence[Entry]) -> list[bool | Exception]:
        results = super().write_batch(entries)
        pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, ((event, _), result) in enumerate(zip(entries, results, strict=True)):
            if not isinstance(result, Exception) and event.get("user_id"):
                pairs[(str(event["email_id"]), str(event["user_id"]))].append(i)
        work = list(pairs.items())
        outcomes = self._each(work, lambda pair: self.settle(*pair[0], [entries[i][0] for i in pair[1]]))
        for (_, indexes), outcome in zip(work, outcomes, strict=True):
            if isinstance(outcome, Exception):
                for i in indexes:
                    results[i] = outcome
        return results

    def user_clicks(
        self, email_id: str, user_id: str, around: Iterable[float] = ()
    ) -> dict[str, dict[str, Any]]:
        """The user's counted clicks of the email by click key: those within the rules' reach
        of the times `around`, or all of them when `around` is empty."""
        moments = list(around)
        reach = self.rules.reach
        span = (
            (
                iso_millis(int((min(moments) - reach) * 1000)),
                iso_millis(int((max(moments) + reach) * 1000)) + "~",
            )
            if moments
            else None
        )
        return user_events(self.client, CLICKS, self.settings, email_id, user_id, span)

    def settle(self, email_id: str, user_id: str, batch: Sequence[Mapping[str, Any]]) -> None:
        """Revise the user's counted human clicks of the email that the sequence rules, over their
        clicks around `batch`, make a machine's."""
        moments = [t for t in (clicked_at(e) for e in batch) if t is not None]
        clicks = self.user_clicks(email_id, user_id, moments)
        # The index is eventually consistent: the batch's own clicks are read from the table.
        keys = [CLICKS.key(e) for e in batch]
        for raw in batch_get(self.client, self.table, keys, consistent=True):
            item = plain_item(raw)
            if item.get("enriched_at") and item.get(COUNTED_BY):
                clicks[str(item[CLICK_KEY])] = item
        found = sequence_verdicts([c for c in map(sequence_click, clicks.values()) if c], self.rules)
        targets = sorted(k for k in found if clicks[k].get("machine_click") is False)
        if targets:
            self.revise(email_id, user_id, {k: (clicks[k], found[k]) for k in targets})

    def revise(
        self, email_id: str, user_id: str, targets: Mapping[str, tuple[dict[str, Any], Mapping[str, Any]]]
    ) -> None:
        """One transaction per click made a machine's, in order. A click that one of the user's
        markers names (the unique human clicker; the union of human openers and clickers) moves
        it to the user's earliest other counted human event it may name, or removes it and
        takes one off the count it stands for, in the same transaction."""
        markers = (human_marker(CLICKS), ENGAGED)
        keys = [meta_key(email_pk(email_id), m.prefix(user_id)) for m in markers]
        found = {
            str(item["sk"]): item
            for item in map(
                plain_item, batch_get(self.client, self.settings.meta_table, keys, consistent=True)
            )
        }
        names: dict[HumanMarker, str | None] = {
            m: found.get(key["sk"]["S"], {}).get(m.attribute) for m, key in zip(markers, keys, strict=True)
        }
        others: dict[HumanMarker, list[tuple[str, str]]] | None = None
        at = iso_millis(int(time.time() * 1000))
        for key, (item, evidence) in targets.items():
            claims = {human_marker(CLICKS): key, ENGAGED: engaged_claim(CLICKS, key)}
            if others is None and any(names[m] == claims[m] for m in markers):
                others = self.other_humans(email_id, user_id, set(targets))
            changes = [
                change
                for m in markers
                if (
                    change := human_marker_change(
                        m, claims[m], False, names[m], next(iter((others or {}).get(m, ())), None)
                    )
                )
            ]
            changed = revised(item, evidence, at)
            items = revision_transaction(
                self.settings,
                item,
                {**item, **changed},
                changed,
                kind=CLICKS,
                markers=changes,
                shard=zlib.crc32(key.encode()) % ALL_SHARDS,
            )
            RETRY.call(lambda items=items: self.client.transact_write_items(TransactItems=items))  # type: ignore[misc]
            for change in changes:
                names[change.marker] = change.now

    def other_humans(
        self, email_id: str, user_id: str, leaving: set[str]
    ) -> dict[HumanMarker, list[tuple[str, str]]]:
        """Per marker, the user's counted human events of the email (all of them, not only the
        nearby) it may name instead, earliest first, as it names them, each with the batch that
        counted it: their human clicks but `leaving`; for the union, their human opens too."""
        clicks = [
            (key, str(c[COUNTED_BY]))
            for key, c in self.user_clicks(email_id, user_id).items()
            if c.get("machine_click") is False and key not in leaving
        ]
        opens = [
            (key, str(o[COUNTED_BY]))
            for key, o in user_events(self.client, OPENS, self.settings, email_id, user_id).items()
            if OPENS.is_human(o)
        ]
        return {human_marker(CLICKS): sorted(clicks), ENGAGED: engaged_claims(opens, clicks)}


def user_events(
    client: DynamoDBClient,
    kind: Kind,
    settings: Settings,
    email_id: str,
    user_id: str,
    span: tuple[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The user's counted events of `kind` of the email by sort key (through the `by_user`
    index), those with a sort key within `span` when given."""
    args: dict[str, Any] = {
        "TableName": kind.table(settings),
        "IndexName": USER_INDEX,
        "KeyConditionExpression": "user_id = :u",
        "FilterExpression": "email_id = :e",
        "ExpressionAttributeValues": {":u": {"S": user_id}, ":e": {"S": email_id}},
    }
    if span is not None:
        args["KeyConditionExpression"] += f" AND {kind.sort_key} BETWEEN :lo AND :hi"
        args["ExpressionAttributeValues"] |= {":lo": {"S": span[0]}, ":hi": {"S": span[1]}}
    found: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("query").paginate(**args):
        for raw in page.get("Items", []):
            item = plain_item(raw)
            if item.get("enriched_at") and item.get(COUNTED_BY):
                found[str(item[kind.sort_key])] = item
    return found


def build_click_handler(settings: Settings, **options: Any) -> StreamHandler:
    """The clicks' stream handler: `build_handler`'s, with the clicks' parse, verdict and write."""
    return build_handler(
        settings,
        make_writer=ClickWriter,
        parse=partial(parse_record, sort_key=CLICK_KEY),
        enrich_item=click_enrichment,
        event_time=clicked_at,
        **options,
    )
