"""The enrichment write, per batch: each event once, each aggregate item at most once.

A batch is split into groups (events of a few emails whose aggregate items fit one
TransactWriteItems); each group gets a fresh token and goes through four steps, each step's
DynamoDB calls for the whole batch issued together from a thread pool:

1. **Claim** each event: its enrichment and `counted_by = TOKEN`, conditioned on
   `attribute_exists(open_key) AND attribute_not_exists(enriched_at)`. A replayed or duplicated
   record fails the condition and changes nothing; an erased event is not recreated.
   An event already enriched whose `counted_by` names a token without a marker was claimed by
   an attempt that died before step 4: it is *adopted* (`counted_by` moved to this token under
   the condition that it still names the dead one) and counted here from its stored fields.
2. **Unique openers** (clickers): one marker update per user and email (`aggregates.opener_update`).
3. **First/last open** and first human open: conditional updates per email, idempotent (opens only).
4. **Counters**: one transaction with the group's marker `batch#TOKEN` and one summed ADD per
   aggregate item. It commits once; its marker is what makes steps 1–2 count.

A crash between any two steps leaves claims without a marker, which the stream's retry adopts
and counts: exactly once under replays, duplicates, reordering and partial failures. Every
call retries throttling and conflicts with jittered backoff (`ddb.retry`); a group that still
fails reports its events, and the handler stops the batch at the first of them.
"""

from __future__ import annotations

import contextlib
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from mailpixel.config import Settings
from mailpixel.ddb.batch import batch_get
from mailpixel.ddb.codec import plain_item, to_attr
from mailpixel.ddb.retry import Backoff, cancellation_codes
from mailpixel.ddb.update import update
from mailpixel.enrich.aggregates import (
    COUNTED_BY,
    OPENS,
    Kind,
    Openers,
    bound_updates,
    counter_transaction,
    engaged_claim,
    engaged_update,
    item_keys,
    opener_update,
    sum_counters,
)
from mailpixel.model.keys import ALL_SHARDS, UNENRICHED, batch_key, batch_pk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

T = TypeVar("T")
R = TypeVar("R")

# TransactWriteItems takes at most 100 items: the marker and 99 aggregate items.
MAX_COUNTER_ITEMS = 99
# Concurrent batches of one campaign meet on its aggregate items; throttled calls and cancelled
# transactions wait a jittered, growing pause, about 6 s in all before the group is reported.
RETRY = Backoff(attempts=8, base_seconds=0.05, cap_seconds=1.6)
WORKERS = 16

Entry = tuple[Mapping[str, Any], Mapping[str, Any]]


@dataclass
class _Group:
    """Events counted under one token, in one transaction."""

    indexes: list[int]
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:20])
    error: Exception | None = None
    counted: dict[int, dict[str, Any]] = field(default_factory=dict)
    seen: dict[int, dict[str, Any]] = field(default_factory=dict)
    orphans: dict[int, str] = field(default_factory=dict)

    @property
    def shard(self) -> int:
        return zlib.crc32(self.token.encode()) % ALL_SHARDS


def _enriched(event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in event.items() if k not in ("pending_ip", UNENRICHED)}
    result.update({k: v for k, v in enrichment.items() if v is not None})
    return result


class EnrichmentWriter:
    """Writes batches of one kind of event: opens (the default) or clicks (`kind=CLICKS`)."""

    def __init__(
        self, client: DynamoDBClient, settings: Settings, *, kind: Kind = OPENS, workers: int = WORKERS
    ) -> None:
        self.client = client
        self.settings = settings
        self.kind = kind
        self.table = kind.table(settings)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="enrich-io")

    def claim_update(
        self, event: Mapping[str, Any], enrichment: Mapping[str, Any], token: str
    ) -> dict[str, Any]:
        """UpdateItem arguments that enrich the event and name `token` as the batch counting it."""
        present = [name for name in self.kind.enriched_fields if enrichment.get(name) is not None]
        sets = {name: to_attr(enrichment[name]) for name in present}
        sets[COUNTED_BY] = {"S": token}
        args = update(
            self.table,
            self.kind.key(event),
            sets=sets,
            removes=("pending_ip", UNENRICHED),
            condition=self.kind.condition,
        )
        args["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return args

    def write(self, event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> bool:
        """One event as a batch of one: True when counted now, False when already (or erased)."""
        result = self.write_batch([(event, enrichment)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def write_batch(self, entries: Sequence[Entry]) -> list[bool | Exception]:
        """Per entry: True (counted now), False (already enriched, or erased) or the error."""
        groups = self._groups(entries)
        self._each(
            [(i, g) for g in groups for i in g.indexes], lambda ig: self._claim(entries[ig[0]], ig[1], ig[0])
        )
        self._adopt_orphans(groups)
        live = [g for g in groups if g.error is None and g.seen]
        # Openers and bounds of every group together, then every group's transaction.
        openers = {id(g): self._opener_calls(g) for g in live}
        calls: list[tuple[_Group, Callable[[], None]]] = [
            (g, call) for g in live for call in [*openers[id(g)][1], *self._bound_calls(g)]
        ]
        self._each(calls, self._run_for)
        commits = [
            (g, self._commit_call(g, openers[id(g)][0])) for g in live if g.error is None and g.counted
        ]
        self._each(commits, self._run_for)
        group_of = {i: g for g in groups for i in g.indexes}
        return [group_of[i].error or (i in group_of[i].counted) for i in range(len(entries))]

    @staticmethod
    def _run_for(work: tuple[_Group, Callable[[], None]]) -> None:
        group, call = work
        if group.error is not None:
            return
        try:
            call()
        except Exception as exc:
            group.error = exc
            raise

    def _groups(self, entries: Sequence[Entry]) -> list[_Group]:
        """Events by email, packed while their aggregate items fit one transaction."""
        by_email: dict[str, list[int]] = defaultdict(list)
        for i, (event, _) in enumerate(entries):
            by_email[str(event["email_id"])].append(i)
        groups: list[_Group] = []
        keys: set[tuple[str, str]] = set()
        current: list[int] = []
        for indexes in by_email.values():
            for i in indexes:
                needed = item_keys(entries[i][0], self.settings, self.kind)
                if current and len(keys | needed) > MAX_COUNTER_ITEMS:
                    groups.append(_Group(current))
                    current, keys = [], set()
                current.append(i)
                keys |= needed
        if current:
            groups.append(_Group(current))
        return groups

    def _each(self, items: Sequence[T], work: Callable[[T], R]) -> list[R | Exception]:
        """`work` on every item from the pool; an item's exception is returned, not raised."""

        def guarded(item: T) -> R | Exception:
            try:
                return work(item)
            except Exception as exc:  # noqa: BLE001 - the caller decides per item
                return exc

        return list(self.pool.map(guarded, items))

    def _claim(self, entry: Entry, group: _Group, index: int) -> None:
        event, enrichment = entry
        try:
            RETRY.call(lambda: self.client.update_item(**self.claim_update(event, enrichment, group.token)))
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old: Any = exc.response.get("Item")
            if not isinstance(old, dict) or not old:
                return  # erased meanwhile: nothing to count, nothing to recreate
            stored = plain_item(old)
            group.seen[index] = stored
            if isinstance(stored.get(COUNTED_BY), str) and stored[COUNTED_BY] != group.token:
                group.orphans[index] = stored[COUNTED_BY]
            return
        except Exception as exc:
            group.error = exc
            raise
        enriched = _enriched(event, enrichment)
        group.counted[index] = enriched
        group.seen[index] = enriched

    def _adopt_orphans(self, groups: Sequence[_Group]) -> None:
        """Count again the events whose claiming token never committed its marker."""
        tokens = sorted({t for g in groups if g.error is None for t in g.orphans.values()})
        if not tokens:
            return
        try:
            found = batch_get(
                self.client, self.settings.meta_table, [batch_key(t) for t in tokens], consistent=True
            )
            committed = {batch_pk.value_of(str(item["pk"]["S"])) for item in found}
        except Exception as exc:  # noqa: BLE001 - every group with orphans fails with it
            for group in groups:
                if group.orphans:
                    group.error = group.error or exc
            return
        work = [
            (g, i, t) for g in groups if g.error is None for i, t in g.orphans.items() if t not in committed
        ]
        self._each(work, self._adopt)

    def _adopt(self, work: tuple[_Group, int, str]) -> None:
        group, index, dead = work
        args = update(
            self.table,
            self.kind.key(group.seen[index]),
            sets={COUNTED_BY: {"S": group.token}},
            condition=f"{COUNTED_BY} = :dead",
            condition_values={":dead": {"S": dead}},
        )
        args["ReturnValues"] = "ALL_NEW"
        try:
            response = RETRY.call(lambda: self.client.update_item(**args))
        except self.client.exceptions.ConditionalCheckFailedException:
            return  # adopted by someone else (or erased): they count it
        except Exception as exc:
            group.error = exc
            raise
        group.counted[index] = plain_item(response["Attributes"])

    def _opener_calls(self, group: _Group) -> tuple[Openers, list[Callable[[], None]]]:
        """One marker update per (email, user) counted here; each adds to the returned Openers
        when the marker names an event this group counts."""
        firsts: dict[tuple[str, str], list[str]] = defaultdict(list)
        humans: dict[tuple[str, str], list[str]] = defaultdict(list)
        sort_key = self.kind.sort_key
        for event in group.counted.values():
            if event.get("user_id"):
                pair = (str(event["email_id"]), str(event["user_id"]))
                firsts[pair].append(str(event[sort_key]))
                if self.kind.is_human(event):
                    humans[pair].append(str(event[sort_key]))
        openers = Openers()

        def call(pair: tuple[str, str]) -> Callable[[], None]:
            def run() -> None:
                human = humans.get(pair)
                args = opener_update(
                    self.settings,
                    pair[0],
                    pair[1],
                    min(firsts[pair]),
                    min(human) if human else None,
                    marker=self.kind.marker,
                )
                after = plain_item(RETRY.call(lambda: self.client.update_item(**args))["Attributes"])
                if after.get("seen_by") in firsts[pair]:
                    openers.all[pair[0]] += 1
                if after.get("human_seen_by") in humans.get(pair, ()):
                    openers.human[pair[0]] += 1

            return run

        def engaged(pair: tuple[str, str]) -> Callable[[], None]:
            # The union of human openers and clickers, counted once per user as the opener is.
            def run() -> None:
                first = min(humans[pair])
                args = engaged_update(self.settings, pair[0], pair[1], self.kind, first)
                after = plain_item(RETRY.call(lambda: self.client.update_item(**args))["Attributes"])
                if after.get("seen_by") in {engaged_claim(self.kind, key) for key in humans[pair]}:
                    openers.engaged[pair[0]] += 1

            return run

        return openers, [*(call(pair) for pair in firsts), *(engaged(pair) for pair in humans)]

    def _bound_calls(self, group: _Group) -> list[Callable[[], None]]:
        """First/last open and first human open of each email over every event seen (counted
        now or before); none for clicks."""
        if not self.kind.bounds:
            return []
        times: dict[str, list[str]] = defaultdict(list)
        human_times: dict[str, list[str]] = defaultdict(list)
        for event in group.seen.values():
            moment = str(event[self.kind.time_field])
            times[str(event["email_id"])].append(moment)
            if self.kind.is_human(event):
                human_times[str(event["email_id"])].append(moment)
        return [
            self._bound_call(args)
            for email, moments in times.items()
            for args in bound_updates(
                self.settings,
                email,
                min(moments),
                max(moments),
                first_human=min(human_times[email]) if human_times.get(email) else None,
            )
        ]

    def _bound_call(self, args: dict[str, Any]) -> Callable[[], None]:
        def run() -> None:
            # A failed condition: the bound already covers these events.
            with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
                RETRY.call(lambda: self.client.update_item(**args))

        return run

    def _commit_call(self, group: _Group, openers: Openers) -> Callable[[], None]:
        def run() -> None:
            counters = sum_counters(group.counted.values(), self.settings, shard=group.shard, kind=self.kind)
            self._commit(counter_transaction(self.settings, group.token, counters, openers, kind=self.kind))

        return run

    def _commit(self, items: list[dict[str, Any]]) -> None:
        try:
            RETRY.call(lambda: self.client.transact_write_items(TransactItems=items))  # type: ignore[arg-type]
        except self.client.exceptions.TransactionCanceledException as exc:
            if cancellation_codes(exc)[:1] != ["ConditionalCheckFailed"]:
                raise
            # The marker exists: this very transaction committed and its answer was lost.


def counted_tokens(events: Iterable[Mapping[str, Any]]) -> set[str]:
    """The batch tokens named by stored events (for tests and tools)."""
    return {str(e[COUNTED_BY]) for e in events if e.get(COUNTED_BY)}
