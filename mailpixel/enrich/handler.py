"""The `enrich` Lambda: DynamoDB stream records of new open events → enriched events.

Answers in the `ReportBatchItemFailures` format, `{"batchItemFailures": [{"itemIdentifier":
<SequenceNumber>}]}`: the first record whose geolocation must wait or whose write failed is
reported with every record after it, never raised, so the records before it are not
replayed; a record that cannot be parsed (poison) is reported alone. The batch's writes go
out together (`writer.py`) and are idempotent, so a replayed or duplicated batch counts
nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mailpixel.config import Settings
from mailpixel.ddb.codec import plain_item
from mailpixel.ddb.update import update
from mailpixel.enrich.aggregates import Kind
from mailpixel.enrich.classify.clicks import seconds_since_issue
from mailpixel.enrich.classify.machine import classify, named_client
from mailpixel.enrich.classify.ranges import IpRanges, shipped_ranges
from mailpixel.enrich.classify.user_agents import parse_client
from mailpixel.enrich.geo.cache import DynamoCache
from mailpixel.enrich.geo.locator import Geolocator, GeoOutcome
from mailpixel.enrich.geo.providers import (
    SOURCE_NO_IP,
    SOURCE_UNAVAILABLE,
    GeoProvider,
    IpinfoProvider,
    MmdbProvider,
    empty_geo,
)
from mailpixel.enrich.geo.proxied import proxy_geo
from mailpixel.enrich.writer import EnrichmentWriter
from mailpixel.logs import Metrics, get_logger
from mailpixel.model.events import id_fits, iso_millis
from mailpixel.model.keys import UNENRICHED

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = get_logger("enrich.handler")
# Stop starting writes when the invocation has less than this left; the rest is reported.
SAFETY_MILLIS = 1500


class PoisonRecord(ValueError):
    """A stream record that can never be enriched as it is."""


@dataclass
class Pending:
    sequence: str
    event: dict[str, Any]
    enrichment: dict[str, Any]
    lookup_ip: str | None
    opened_epoch: float | None = None


def with_seconds_since_issue(evidence: dict[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict's evidence plus the seconds from the URL's signed `t` to the open, when the
    URL had one (a scanner fetches within seconds of delivery; a person rarely does)."""
    seconds = seconds_since_issue(event.get("issued_t"), _opened(event))
    return evidence if seconds is None else {**evidence, "seconds_since_issue": seconds}


def request_of(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(user agent, address to classify and locate: the full one) of an open or a click."""
    user_agent = event.get("user_agent")
    if user_agent is not None and not isinstance(user_agent, str):
        raise PoisonRecord("user_agent is not a string")
    lookup_ip = event.get("pending_ip") or event.get("ip")
    if lookup_ip is not None and not isinstance(lookup_ip, str):
        raise PoisonRecord("ip is not a string")
    return user_agent, lookup_ip


def enrichment_for(event: Mapping[str, Any], ranges: IpRanges) -> tuple[dict[str, Any], str | None]:
    """Client, verdict and its evidence for one event (no I/O); `geo` too when the open came
    through a proxy (no lookup then), else geo is looked up later; enriched_at is added last."""
    user_agent, lookup_ip = request_of(event)
    client = parse_client(user_agent)
    verdict = classify(user_agent, lookup_ip, client, ranges)
    enrichment: dict[str, Any] = {
        "client": named_client(client, verdict),
        "machine_open": verdict.machine_open,
        "machine_reason": verdict.machine_reason,
        "proxy": verdict.proxy,
        "evidence": with_seconds_since_issue(verdict.evidence(), event),
    }
    preset = proxy_geo(verdict.proxy, ranges.place(lookup_ip))
    if preset is not None:
        enrichment["geo"] = preset
    return enrichment, lookup_ip or None


def unwritable(event: Mapping[str, Any]) -> str | None:
    """Why this event's enrichment can never be written, or None. Its IDs become parts of the
    aggregates' keys (`model/keys.py`), which only fit within the ID limits; the pixel keeps
    to them, but an event from an older version or a hand-made replay may not."""
    for name in ("email_id", "user_id"):
        value = event.get(name)
        if isinstance(value, str) and not id_fits(value):
            return f"id_too_long:{name}"
    return None


def parse_record(record: Any, sort_key: str = "open_key") -> tuple[str, dict[str, Any] | None]:
    """(SequenceNumber, event) for an INSERT; (SequenceNumber, None) for a record to skip.
    `sort_key` is the table's (`click_key` for the clicks table's stream)."""
    if not isinstance(record, Mapping):
        raise PoisonRecord("record is not an object")
    data = record.get("dynamodb")
    sequence = data.get("SequenceNumber") if isinstance(data, Mapping) else None
    if not isinstance(sequence, str) or not sequence:
        raise PoisonRecord("record has no SequenceNumber")
    if record.get("eventName") != "INSERT":
        return sequence, None
    assert isinstance(data, Mapping)  # narrows the type for mypy only  # nosec B101
    image = data.get("NewImage")
    if not isinstance(image, Mapping):
        raise PoisonRecord(f"record {sequence} has no NewImage")
    try:
        event = plain_item(dict(image))
    except Exception as exc:  # noqa: BLE001 - any undecodable value makes the record poison
        raise PoisonRecord(f"record {sequence}: bad attribute value ({exc})") from None
    if not isinstance(event.get("email_id"), str) or not isinstance(event.get(sort_key), str):
        raise PoisonRecord(f"record {sequence} has no email_id/{sort_key}")
    if "enriched_at" in event:
        return sequence, None
    return sequence, event


class Writer(Protocol):
    client: DynamoDBClient
    kind: Kind

    def write(self, event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> bool: ...

    def write_batch(
        self, entries: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[bool | Exception]: ...


class StreamHandler:
    """Callable as a Lambda handler: `handler(event, context)`.

    `parse`, `enrich_item` and `event_time` default to the opens' own; the clicks' stream
    handler (`mailpixel/enrich/clicks.py`) passes its own, and a writer of clicks."""

    def __init__(
        self,
        settings: Settings,
        *,
        writer: Writer,
        geolocator: Geolocator,
        ranges: IpRanges | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        parse: Callable[[Any], tuple[str, dict[str, Any] | None]] | None = None,
        enrich_item: Callable[[Mapping[str, Any], IpRanges], tuple[dict[str, Any], str | None]] | None = None,
        event_time: Callable[[Mapping[str, Any]], float | None] | None = None,
        before_write: Callable[[Mapping[str, Any], Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.geolocator = geolocator
        self.ranges = ranges or shipped_ranges()
        self.metrics = metrics or geolocator.metrics
        self.clock = clock
        self.parse = parse or parse_record
        self.enrich_item = enrich_item or enrichment_for
        self.event_time = event_time or _opened
        # Webhooks (enrich/webhooks.py): called with the finished enrichment before the write; if
        # it raises, the record is retried, so its events go out at least once.
        self.before_write = before_write

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
        """Enrich the batch up to its first record that must be tried again.

        A stream shard is a queue: Lambda checkpoints before the lowest reported sequence
        number and sends everything after it again. So the batch stops at its first record
        whose geolocation must wait or whose write failed, and reports it and every later
        record; what was written past it is recognised as already counted when it comes back.
        A poison record (one that can never be enriched) is reported alone and passed.
        """
        found = event.get("Records") if isinstance(event, Mapping) else None
        records: list[Any] = found if isinstance(found, list) else []
        cut = len(records)
        poison: list[str] = []
        pending: list[tuple[int, Pending]] = []
        for index, record in enumerate(records):
            try:
                sequence, item = self.parse(record)
            except PoisonRecord as exc:
                self._poison(record, exc, poison)
                continue
            if item is None:
                continue
            if (why := unwritable(item)) is not None:
                # Reported on its own and passed: no retry can write it (see _set_aside).
                self._set_aside(sequence, item, why, poison)
                continue
            try:
                enrichment, lookup_ip = self.enrich_item(item, self.ranges)
            except Exception as exc:  # noqa: BLE001 - a record that can never be enriched as it is
                # Reported on its own and passed: waiting cannot mend it, and the records after
                # it are written idempotently, so replaying them is harmless.
                self._poison(record, exc, poison)
                continue
            pending.append((index, Pending(sequence, item, enrichment, lookup_ip, self.event_time(item))))

        try:
            geo = self.geolocator.locate(ip for _, p in pending if (ip := address_to_look_up(p)))
        except Exception:  # noqa: BLE001 - an unexpected provider failure: retry all of them later
            log.exception("geo_unexpected_error")
            geo = GeoOutcome(failed={p.lookup_ip for _, p in pending if p.lookup_ip})

        ready: list[tuple[int, Pending, dict[str, Any]]] = []
        for index, entry in pending:
            unavailable = address_to_look_up(entry) in geo.failed
            if (unavailable and not self._waited_enough(entry)) or _out_of_time(context):
                cut = min(cut, index)
                break
            enrichment = self._finish(entry, geo, unavailable=unavailable)
            if self.before_write is not None:
                try:
                    self.before_write(entry.event, enrichment)
                except Exception as exc:  # noqa: BLE001 - retried with the rest of the batch
                    log.warning(
                        "enrich_before_write_failed", extra={"sequence": entry.sequence, "error": repr(exc)}
                    )
                    cut = min(cut, index)
                    break
            ready.append((index, entry, enrichment))

        results = self.writer.write_batch([(entry.event, enrichment) for _, entry, enrichment in ready])
        written = already = 0
        for (index, entry, _), result in zip(ready, results, strict=True):
            if isinstance(result, Exception):
                log.warning(
                    "enrich_write_failed",
                    extra={
                        "sequence": entry.sequence,
                        "email_id": entry.event.get("email_id"),
                        "error": repr(result),
                    },
                )
                cut = min(cut, index)
            elif result:
                written += 1
            else:
                already += 1
        later = [s for s in (_sequence(r) for r in records[cut:]) if s]
        failures = [s for s in poison if s not in later] + later
        self.metrics.count("enriched", value=written, already=already, failed=len(failures))
        return {"batchItemFailures": [{"itemIdentifier": s} for s in failures]}

    def _waited_enough(self, item: Pending) -> bool:
        """True once a record has waited MAILPIXEL_GEO_MAX_WAIT for a failing provider.

        Lambda retries a failing stream batch quickly and then sends it to the failure queue;
        better an event with its client and verdict and no location than none of them."""
        if item.opened_epoch is None or self.clock() - item.opened_epoch < self.settings.geo_max_wait_seconds:
            return False
        self.metrics.count("geo_gave_up", email_id=item.event.get("email_id"))
        return True

    def _finish(self, item: Pending, geo: GeoOutcome, *, unavailable: bool = False) -> dict[str, Any]:
        enrichment = dict(item.enrichment)
        if "geo" in enrichment:  # placed by its proxy (geo/proxied.py), nothing looked up
            location = dict(enrichment["geo"])
        elif unavailable:
            location = empty_geo(SOURCE_UNAVAILABLE)
        elif item.lookup_ip is None:
            location = empty_geo(SOURCE_NO_IP)
        else:
            location = dict(geo.found.get(item.lookup_ip) or empty_geo(SOURCE_NO_IP))
        enrichment["geo"] = location
        enrichment["enriched_at"] = iso_millis(int(self.clock() * 1000))
        return enrichment

    def _set_aside(self, sequence: str, item: Mapping[str, Any], why: str, failures: list[str]) -> None:
        """A record no retry can write (its aggregate keys would exceed DynamoDB's limits): mark
        the event enriched without enrichment, drop its full address, count and report it, and
        let the shard move on. Nothing personal goes into the log line."""
        self.metrics.count("enrich_poison_record", reason=why)
        log.error("enrich_poison_record", extra={"sequence": sequence, "reason": why})
        kind = self.writer.kind
        args = update(
            kind.table(self.settings),
            kind.key(item),
            sets={"enriched_at": {"S": iso_millis(int(self.clock() * 1000))}, "enrich_skipped": {"S": why}},
            # Out of the `unenriched` index too: `reenrich` would only set it aside again.
            removes=("pending_ip", UNENRICHED),
            condition=kind.condition,
        )
        try:
            self.writer.client.update_item(**args)
        except self.writer.client.exceptions.ConditionalCheckFailedException:
            pass  # already set aside, or erased
        except Exception:  # noqa: BLE001 - DynamoDB itself failed: a retry can still do it
            log.exception("enrich_set_aside_failed", extra={"sequence": sequence})
            failures.append(sequence)

    def _poison(self, record: Any, exc: Exception, failures: list[str]) -> None:
        sequence = _sequence(record)
        self.metrics.count("enrich_poison_record")
        log.error("enrich_poison_record", extra={"sequence": sequence, "error": repr(exc)})
        if sequence:
            failures.append(sequence)


def address_to_look_up(item: Pending) -> str | None:
    """The address to geolocate, unless there is none or a proxy has placed the open already."""
    return item.lookup_ip if item.lookup_ip and "geo" not in item.enrichment else None


def _sequence(record: Any) -> str | None:
    data = record.get("dynamodb") if isinstance(record, Mapping) else None
    sequence = data.get("SequenceNumber") if isinstance(data, Mapping) else None
    return sequence if isinstance(sequence, str) and sequence else None


def _opened(event: Mapping[str, Any], field: str = "opened_at") -> float | None:
    """The open's (`field`: the click's) time in epoch seconds (the stream's own timestamp is
    rounded, too coarse)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(event.get(field, "")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _out_of_time(context: Any) -> bool:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return callable(remaining) and int(remaining()) < SAFETY_MILLIS


def make_provider(settings: Settings) -> GeoProvider | None:
    """`MAILPIXEL_GEO_PROVIDER`: auto (a .mmdb when GEOIP_DB_PATH is set, else ipinfo), ipinfo, mmdb, none."""
    choice = settings.geo_provider
    if choice == "none":
        return None
    if choice == "mmdb" or (choice == "auto" and settings.geoip_db_path):
        if not settings.geoip_db_path:
            raise ValueError("MAILPIXEL_GEO_PROVIDER=mmdb needs GEOIP_DB_PATH")
        return MmdbProvider(settings.geoip_db_path)
    token = settings.ipinfo_token or (
        load_ipinfo_token(settings) if settings.ipinfo_token_parameter else None
    )
    return IpinfoProvider(settings.ipinfo_url, token, timeout=settings.geo_timeout_seconds)


def load_ipinfo_token(settings: Settings, client: Any = None) -> str | None:
    """The token from the SSM parameter `IPINFO_TOKEN_PARAMETER` names, at cold start.

    A missing parameter means "no token" (ipinfo answers without one, with a lower quota), so a
    stage deploys and enriches before anyone has created it; the warning says what to do.
    """
    name = settings.ipinfo_token_parameter
    if client is None:
        from mailpixel.aws import ssm_client

        client = ssm_client(settings)
    try:
        value = str(client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]).strip()
    except client.exceptions.ParameterNotFound:
        log.warning("ipinfo_token_parameter_missing", extra={"parameter": name})
        return None
    return value or None


def build_handler(
    settings: Settings,
    *,
    ddb: DynamoDBClient | None = None,
    provider: GeoProvider | None | str = "settings",
    metrics: Metrics | None = None,
    ranges: IpRanges | None = None,
    backoff_sleep_limit_seconds: float = 2.0,
    make_writer: Callable[[DynamoDBClient, Settings], Writer] = EnrichmentWriter,
    **hooks: Any,
) -> StreamHandler:
    """Everything the handler needs, built once (per cold start, or per local poller).

    Benchmarks and tests pass their own `provider` (or None for geolocation off) and client.
    """
    if ddb is None:
        from mailpixel.aws import dynamodb_client

        ddb = dynamodb_client(settings)
    metrics = metrics or Metrics()
    chosen = make_provider(settings) if isinstance(provider, str) else provider
    cache_seconds = min(86_400, settings.retention_seconds)
    geolocator = Geolocator(
        chosen,
        shared=DynamoCache(ddb, settings.meta_table, ip_storage=settings.ip_storage),
        metrics=metrics,
        cache_seconds=cache_seconds,
        backoff_sleep_limit_seconds=backoff_sleep_limit_seconds,
    )
    writer = make_writer(ddb, settings)
    return StreamHandler(
        settings, writer=writer, geolocator=geolocator, ranges=ranges, metrics=metrics, **hooks
    )
