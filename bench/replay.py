"""(9) A campaign replayed against the local stack, time-compressed: `python -m bench.replay`.

The arrival curve of a newsletter to N recipients sent over 10 minutes (issue 10): about 77%
of recipients open; half of the opens are Apple's Mail Privacy Protection prefetches, arriving
within 10-30 minutes of delivery (exponential, mean 8 minutes after each message's delivery);
people open over hours (log-normal, median 40 minutes), 1.25 opens each. The first 3 hours
are compressed into `--seconds` and scaled down to `--recipients`.

The opens are real HTTP requests to the real app (Werkzeug, threaded) on DynamoDB Local, sent
at their scheduled moments from a thread pool; the local stream poller runs the real `enrich`
handler in batches of 100, as `make run` does. Printed at the end: opens sent, refused (any
answer but the GIF), stored, enrichment lag (enriched_at - opened_at: p50/p99/max, in
compressed seconds), and whether the email's stats equal a recount of the stored events.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.lambda_pixel import stderr_to
from bench.stack import dynamodb_local, fresh_settings, scan_items, serve
from bench.stats import percentile

EMAIL = "newsletter-replay"
WINDOW_MINUTES = 180


def arrivals(recipients: int, seed: int = 3) -> list[tuple[float, str, bool]]:
    """(minute after the send began, user_id, machine prefetch) per open, sorted."""
    rng = random.Random(seed)  # noqa: S311 - test data
    opens: list[tuple[float, str, bool]] = []
    for n in range(recipients):
        delivered = rng.uniform(0, 10)
        if rng.random() > 0.77:
            continue
        user = f"r{n:07d}"
        if rng.random() < 0.5:
            opens.append((delivered + rng.expovariate(1 / 8), user, True))
        for _ in range(1 if rng.random() < 0.75 else 2):
            opens.append((delivered + rng.lognormvariate(3.7, 1.0), user, False))
    return sorted(o for o in opens if o[0] < WINDOW_MINUTES)


def run(recipients: int = 4000, seconds: float = 60.0, concurrency: int = 32) -> dict[str, Any]:
    from mailpixel.api.stats import email_stats
    from mailpixel.aws import dynamodb_client
    from mailpixel.enrich.handler import build_handler
    from mailpixel.ops.local.stream_poller import StreamPoller
    from mailpixel.pixel.app import create_app

    plan = arrivals(recipients)
    scale = seconds / WINDOW_MINUTES
    with (
        dynamodb_local() as server,
        tempfile.TemporaryDirectory() as folder,
        stderr_to(Path(folder) / "replay.log"),  # the app's and the handler's JSON logs
    ):
        settings = fresh_settings(server, Path(folder), geo_provider="none")
        poller = StreamPoller(settings, build_handler(settings, provider=None), interval=0.2).start()
        refused = 0
        lock = threading.Lock()
        with serve(create_app(settings)) as base:
            port = int(base.rsplit(":", 1)[1])
            local = threading.local()
            started = time.monotonic()

            def send(entry: tuple[float, str, bool]) -> None:
                nonlocal refused
                minute, user, machine = entry
                delay = started + minute * scale - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if not hasattr(local, "conn"):
                    local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                agent = "Mozilla/5.0" if machine else "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)"
                query = urlencode({"email_id": EMAIL, "user_id": user})
                try:
                    local.conn.request("GET", f"/pixel?{query}", headers={"User-Agent": agent})
                    response = local.conn.getresponse()
                    ok = response.status == 200 and response.read().startswith(b"GIF")
                except OSError:
                    local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    ok = False
                if not ok:
                    with lock:
                        refused += 1

            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(send, plan))
            sent_seconds = time.monotonic() - started
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            items = scan_items(settings)
            if all("enriched_at" in i for i in items):
                break
            time.sleep(1)
        poller.stop()
        items = scan_items(settings)
        stats = email_stats(dynamodb_client(settings), settings.meta_table, EMAIL)
    lags = [_seconds(i["enriched_at"]) - _seconds(i["opened_at"]) for i in items if "enriched_at" in i]
    users = {i["user_id"] for i in items}
    return {
        "recipients": recipients,
        "opens_sent": len(plan),
        "compressed_seconds": seconds,
        "minutes_per_second": round(WINDOW_MINUTES / seconds, 2),
        "send_seconds": round(sent_seconds, 1),
        "peak_opens_per_second": _peak(plan, scale),
        "refused": refused,
        "stored": len(items),
        "enriched": len(lags),
        "lag_seconds": {
            "p50": round(percentile(lags, 50), 2),
            "p99": round(percentile(lags, 99), 2),
            "max": round(max(lags), 2) if lags else None,
        },
        "stats": {"opens": stats["opens"], "unique_openers": stats["unique_openers"]},
        "stats_correct": stats["opens"] == len(items) and stats["unique_openers"] == len(users),
    }


def _seconds(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def _peak(plan: list[tuple[float, str, bool]], scale: float) -> int:
    """Most opens scheduled in one compressed second."""
    per_second: dict[int, int] = {}
    for minute, _, _ in plan:
        second = int(minute * scale)
        per_second[second] = per_second.get(second, 0) + 1
    return max(per_second.values(), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    print(json.dumps(run(args.recipients, args.seconds), indent=2))


if __name__ == "__main__":
    main()
