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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings
from mailpixel.ddb.codec import plain_item
from mailpixel.enrich.classify.machine import classify
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
from mailpixel.enrich.writer import EnrichmentWriter
from mailpixel.logs import Metrics, get_logger
from mailpixel.model.events import iso_millis

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


def enrichment_for(event: Mapping[str, Any], ranges: IpRanges) -> tuple[dict[str, Any], str | None]:
    """Client and verdict for one event (no I/O); geo and enriched_at are added later."""
    user_agent = event.get("user_agent")
    if user_agent is not None and not isinstance(user_agent, str):
        raise PoisonRecord("user_agent is not a string")
    lookup_ip = event.get("pending_ip") or event.get("ip")
    if lookup_ip is not None and not isinstance(lookup_ip, str):
        raise PoisonRecord("ip is not a string")
    client = parse_client(user_agent)
    verdict = classify(user_agent, lookup_ip, client, ranges)
    if verdict.machine_reason == "apple_mpp" and client["name"] == "Other":
        client = {**client, "name": "Apple Mail"}
    enrichment: dict[str, Any] = {
        "client": client,
        "machine_open": verdict.machine_open,
        "machine_reason": verdict.machine_reason,
        "proxy": verdict.proxy,
        "rule": verdict.rule,
    }
    return enrichment, lookup_ip or None


def parse_record(record: Any) -> tuple[str, dict[str, Any] | None]:
    """(SequenceNumber, event) for an INSERT; (SequenceNumber, None) for a record to skip."""
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
    if not isinstance(event.get("email_id"), str) or not isinstance(event.get("open_key"), str):
        raise PoisonRecord(f"record {sequence} has no email_id/open_key")
    if "enriched_at" in event:
        return sequence, None
    return sequence, event


class StreamHandler:
    """Callable as a Lambda handler: `handler(event, context)`."""

    def __init__(
        self,
        settings: Settings,
        *,
        writer: EnrichmentWriter,
        geolocator: Geolocator,
        ranges: IpRanges | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.geolocator = geolocator
        self.ranges = ranges or shipped_ranges()
        self.metrics = metrics or geolocator.metrics
        self.clock = clock

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
                sequence, item = parse_record(record)
                if item is None:
                    continue
                enrichment, lookup_ip = enrichment_for(item, self.ranges)
            except Exception as exc:  # noqa: BLE001 - a record that can never be enriched as it is
                # Reported on its own and passed: waiting cannot mend it, and the records after
                # it are written idempotently, so replaying them is harmless.
                self._poison(record, exc, poison)
                continue
            pending.append((index, Pending(sequence, item, enrichment, lookup_ip, _opened(item))))

        try:
            geo = self.geolocator.locate(p.lookup_ip for _, p in pending if p.lookup_ip)
        except Exception:  # noqa: BLE001 - an unexpected provider failure: retry all of them later
            log.exception("geo_unexpected_error")
            geo = GeoOutcome(failed={p.lookup_ip for _, p in pending if p.lookup_ip})

        ready: list[tuple[int, Pending, dict[str, Any]]] = []
        for index, entry in pending:
            unavailable = entry.lookup_ip in geo.failed
            if (unavailable and not self._waited_enough(entry)) or _out_of_time(context):
                cut = min(cut, index)
                break
            ready.append((index, entry, self._finish(entry, geo, unavailable=unavailable)))

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
        if item.opened_epoch is None or self.clock() - item.opened_epoch < self.settings.geo_give_up_seconds:
            return False
        self.metrics.count("geo_gave_up", email_id=item.event.get("email_id"))
        return True

    def _finish(self, item: Pending, geo: GeoOutcome, *, unavailable: bool = False) -> dict[str, Any]:
        enrichment = {k: v for k, v in item.enrichment.items() if k != "rule"}
        if unavailable:
            location = empty_geo(SOURCE_UNAVAILABLE)
        elif item.lookup_ip is None:
            location = empty_geo(SOURCE_NO_IP)
        else:
            location = dict(geo.found.get(item.lookup_ip) or empty_geo(SOURCE_NO_IP))
        proxy = enrichment.get("proxy")
        if proxy:
            location["source"] = f"proxy:{proxy} via {location['source']}"
        enrichment["geo"] = location
        enrichment["enriched_at"] = iso_millis(int(self.clock() * 1000))
        return enrichment

    def _poison(self, record: Any, exc: Exception, failures: list[str]) -> None:
        sequence = _sequence(record)
        self.metrics.count("enrich_poison_record")
        log.error("enrich_poison_record", extra={"sequence": sequence, "error": repr(exc)})
        if sequence:
            failures.append(sequence)


def _sequence(record: Any) -> str | None:
    data = record.get("dynamodb") if isinstance(record, Mapping) else None
    sequence = data.get("SequenceNumber") if isinstance(data, Mapping) else None
    return sequence if isinstance(sequence, str) and sequence else None


def _opened(event: Mapping[str, Any]) -> float | None:
    """The open's time in epoch seconds (the stream's own timestamp is rounded, too coarse)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(event.get("opened_at", "")).replace("Z", "+00:00")).timestamp()
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
        shared=DynamoCache(ddb, settings.meta_table),
        metrics=metrics,
        cache_seconds=cache_seconds,
        backoff_sleep_limit_seconds=backoff_sleep_limit_seconds,
    )
    writer = EnrichmentWriter(ddb, settings)
    return StreamHandler(settings, writer=writer, geolocator=geolocator, ranges=ranges, metrics=metrics)
