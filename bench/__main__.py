"""`python -m bench` (`make bench`): every benchmark, printed as tables and saved as JSON.

`--quick` takes fewer samples (for a smoke run); `--only NAME[,NAME]` runs a subset:
latency, cold_start, package, bytecode, enrichment, inline, load, campaign, replay, accuracy,
proxy_geo, click_latency, instrument, click_sequences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    accuracy,
    bytecode,
    campaign,
    click_sequences,
    clicks,
    cold_start,
    enrichment,
    inline_design,
    latency,
    load,
    package_size,
    proxy_geo,
    replay,
)
from bench.stack import ROOT, dynamodb_local
from bench.stats import table
from mailpixel.ops.local.stack import DynamoDBLocal

RESULTS = Path(__file__).resolve().parent / "results.json"
NAMES = (
    "latency",
    "cold_start",
    "package",
    "bytecode",
    "enrichment",
    "inline",
    "load",
    "campaign",
    "replay",
    "accuracy",
    "proxy_geo",
    *clicks.NAMES,
    *click_sequences.NAMES,
)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": memory.strip(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": "make bench",
    }


def measured(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A benchmark's results, or None when it was not run or failed."""
    found = results.get(name)
    return found if isinstance(found, dict) and "error" not in found else None


def report(results: dict[str, Any]) -> str:
    out: list[str] = []
    if (r := measured(results, "latency")) is not None:
        out.append(
            table(
                f"1. Pixel latency: real handler.pixel (HTTP API v2 event) vs one raw PutItem, "
                f"{r['samples']} each, interleaved",
                ["", "median ms", "p90 ms", "p99 ms", "mean ms"],
                [
                    [
                        "handler.pixel",
                        r["pixel_ms"]["p50"],
                        r["pixel_ms"]["p90"],
                        r["pixel_ms"]["p99"],
                        r["pixel_ms"]["mean"],
                    ],
                    [
                        "raw PutItem (floor)",
                        r["floor_ms"]["p50"],
                        r["floor_ms"]["p90"],
                        r["floor_ms"]["p99"],
                        r["floor_ms"]["mean"],
                    ],
                    [
                        "handler.pixel, nothing to write (no email_id)",
                        r["pixel_no_write_ms"]["p50"],
                        r["pixel_no_write_ms"]["p90"],
                        r["pixel_no_write_ms"]["p99"],
                        r["pixel_no_write_ms"]["mean"],
                    ],
                    [
                        "conditional PutItem (the pixel's own write)",
                        r["conditional_put_ms"]["p50"],
                        r["conditional_put_ms"]["p90"],
                        r["conditional_put_ms"]["p99"],
                        r["conditional_put_ms"]["mean"],
                    ],
                    ["ratio", r["median_ratio"], "", r["p99_ratio"], ""],
                ],
            )
            + f"target median ratio <= {r['target_median_ratio']}: "
            + f"{'met' if r['meets_target'] else 'MISSED'}; conditional PutItem / floor: "
            + f"{r['conditional_over_floor_median']}; "
            + f"pixel / conditional PutItem: {r['pixel_over_conditional_median']}\n"
        )
    if (r := measured(results, "cold_start")) is not None:
        labels = {
            "floor": f"import {r['floor_modules']} (floor)",
            "floor_and_client": "floor + one boto3 DynamoDB client",
            "import_handler": "import handler",
            "import_and_build_app": "import handler + build the app (first request)",
            "import_and_build_app_with_queue": "same, fallback queue configured (as deployed)",
        }
        out.append(
            table(
                f"2. Cold start: time in a fresh interpreter, median of {r['samples']}, interleaved",
                ["what", "median ms", "ratio to floor"],
                [[labels[name], value, r["ratio_to_floor"][name]] for name, value in r["median_ms"].items()],
            )
            + f"target: import handler / floor <= {r['target_median_ratio']}: "
            + f"{'met' if r['meets_target'] else 'MISSED'} ({r['median_ratio']}); "
            + f"import + build app / (floor + one client): {r['first_request_ratio_to_floor_and_client']}\n\n"
            + table(
                "2b. Where the cold start goes (one process, in order)",
                ["step", "median ms"],
                list(r["split_ms"].items()),
            )
            + "\n"
            + table(
                "2c. python -X importtime: what handler.py and its app add after the floor (cumulative)",
                ["module", "cumulative ms", "self ms"],
                [
                    [
                        ("  " * row["depth"]) + row["module"],
                        row["cumulative_us"] / 1000,
                        row["self_us"] / 1000,
                    ]
                    for row in r["importtime_after_floor"]
                ],
            )
        )
    if (r := measured(results, "package")) is not None:
        out.append(
            table(
                "3. Deployment package (.serverless/mailpixel.zip)",
                [
                    "zip bytes",
                    "unzipped bytes",
                    "files",
                    "% of 50 MB zip limit",
                    "% of 250 MB unzipped limit",
                ],
                [
                    [
                        r["zip_bytes"],
                        r["unzipped_bytes"],
                        r["files"],
                        r["zip_share_of_lambda_limit"] * 100,
                        r["unzipped_share_of_lambda_limit"] * 100,
                    ]
                ],
            )
            + "\n"
            + table(
                "3b. Largest entries, unzipped",
                ["entry", "bytes"],
                [[e["entry"], e["bytes"]] for e in r["largest_unzipped"]],
            )
        )
    if (r := measured(results, "enrichment")) is not None:
        rows = []
        for name, label in (
            ("cold_instance", "cold instance, empty caches"),
            ("second_instance", "new instance, DynamoDB cache warm"),
        ):
            p = r[name]
            rows.append(
                [
                    label,
                    p["events"],
                    p["events_per_second"],
                    p["failures"],
                    p["geo_http_requests"],
                    p["ips_sent"],
                    p["memory_hits"],
                    p["shared_cache_hits"],
                ]
            )
        out.append(
            table(
                f"4. Enrichment through the enrich stream handler: {r['opens_per_pass']} opens "
                f"from {r['distinct_ips']} IPs, "
                f"batches of {r['batch_size']}, fake ipinfo answering in {r['geo_delay_ms']:.0f} ms",
                [
                    "pass",
                    "events",
                    "events/s",
                    "failures",
                    "geo HTTP requests",
                    "IPs sent",
                    "memory hits",
                    "DynamoDB cache hits",
                ],
                rows,
            )
            + f"geolocation HTTP requests per 1000 opens: {r['geo_http_requests_per_1000_opens']} (cold), "
            f"{r['second_instance_geo_http_requests_per_1000_opens']} (second instance); "
            f"IPs looked up per 1000 opens: {r['ips_sent_per_1000_opens']}; "
            f"enriched in table: {r['enriched_in_table']}/{r['events_in_table']}\n"
        )
    if (r := measured(results, "inline")) is not None:
        lat = r["latency_ms"]
        out.append(
            table(
                "5. Original design (geolocation inline) vs ours, "
                f"geolocation server answering in {r['geo_delay_ms']:.0f} ms, "
                f"{r['samples']} each, interleaved",
                ["pixel", "median ms", "p90 ms", "p99 ms"],
                [
                    [
                        "original: requests.get(geo) then PutItem",
                        lat["original"]["p50"],
                        lat["original"]["p90"],
                        lat["original"]["p99"],
                    ],
                    [
                        "ours, geolocation configured (slow server)",
                        lat["ours_geo_slow"]["p50"],
                        lat["ours_geo_slow"]["p90"],
                        lat["ours_geo_slow"]["p99"],
                    ],
                    [
                        "ours, geolocation off",
                        lat["ours_geo_off"]["p50"],
                        lat["ours_geo_off"]["p90"],
                        lat["ours_geo_off"]["p99"],
                    ],
                ],
            )
            + f"original / ours: {r['original_over_ours']}x; "
            + f"ours slow-geo / geo-off: {r['ours_slow_geo_over_geo_off']} "
            f"(target <= {r['target_slow_geo_over_geo_off']}: {'met' if r['meets_target'] else 'MISSED'})\n"
        )
    if "load" in results and "error" not in results["load"]:
        lat, check, r = results["load"]["latency_ms"], results["load"]["table_check"], results["load"]
        out.append(
            table(
                "6. Load: GET /pixel over HTTP, local stack in-process (Werkzeug threaded + DynamoDB Local)",
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
                    "duplicated",
                ],
                [
                    [
                        r["sent"],
                        r["concurrency"],
                        r["requests_per_second"],
                        lat["p50"],
                        lat["p90"],
                        lat["p99"],
                        sum(r["errors"].values()),
                        check["events_stored"],
                        check["missing"],
                        check["duplicated"],
                    ]
                ],
            )
            + f"exactly one event per request: {'yes' if check['exactly_one_each'] else 'NO'}\n"
        )
    if (r := measured(results, "bytecode")) is not None:
        out.append(
            table(
                f"8. Cold start of the unzipped package under {r['python']}, with and without bytecode "
                f"compiled for it, median of {r['samples']} fresh processes, interleaved",
                ["first request of", "source only ms", "with bytecode ms", "ratio"],
                [
                    [probe, m["source"], m["compiled"], r["compiled_over_source"][probe]]
                    for probe, m in r["median_ms"].items()
                ],
            )
            + f"bytecode adds {r['pyc_bytes_added']:,} bytes unzipped\n"
        )
    if "campaign" in results and "error" not in results["campaign"]:
        out.append(campaign_report(results["campaign"]))
    if (r := measured(results, "replay")) is not None:
        out.append(
            table(
                f"9. Campaign replay: {r['recipients']:,} recipients, the first 180 minutes in "
                f"{r['compressed_seconds']:.0f} s, against the local stack",
                [
                    "opens sent",
                    "peak/s",
                    "refused",
                    "stored",
                    "enriched",
                    "lag p50 s",
                    "lag p99 s",
                    "lag max s",
                    "stats exact",
                ],
                [
                    [
                        r["opens_sent"],
                        r["peak_opens_per_second"],
                        r["refused"],
                        r["stored"],
                        r["enriched"],
                        r["lag_seconds"]["p50"],
                        r["lag_seconds"]["p99"],
                        r["lag_seconds"]["max"],
                        "yes" if r["stats_correct"] else "NO",
                    ]
                ],
            )
        )
    for name, section in (("accuracy", accuracy), ("proxy_geo", proxy_geo)):
        if name in results and "error" not in results[name]:
            out.append(section.report(results[name]))
    out += clicks.report(results)
    out += click_sequences.report(results)
    for name, value in results.items():
        if isinstance(value, dict) and "error" in value:
            out.append(f"### {name}: not measured\n\n{value['error']}\n")
    return "\n".join(out)


def campaign_report(r: dict[str, Any]) -> str:
    ours, today = r["ours"], r["today"]

    def row(label: str, d: dict[str, Any]) -> list[Any]:
        p, t = d["per_open"], d["throughput"]
        return [
            label,
            p["total_calls"],
            p["enrich_calls"],
            p["pixel_wru"],
            p["enrich_wru"],
            p["total_wru"],
            t["parallel"],
            t["opens"],
            t["events_per_second"],
            t["ms_per_event"],
            d["floor_put_ms"],
            d["event_over_put"],
            d["saturated_put_ms"],
            "yes" if t["stats_correct"] else "NO",
        ]

    rows = [row(f"before issue 10 ({r.get('baseline', 'main')})", today), row("this checkout", ours)]
    detail = [
        [
            name,
            ours["per_open"]["enrich_calls_by_operation"].get(name, 0),
            today["per_open"]["enrich_calls_by_operation"].get(name, 0),
        ]
        for name in sorted(
            {*ours["per_open"]["enrich_calls_by_operation"], *today["per_open"]["enrich_calls_by_operation"]}
        )
    ]
    return (
        table(
            "7. One campaign per open: DynamoDB calls and write request units (billing rules on the sizes "
            "written), enrichment at the deployed parallelization factor",
            [
                "code",
                "calls/open",
                "enrich calls/open",
                "pixel WRU/open",
                "enrich WRU/open",
                "WRU/open",
                "parallel",
                "opens",
                "events/s",
                "ms/event",
                "raw PutItem ms",
                "event / PutItem",
                "PutItem ms, 16 threads",
                "stats exact",
            ],
            rows,
        )
        + f"targets: WRU/open <= {r['target_wru_per_open']}: {'met' if r['meets_wru'] else 'MISSED'}; "
        + f"event / PutItem <= {r['target_event_over_put']}: "
        + f"{'met' if r['meets_event_over_put'] else 'MISSED'}\n\n"
        + table("7b. Enrichment calls per open by operation", ["operation", "now", "before"], detail)
        + "\n"
        + table(
            "7c. Enrichment WRU per open by table and index (this checkout)",
            ["target", "WRU/open"],
            list(ours["per_open"]["enrich_wru_by_target"].items()),
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run, not a measurement")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",")] if args.only else list(NAMES)
    unknown = set(chosen) - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    quick = args.quick
    os.chdir(ROOT)
    results: dict[str, Any] = {"machine": machine(), "quick": quick}
    with tempfile.TemporaryDirectory(prefix="mailpixel-bench-work-") as folder:
        work = Path(folder)

        def on_fresh_dynamodb(run: Callable[[DynamoDBLocal], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
            """Each benchmark gets a DynamoDB Local of its own: no one's tables slow another's."""

            def step() -> dict[str, Any]:
                with dynamodb_local() as server:
                    return run(server)

            return step

        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "latency": on_fresh_dynamodb(
                lambda db: latency.run(db, work, samples=300 if quick else 2000, warmup=50 if quick else 200)
            ),
            "cold_start": lambda: cold_start.run(samples=5 if quick else 21),
            "package": package_size.run,
            "bytecode": lambda: bytecode.run(work, samples=5 if quick else 15),
            "enrichment": on_fresh_dynamodb(
                lambda db: enrichment.run(
                    db, work, total=300 if quick else 1000, distinct_ips=60 if quick else 150
                )
            ),
            "inline": on_fresh_dynamodb(lambda db: inline_design.run(db, work, samples=10 if quick else 40)),
            "load": lambda: load.run(requests=300 if quick else 3000, concurrency=32),
            "accuracy": accuracy.run,
            "proxy_geo": proxy_geo.run,
            **clicks.steps(on_fresh_dynamodb, work, quick),
            **click_sequences.steps(on_fresh_dynamodb, work, quick),
            "replay": lambda: replay.run(recipients=1000 if quick else 4000, seconds=30 if quick else 60),
            "campaign": lambda: campaign.run(
                work,
                opens=2000 if quick else 20_000,
                today_opens=500 if quick else 2000,
                accounting=300 if quick else 1000,
            ),
        }
        for name in chosen:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                results[name] = steps[name]()
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
                results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            results[name]["bench_seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(report(results))
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"results written to {shown}")
    failed = [name for name in chosen if "error" in results[name]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
