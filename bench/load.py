"""(6) A bounded load generator against the local stack's HTTP endpoint, with a loss check.

`python -m bench.load [--requests N] [--concurrency C]` starts DynamoDB Local (free port,
temporary dbPath) and the app (Werkzeug, threaded, free port) in this process, sends N pixel
requests from C threads with keep-alive connections, stops, and reports requests per second,
latency percentiles and errors. Every request carries its own `email_id`, so the check after
the run is exact: the table must hold one event for each request sent, no more, no fewer.

The generator and the server share one process (and its GIL), so figures are a floor for
what the app can do, not a capacity plan.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.stats import summary_ms, table
from mailpixel.aws import dynamodb_client
from mailpixel.config import Settings
from mailpixel.ddb.store import paged
from mailpixel.pixel.gif import GIF_BYTES


@dataclass
class LoadResult:
    sent: int
    ok: int
    seconds: float
    requests_per_second: float
    latency_ms: dict[str, float]
    errors: dict[str, int] = field(default_factory=dict)
    run_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate(
    base_url: str,
    *,
    requests: int,
    concurrency: int,
    run_id: str | None = None,
    first: int = 0,
    deadline_seconds: float = 300.0,
) -> LoadResult:
    """Send `requests` GET /pixel from `concurrency` threads; stops at the count or the deadline.

    Request i carries `email_id=load-<run_id>-<first + i>`. Bursts of one run that continue
    each other's numbering (`first`) are checked together by `check_table`.
    """
    run_id = run_id or uuid.uuid4().hex[:10]
    target = urlsplit(base_url)
    host, port = target.hostname or "127.0.0.1", target.port or 80
    next_index = iter(range(first, first + requests))
    index_lock = threading.Lock()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    results_lock = threading.Lock()
    stop_at = time.monotonic() + deadline_seconds

    def take() -> int | None:
        with index_lock:
            return next(next_index, None)

    def worker() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        while time.monotonic() < stop_at:
            i = take()
            if i is None:
                break
            path = f"/pixel?email_id=load-{run_id}-{i}&user_id=user{i % 97}"
            start = time.perf_counter()
            error = None
            try:
                connection.request("GET", path, headers={"User-Agent": "mailpixel-load/1"})
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    error = f"status_{response.status}"
                elif body != GIF_BYTES or response.getheader("Content-Type") != "image/gif":
                    error = "not_the_gif"
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                connection.close()
            elapsed = time.perf_counter() - start
            with results_lock:
                latencies.append(elapsed)
                if error:
                    errors[error] += 1
        connection.close()

    threads = [threading.Thread(target=worker, name=f"load-{n}", daemon=True) for n in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    sent = len(latencies)
    return LoadResult(
        sent=sent,
        ok=sent - sum(errors.values()),
        seconds=round(seconds, 3),
        requests_per_second=round(sent / seconds, 1) if seconds else 0.0,
        latency_ms=summary_ms(latencies),
        errors=dict(errors),
        run_id=run_id,
    )


def check_table(settings: Settings, result: LoadResult) -> dict[str, Any]:
    """Count this run's events by email_id: exactly one per request sent is the only pass.

    Expects requests numbered 0 .. sent-1 (one burst, or bursts that continue the numbering).
    """
    client = dynamodb_client(settings)
    prefix = f"load-{result.run_id}-"
    per_email: Counter[str] = Counter()
    kwargs: dict[str, Any] = {
        "TableName": settings.table,
        "ConsistentRead": True,
        "ProjectionExpression": "email_id",
        "FilterExpression": "begins_with(email_id, :p)",
        "ExpressionAttributeValues": {":p": {"S": prefix}},
    }
    per_email.update(item["email_id"]["S"] for item in paged(client.scan, **kwargs))
    expected = {f"{prefix}{i}" for i in range(result.sent)}
    missing = len(expected - set(per_email))
    duplicated = sum(1 for count in per_email.values() if count > 1)
    unexpected = len(set(per_email) - expected)
    return {
        "requests_sent": result.sent,
        "events_stored": sum(per_email.values()),
        "missing": missing,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "exactly_one_each": missing == duplicated == unexpected == 0,
    }


def run(requests: int = 3000, concurrency: int = 32) -> dict[str, Any]:
    """Start the local stack in-process, load it, check the table, stop everything."""
    from bench.lambda_pixel import stderr_to
    from bench.stack import dynamodb_local, fresh_settings, serve
    from mailpixel.pixel.app import create_app

    with (
        dynamodb_local() as server,
        tempfile.TemporaryDirectory(prefix="mailpixel-load-") as work,
        stderr_to(Path(work) / "load.log"),
    ):
        settings = fresh_settings(server, Path(work) / "data", log_level="WARNING")
        with serve(create_app(settings)) as base_url:
            result = generate(base_url, requests=requests, concurrency=concurrency)
        check = check_table(settings, result)
        fallback = Path(settings.data_dir) / "fallback" / "pending.jsonl"
        check["in_fallback"] = sum(1 for _ in fallback.open()) if fallback.exists() else 0
    return {"concurrency": concurrency, **result.as_dict(), "table_check": check}


def print_report(report: dict[str, Any]) -> None:
    lat = report["latency_ms"]
    check = report["table_check"]
    print(
        table(
            "Load: GET /pixel over HTTP against the local stack",
            [
                "requests",
                "concurrency",
                "req/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "errors",
                "stored",
                "missing",
                "dupes",
            ],
            [
                [
                    report["sent"],
                    report["concurrency"],
                    report["requests_per_second"],
                    lat["p50"],
                    lat["p90"],
                    lat["p99"],
                    sum(report["errors"].values()),
                    check["events_stored"],
                    check["missing"],
                    check["duplicated"],
                ]
            ],
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = run(args.requests, args.concurrency)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    ok = report["table_check"]["exactly_one_each"] and not report["errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
