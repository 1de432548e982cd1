"""One campaign through a given checkout's pixel write and `enrich` handler, measured.

Run by `bench/campaign.py` in a fresh process with PYTHONPATH set to the code under test (this
branch, or `main` exported to a temporary folder), so today's code and the new one are measured
the same way, on the same machine, in the same `make bench` run. It uses only what both have:
`build_handler`, `EventStore.put_event`, `build_open_event`, `email_stats`, and `bench.stack`.

Prints one JSON object:
- `accounting`: `opens_accounted` opens written (the pixel's PutItem) and enriched in batches,
  every DynamoDB call counted and every write billed by `bench.billing` (this file's folder);
- `throughput`: `opens` opens of one email enriched by `parallel` concurrent handler instances
  (a stream shard at that parallelization factor), wall time and events/s, and the email's
  stats checked against the number of opens;
- `floor_put_ms`: one raw PutItem, median of 300, on the same DynamoDB Local.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import random
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.stack import batches, fake_ipinfo, fresh_settings, stream_records
from mailpixel.api.stats import email_stats
from mailpixel.aws import dynamodb_client
from mailpixel.ddb.store import EventStore
from mailpixel.enrich.geo.providers import IpinfoProvider
from mailpixel.enrich.handler import build_handler
from mailpixel.model.events import RequestFacts, build_open_event


def _meter_class() -> Any:
    """`Meter` from billing.py beside this file: the measured checkout may not have it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("campaign_billing", Path(__file__).with_name("billing.py"))
    assert spec is not None and spec.loader is not None  # nosec B101
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.Meter


EMAIL = "campaign-2026-11"
OTHER_AGENTS = (
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
)


def campaign(count: int, seed: int = 11) -> list[tuple[str, str, str]]:
    """(user_id, ip, user_agent) per open: half Apple's prefetch (Apple's 17/8, a bare UA),
    the rest people behind a few hundred addresses; 1.25 opens per recipient."""
    rng = random.Random(seed)  # noqa: S311 - test data
    people = [
        f"{rng.randrange(11, 99)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(300)
    ]
    recipients = max(1, int(count / 1.25))
    found = []
    for _ in range(count):
        user = f"user-{rng.randrange(recipients):07d}@example.com"
        if rng.random() < 0.5:
            found.append((user, f"17.58.{rng.randrange(256)}.{rng.randrange(1, 255)}", "Mozilla/5.0"))
        else:
            found.append((user, rng.choice(people), rng.choice(OTHER_AGENTS)))
    return found


def write_opens(
    store: EventStore, settings: Any, opens: list[tuple[str, str, str]], threads: int = 1
) -> None:
    """The pixel's own write (`EventStore.put_event`), one per open."""
    start_ms = int(time.time() * 1000) - len(opens)

    def put(n: int) -> None:
        user, ip, agent = opens[n]
        facts = RequestFacts(uuid.uuid4().hex, start_ms + n, ip, agent)
        store.put_event(
            build_open_event(
                email_id=EMAIL,
                user_id=user,
                facts=facts,
                retention_seconds=settings.retention_seconds,
                stored_ip=ip,
            )
        )

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(len(opens))))


def inserts(settings: Any) -> list[dict[str, Any]]:
    return [r for r in stream_records(settings) if r.get("eventName") == "INSERT"]


def accounting(server: Any, work: Path, geo_url: str, count: int, batch: int) -> dict[str, Any]:
    settings = fresh_settings(server, work / "accounting")
    client, reader = dynamodb_client(settings), dynamodb_client(settings)
    meter = _meter_class()(client, reader)
    write_opens(EventStore(client, settings.table), settings, campaign(count))
    pixel = meter.totals()
    meter.calls.clear()
    meter.wru.clear()
    handler = build_handler(settings, ddb=client, provider=IpinfoProvider(geo_url, "bench", timeout=2.0))
    failures = sum(
        len(handler(event, None)["batchItemFailures"]) for event in batches(inserts(settings), batch)
    )
    enrich = meter.totals()
    meter.on = False
    stats = email_stats(reader, settings.meta_table, EMAIL)
    return {
        "opens_accounted": count,
        "pixel": pixel,
        "enrich": enrich,
        "failures": failures,
        "stats_opens": stats["opens"],
    }


def throughput(
    server: Any, work: Path, geo_url: str, count: int, batch: int, parallel: int
) -> dict[str, Any]:
    settings = fresh_settings(server, work / "throughput")
    client = dynamodb_client(settings)
    write_opens(EventStore(client, settings.table), settings, campaign(count, seed=12), threads=8)
    records = inserts(settings)
    handlers = [
        build_handler(settings, provider=IpinfoProvider(geo_url, "bench", timeout=2.0))
        for _ in range(parallel)
    ]
    todo: queue.Queue[dict[str, Any]] = queue.Queue()
    for event in batches(records, batch):
        todo.put(event)
    failures: list[int] = []

    def slot(handler: Any) -> None:
        while True:
            try:
                event = todo.get_nowait()
            except queue.Empty:
                return
            failures.append(len(handler(event, None)["batchItemFailures"]))

    started = time.perf_counter()
    threads = [threading.Thread(target=slot, args=(h,)) for h in handlers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    stats = email_stats(client, settings.meta_table, EMAIL)
    return {
        "opens": len(records),
        "parallel": parallel,
        "batch_size": batch,
        "seconds": round(seconds, 2),
        "events_per_second": round(len(records) / seconds, 1),
        "ms_per_event": round(seconds / len(records) * 1000, 3),
        "failures": sum(failures),
        "stats_opens": stats["opens"],
        "stats_unique_openers": stats["unique_openers"],
        "stats_correct": stats["opens"] == len(records) and sum(failures) == 0,
    }


def _raw_put(client: Any, table: str, n: int) -> None:
    key = f"2026-11-25T00:00:00.000Z#{n:08d}"
    item = {"email_id": {"S": EMAIL}, "open_key": {"S": key}, "user_id": {"S": f"u{n}"}}
    client.put_item(TableName=table, Item=item)


def floor_put_ms(server: Any, work: Path, samples: int = 300) -> float:
    """One raw PutItem, sequential: the floor the enrichment time per event is held against."""
    settings = fresh_settings(server, work / "floor")
    client = dynamodb_client(settings)
    times = []
    for n in range(samples):
        started = time.perf_counter()
        _raw_put(client, settings.table, n)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def parallel_puts_per_second(server: Any, work: Path, count: int = 600, threads: int = 16) -> float:
    """Raw PutItems a second from 16 threads: how many writes this DynamoDB Local can take."""
    settings = fresh_settings(server, work / "floor-parallel")
    client = dynamodb_client(settings)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda n: _raw_put(client, settings.table, n), range(count)))
    return round(count / (time.perf_counter() - started), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--opens", type=int, default=20_000)
    parser.add_argument("--accounting-opens", type=int, default=1_000)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    server = SimpleNamespace(endpoint_url=args.endpoint)
    import mailpixel

    with (
        fake_ipinfo("ok", 0.02) as geo,
        (args.work / "probe.log").open("a") as log,
        contextlib.redirect_stderr(log),  # the handlers' JSON logs
    ):
        result = {
            "code": str(Path(mailpixel.__file__).resolve().parent.parent),
            "floor_put_ms": floor_put_ms(server, args.work),
            "floor_parallel_puts_per_second": parallel_puts_per_second(server, args.work),
            "accounting": accounting(server, args.work, geo.url, args.accounting_opens, args.batch),
            "throughput": throughput(server, args.work, geo.url, args.opens, args.batch, args.parallel),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
