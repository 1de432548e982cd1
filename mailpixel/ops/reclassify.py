"""`mailpixel reclassify --email-id E`: today's rules and ranges over an email's stored opens and
clicks. Each changed verdict is rewritten with its evidence, and the email's aggregates move
exactly as a recount with the new rules would give; what changed is printed.

Each event is revised the way enrichment revises a click the sequence rules catch late
(`aggregates.revision_transaction`): its new verdict and the counters it moves, in one
transaction conditioned on its `verdict_version` and on its counting batch's marker, so a rerun
(after a crash, or just again) finds nothing left to move. Then, for every user of the email
(so a rerun mends what a crash between the steps left), the unique-opener (clicker) marker and
the `engaged#` marker of the union of human openers and clickers name an event still human, or
none (the union's marker is created for a user the new rules make human), each with the count it
stands for in the same transaction; and the email's first human open is set again from the opens
as they now are. Events not yet counted by enrichment are left to it and listed.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings
from mailpixel.ddb.batch import batch_get
from mailpixel.ddb.codec import plain_item
from mailpixel.ddb.store import paged
from mailpixel.ddb.update import update
from mailpixel.enrich.aggregates import (
    CLICKS,
    COUNTED_BY,
    ENGAGED,
    OPENS,
    HumanMarker,
    HumanMarkerChange,
    Kind,
    batch_committed,
    engaged_claims,
    human_marker,
    human_marker_update,
    revision_transaction,
    unique_human_update,
)
from mailpixel.enrich.classify.clicks import sequence_verdicts
from mailpixel.enrich.classify.ranges import IpRanges, shipped_ranges
from mailpixel.enrich.clicks import click_enrichment, revised, sequence_click, sequence_rules
from mailpixel.enrich.handler import enrichment_for
from mailpixel.enrich.writer import RETRY
from mailpixel.model.events import iso_millis
from mailpixel.model.keys import ALL_SHARDS, STATS_SK, email_pk, meta_key
from mailpixel.ops.stage import add_target_arguments, target_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# What reclassifying may rewrite on an event (besides `verdict_version`); None removes it.
OPEN_FIELDS = ("machine_open", "machine_reason", "proxy", "client", "evidence")
CLICK_FIELDS = ("machine_click", "machine_reason", "client", "evidence")


@dataclass(frozen=True)
class Change:
    kind: str  # open | click
    at: str
    user_id: str | None
    before: str  # human | machine:<rule>
    after: str


def _verdict(event: Mapping[str, Any], kind: Kind) -> str:
    rule = (event.get("evidence") or {}).get("rule") or event.get("machine_reason")
    return f"machine:{rule}" if event.get(kind.verdict_field) else "human"


def _events(client: DynamoDBClient, table: str, email_id: str) -> list[dict[str, Any]]:
    pages = paged(
        client.query,
        TableName=table,
        KeyConditionExpression="email_id = :e",
        ExpressionAttributeValues={":e": {"S": email_id}},
        ConsistentRead=True,
    )
    return [plain_item(item) for item in pages]


def open_fields(event: Mapping[str, Any], ranges: IpRanges) -> dict[str, Any]:
    found, _ = enrichment_for(event, ranges)
    fields = {name: found.get(name) for name in OPEN_FIELDS}
    if "geo" in found:  # placed by its (new) proxy
        fields["geo"] = found["geo"]
    return fields


def click_fields(
    events: Iterable[Mapping[str, Any]], ranges: IpRanges, settings: Settings, at: str
) -> dict[str, dict[str, Any]]:
    """The verdict fields every click should have, by click key: its own rules, then the sequence
    rules over each recipient's clicks of the email."""
    by_user: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        by_user[event.get("user_id")].append(event)
    rules = sequence_rules(settings)
    wanted: dict[str, dict[str, Any]] = {}
    for user, clicks in by_user.items():
        found = sequence_verdicts([c for c in map(sequence_click, clicks) if c], rules) if user else {}
        for click in clicks:
            own, _ = click_enrichment(click, ranges)
            fields = {name: own.get(name) for name in CLICK_FIELDS}
            key = str(click[CLICKS.sort_key])
            if not own["machine_click"] and key in found:
                fields.update({k: v for k, v in revised(own, found[key], at).items() if k in CLICK_FIELDS})
            wanted[key] = fields
    return wanted


# A human event as a marker names it, with the batch that counted it: (name, counted_by).
HumanEvent = tuple[str, str | None]


def human_events(kind: Kind, final: Mapping[str, Mapping[str, Any]]) -> dict[str, list[HumanEvent]]:
    """Per user of the email (every one, human or not), their human events of `kind` by sort key
    with the batch that counted each, earliest first."""
    found: dict[str, list[HumanEvent]] = {}
    for key in sorted(final):
        event = final[key]
        if not event.get("user_id"):
            continue
        events = found.setdefault(str(event["user_id"]), [])
        if kind.is_human(event):
            token = event.get(COUNTED_BY)
            events.append((key, str(token) if token else None))
    return found


class Reclassifier:
    def __init__(self, client: DynamoDBClient, settings: Settings, ranges: IpRanges | None = None) -> None:
        self.client = client
        self.settings = settings
        self.ranges = ranges or shipped_ranges()
        self.at = ""  # when this run revises (`revised_at`)

    def run(self, email_id: str, *, dry_run: bool = False) -> dict[str, Any]:
        at = self.at = iso_millis(int(time.time() * 1000))
        opens = _events(self.client, self.settings.table, email_id)
        clicks = _events(self.client, self.settings.clicks_table, email_id)
        wanted_clicks = click_fields(clicks, self.ranges, self.settings, at)
        changes: list[Change] = []
        skipped = 0
        finals: dict[Kind, dict[str, dict[str, Any]]] = {}
        for kind, events, wanted in (
            (OPENS, opens, lambda e: open_fields(e, self.ranges)),
            (CLICKS, clicks, lambda e: wanted_clicks[str(e[CLICKS.sort_key])]),
        ):
            done, missed, finals[kind] = self._revise(kind, events, wanted, dry_run=dry_run)
            changes += done
            skipped += missed
        if not dry_run:
            # Recounted from the events as they now are, every user of the email (not only those
            # changed now, so a rerun after a crash between the steps mends what it left).
            for kind in (OPENS, CLICKS):
                self._markers(human_marker(kind), email_id, human_events(kind, finals[kind]))
            human_opens, human_clicks = (human_events(kind, finals[kind]) for kind in (OPENS, CLICKS))
            union = {
                user: engaged_claims(human_opens.get(user, ()), human_clicks.get(user, ()))
                for user in {*human_opens, *human_clicks}
            }
            self._markers(ENGAGED, email_id, union)
            if finals[OPENS]:
                self._first_human_open(email_id, finals[OPENS])
        return {
            "email_id": email_id,
            "dry_run": dry_run,
            "changed": len(changes),
            "not_yet_counted": skipped,
            "changes": [asdict(c) for c in changes],
        }

    def _revise(
        self,
        kind: Kind,
        events: list[dict[str, Any]],
        wanted: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        dry_run: bool,
    ) -> tuple[list[Change], int, dict[str, dict[str, Any]]]:
        """Revise each enriched event whose verdict changed; returns the changes, how many were
        left to enrichment, and every enriched event by sort key as it now is."""
        changes: list[Change] = []
        skipped = 0
        final: dict[str, dict[str, Any]] = {}
        for event in events:
            key = str(event[kind.sort_key])
            if not event.get("enriched_at") or event.get("enrich_skipped"):
                continue
            fields = wanted(event)
            changed = {name: value for name, value in fields.items() if event.get(name) != value}
            final[key] = {**event, **fields}
            if not changed:
                continue
            if not event.get(COUNTED_BY):
                skipped += 1
                continue
            changes.append(
                Change(
                    kind.name,
                    str(event[kind.time_field]),
                    event.get("user_id"),
                    _verdict(event, kind),
                    _verdict(final[key], kind),
                )
            )
            if dry_run:
                continue
            items = revision_transaction(
                self.settings,
                event,
                final[key],
                {**changed, "revised_at": self.at},
                kind=kind,
                shard=zlib.crc32(key.encode()) % ALL_SHARDS,
            )
            RETRY.call(lambda items=items: self.client.transact_write_items(TransactItems=items))  # type: ignore[misc]
        return changes, skipped, final

    def _markers(self, marker: HumanMarker, email_id: str, humans: Mapping[str, list[HumanEvent]]) -> None:
        """Each user's `marker` names the event it names, if still human, else their earliest
        human event (`humans`: per user, earliest first), else nothing; the count it stands for
        moves with it, in one transaction conditioned on the marker as read."""
        users = sorted(humans)
        keys = [meta_key(email_pk(email_id), marker.prefix(user)) for user in users]
        markers = {
            str(item["user_id"]): item
            for item in map(
                plain_item, batch_get(self.client, self.settings.meta_table, keys, consistent=True)
            )
        }
        for user in users:
            if user not in markers and not marker.standalone:
                continue  # erased (forget), or from before markers: nothing to move
            was = markers.get(user, {}).get(marker.attribute)
            claims = dict(humans[user])
            if was in claims or (was is None and not claims):
                continue
            now, token = humans[user][0] if claims else (None, None)
            change = HumanMarkerChange(marker, was, now, int(now is not None) - int(was is not None), token)
            items = [human_marker_update(self.settings, email_id, user, change)]
            if change.delta:
                items.append(
                    unique_human_update(self.settings, email_id, change.delta, counter=marker.counter)
                )
            if token:  # named only once its batch committed (`HumanMarkerChange.now_counted_by`)
                items.append(batch_committed(self.settings, token))
            RETRY.call(lambda items=items: self.client.transact_write_items(TransactItems=items))  # type: ignore[misc]

    def _first_human_open(self, email_id: str, final: Mapping[str, Mapping[str, Any]]) -> None:
        """Set again from the opens as they now are (a bound only moves outwards on its own)."""
        human = [str(e[OPENS.time_field]) for e in final.values() if OPENS.is_human(e)]
        key = meta_key(email_pk(email_id), STATS_SK)
        if human:
            args = update(self.settings.meta_table, key, sets={"first_human_open_at": {"S": min(human)}})
        else:
            args = update(self.settings.meta_table, key, removes=("first_human_open_at",))
        self.client.update_item(**args)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "reclassify",
        help="run today's rules and ranges over an email's opens and clicks; rewrite changed "
        "verdicts and recount its aggregates",
    )
    parser.add_argument("--email-id", required=True)
    parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--clicks-table", help="default: MAILPIXEL_CLICKS_TABLE, the stage's, else the local one"
    )
    add_target_arguments(parser)
    parser.set_defaults(func=cmd_reclassify)


def cmd_reclassify(args: argparse.Namespace) -> int:
    from mailpixel.aws import dynamodb_client

    settings = target_settings(args)
    if args.clicks_table:
        settings = settings.with_overrides(clicks_table=args.clicks_table)
    result = Reclassifier(dynamodb_client(settings), settings).run(args.email_id, dry_run=args.dry_run)
    if args.format == "json":
        print(json.dumps(result))
        return 0
    for change in result["changes"]:
        print(
            f"{change['kind']:5} {change['at']}  {change['user_id'] or '-'}  "
            f"{change['before']} -> {change['after']}"
        )
    verb = "would change" if args.dry_run else "changed"
    print(
        f"{result['email_id']}: {verb} {result['changed']} verdicts; "
        f"{result['not_yet_counted']} not yet counted by enrichment"
    )
    return 0
