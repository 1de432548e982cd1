"""(2) Cold start: importing `handler.py` in a fresh interpreter, divided by importing only
`flask`, `boto3` and `serverless_wsgi` (the floor any Flask-on-Lambda pixel pays).

Each sample is a new `python` process that times its own work with `perf_counter`, so
interpreter start-up is left out of both sides (which makes the ratio stricter, not looser).
The kinds of process alternate. Byte-code caches are warm for all, as they are for the
runtime's boto3 in Lambda.

`handler.py` builds the Flask app (and its DynamoDB client) on the first request, not at
import, so the import alone is not the whole cold start. Also timed, so nothing hides there:
import plus building the app (what the first request adds before its own work), with and
without the fallback queue configured (the deployed stage has one: a second, SQS, client).
A split in one process and `python -X importtime` say where the time goes.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from typing import Any

from bench.stack import ROOT
from bench.stats import ratio

TARGET = 1.10
FLOOR_MODULES = "flask, boto3, serverless_wsgi"

# Lambda's environment as the pixel function has it: a table in AWS, no local endpoint.
LAMBDA_ENV = {
    "MAILPIXEL_TABLE": "mailpixel-bench-events",
    "MAILPIXEL_META_TABLE": "mailpixel-bench-meta",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "STRIP_STAGE_PATH": "true",
    "MAILPIXEL_LOG_LEVEL": "INFO",
    "PATH": "/usr/bin:/bin",
}
# As deployed with the SQS fallback queue configured (issue 5's write path in AWS).
QUEUE_ENV = {
    "MAILPIXEL_FALLBACK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/mailpixel-bench-fallback"
}

TIMED = "import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "floor": (f"import {FLOOR_MODULES}", {}),
    # The least any pixel that writes to DynamoDB pays before its first write.
    "floor_and_client": (
        f"import {FLOOR_MODULES}; boto3.session.Session().client('dynamodb', region_name='us-east-1')",
        {},
    ),
    "import_handler": ("import handler", {}),
    "import_and_build_app": ("import handler; handler.get_app()", {}),
    "import_and_build_app_with_queue": ("import handler; handler.get_app()", QUEUE_ENV),
}

SPLIT = """
import json, time
t0 = time.perf_counter()
import flask, boto3, serverless_wsgi
t1 = time.perf_counter()
import handler
t2 = time.perf_counter()
from mailpixel.aws import dynamodb_client
client = dynamodb_client(handler.settings, fast=True)
t3 = time.perf_counter()
import mailpixel.pixel.app
from mailpixel.ddb.store import EventStore
t4 = time.perf_counter()
app = mailpixel.pixel.app.create_app(handler.settings, store=EventStore(client, handler.settings.table))
t5 = time.perf_counter()
print(json.dumps({
    "floor imports (flask, boto3, serverless_wsgi)": t1 - t0,
    "import handler (after the floor)": t2 - t1,
    "first DynamoDB client (boto3 session + client)": t3 - t2,
    "import mailpixel.pixel.app and its modules": t4 - t3,
    "create_app, client given": t5 - t4,
}))
"""


def _python(code: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *extra, "-c", code],
        cwd=ROOT,
        env={**LAMBDA_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _time(code: str, env: dict[str, str]) -> float:
    return float(_python(TIMED.format(code=code), env=env).stdout.strip().splitlines()[-1])


def importtime_costs(limit: int = 12) -> list[dict[str, Any]]:
    """What importing handler.py and building its app add after the floor is loaded, from
    `python -X importtime`: the heaviest modules first, by cumulative microseconds, at the two
    shallowest levels (a parent's figure includes its children)."""
    code = (
        f"import {FLOOR_MODULES}; import sys; print('--mark--', file=sys.stderr); "
        "import handler; handler.get_app()"
    )
    stderr = _python(code, "-X", "importtime").stderr
    after = stderr.split("--mark--", 1)[1]
    rows: list[dict[str, Any]] = []
    for line in after.splitlines():
        match = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if match:
            depth = (len(match.group(3)) - 1) // 2
            rows.append(
                {
                    "module": match.group(4),
                    "self_us": int(match.group(1)),
                    "cumulative_us": int(match.group(2)),
                    "depth": depth,
                }
            )
    shallow = [r for r in rows if r["depth"] <= 1]
    return sorted(shallow, key=lambda r: r["cumulative_us"], reverse=True)[:limit]


def run(samples: int = 21) -> dict[str, Any]:
    for code, env in VARIANTS.values():  # byte-code caches are written before anything is timed
        _time(code, env)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(samples):
        for name, (code, env) in VARIANTS.items():
            times[name].append(_time(code, env))
    medians = {name: round(statistics.median(values) * 1000, 2) for name, values in times.items()}
    split = [json.loads(_python(SPLIT).stdout.strip().splitlines()[-1]) for _ in range(max(5, samples // 3))]
    median_ratio = ratio(medians["import_handler"], medians["floor"])
    return {
        "samples": samples,
        "floor_modules": FLOOR_MODULES,
        "median_ms": medians,
        "ratio_to_floor": {name: ratio(value, medians["floor"]) for name, value in medians.items()},
        "first_request_ratio_to_floor_and_client": ratio(
            medians["import_and_build_app"], medians["floor_and_client"]
        ),
        "median_ratio": median_ratio,
        "target_median_ratio": TARGET,
        "meets_target": median_ratio <= TARGET,
        "split_ms": {key: round(statistics.median(s[key] for s in split) * 1000, 2) for key in split[0]},
        "importtime_after_floor": importtime_costs(),
    }
