"""(4) Enrichment throughput through the `enrich` stream handler, and geolocation requests per
1000 opens when IPs repeat (as they do: proxies, offices, one reader opening twice).

Opens are written to the table; the real stream records are read back from DynamoDB Local and
handed to `mailpixel.enrich.handler.build_handler(...)` in Lambda-sized batches, with ipinfo
pointed at a fake server on 127.0.0.1 that answers in a fixed time. Two passes:
- a cold instance (empty caches) over all opens: what a campaign costs;
- a second cold instance over the same opens written again (new request ids): its memory cache
  is empty, but the DynamoDB cache (meta table) answers, so it should ask the provider nothing.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

from bench.lambda_pixel import stderr_to
from bench.stack import batches, fake_ipinfo, fresh_settings, scan_items, stream_records
from bench.stats import ratio
from mailpixel.aws import dynamodb_client
from mailpixel.config import Settings
from mailpixel.ddb.store import EventStore
from mailpixel.model.events import RequestFacts, build_open_event
from mailpixel.ops.local.stack import DynamoDBLocal

# Lambda's default batch size for DynamoDB streams.
BATCH_SIZE = 100
GEO_DELAY_SECONDS = 0.05
USER_AGENTS = (
    "Mozilla/5.0",
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 "
    "Safari/537.36 Edge/12.246 Mozilla/5.0 (via ggpht.com GoogleImageProxy)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
)


def public_ips(count: int, rng: random.Random) -> list[str]:
    """Made-up public IPv4 addresses (first octet 11-99 avoids private, shared and Apple's 17/8)."""
    ips: set[str] = set()
    while len(ips) < count:
        first = rng.choice([n for n in range(11, 100) if n != 17])
        ips.add(f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    return sorted(ips)


def opens(total: int, distinct_ips: int, seed: int = 5) -> list[tuple[str, str]]:
    """(ip, user_agent) per open; IPs drawn with a skew, so a few addresses open often."""
    rng = random.Random(seed)  # noqa: S311 - test data
    pool = public_ips(distinct_ips, rng)
    weights = [1 / (rank + 1) for rank in range(len(pool))]
    return [(ip, rng.choice(USER_AGENTS)) for ip in rng.choices(pool, weights=weights, k=total)]


def inserts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New opens only: the enrichment's own updates come back on the stream as MODIFY records,
    which the handler skips (and an event source filter on `INSERT` never delivers)."""
    return [r for r in records if r.get("eventName") == "INSERT"]


def _write(settings: Settings, store: EventStore, sample: list[tuple[str, str]], tag: str) -> None:
    for i, (ip, user_agent) in enumerate(sample):
        facts = RequestFacts(uuid.uuid4().hex, 1795528140123 + i, ip, user_agent)
        store.put_event(
            build_open_event(
                email_id=f"{tag}-{i % 40}",
                user_id=f"u{i % 300}",
                facts=facts,
                retention_seconds=settings.retention_seconds,
                stored_ip=ip,
            )
        )


def _pass(settings: Settings, geo_url: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    from mailpixel.enrich.geo.providers import IpinfoProvider
    from mailpixel.enrich.handler import build_handler

    handler = build_handler(settings, provider=IpinfoProvider(geo_url, "bench-token", timeout=2.0))
    failures = 0
    start = time.perf_counter()
    for event in batches(records, BATCH_SIZE):
        failures += len(handler(event, None)["batchItemFailures"])
    seconds = time.perf_counter() - start
    geolocator = handler.geolocator
    return {
        "events": len(records),
        "seconds": round(seconds, 3),
        "events_per_second": round(len(records) / seconds, 1),
        "failures": failures,
        "provider_requests": geolocator.requests,
        "memory_hits": geolocator.memory_hits,
        "shared_cache_hits": geolocator.shared_hits,
    }


def _measure(server: DynamoDBLocal, work: Path, total: int = 2000, distinct_ips: int = 300) -> dict[str, Any]:
    try:
        import mailpixel.enrich.handler  # noqa: F401
    except ImportError as exc:
        return {"error": f"mailpixel.enrich is not importable: {exc}"}
    settings = fresh_settings(server, work / "enrich-data")
    client = dynamodb_client(settings)
    store = EventStore(client, settings.table)
    sample = opens(total, distinct_ips)
    with fake_ipinfo("slow", GEO_DELAY_SECONDS) as geo:
        _write(settings, store, sample, "first")
        records = inserts(stream_records(settings))
        cold = _pass(settings, geo.url, records)
        cold["geo_http_requests"], cold["ips_sent"] = geo.requests, len(geo.ips_seen)
        geo.reset("slow")
        geo.delay = GEO_DELAY_SECONDS
        _write(settings, store, sample, "again")
        seen = {r["dynamodb"]["SequenceNumber"] for r in records}
        again_records = [
            r for r in inserts(stream_records(settings)) if r["dynamodb"]["SequenceNumber"] not in seen
        ]
        warm = _pass(settings, geo.url, again_records)
        warm["geo_http_requests"], warm["ips_sent"] = geo.requests, len(geo.ips_seen)
    items = scan_items(settings)
    enriched = sum(1 for i in items if "enriched_at" in i)
    return {
        "opens_per_pass": total,
        "distinct_ips": len({ip for ip, _ in sample}),
        "batch_size": BATCH_SIZE,
        "geo_delay_ms": GEO_DELAY_SECONDS * 1000,
        "cold_instance": cold,
        "second_instance": warm,
        "geo_http_requests_per_1000_opens": ratio(cold["geo_http_requests"] * 1000, total),
        "ips_sent_per_1000_opens": ratio(cold["ips_sent"] * 1000, total),
        "second_instance_geo_http_requests_per_1000_opens": ratio(warm["geo_http_requests"] * 1000, total),
        "enriched_in_table": enriched,
        "events_in_table": len(items),
    }


def run(server: DynamoDBLocal, work: Path, total: int = 2000, distinct_ips: int = 300) -> dict[str, Any]:
    with stderr_to(work / "enrichment.log"):
        return _measure(server, work, total, distinct_ips)
