"""(7) One campaign, per open: DynamoDB calls, write request units, enrichment events/s, "today"
(the code before issue 10, commit BASELINE) against this checkout, each in a fresh process on a
fresh DynamoDB Local.

`bench/campaign_probe.py` does the measuring; this module runs it twice: on this checkout with
the parallelization factor `serverless.yml` deploys, and on BASELINE (exported with `git
archive` to a temporary folder) with the factor it deploys (1: none set). Targets (issue
10): at most 8 WRU per open including the pixel's write, and enrichment time per event at most
1.5 times one raw PutItem measured on the same DynamoDB Local in the same run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.stack import ROOT, dynamodb_local
from bench.stats import ratio

PROBE = Path(__file__).resolve().parent / "campaign_probe.py"
# `main` when issue 10 was filed: per-open transactions on shared items. A fixed commit, since
# `main` itself now holds the per-batch design and would compare this checkout with itself.
BASELINE = "9abc7fb"
TARGET_WRU_PER_OPEN = 8.0
TARGET_EVENT_OVER_PUT = 1.5


def deployed_parallelization(folder: Path) -> int:
    """`enrichParallelization` from a checkout's serverless.yml; 1 when it sets none."""
    found = re.search(r"^\s*enrichParallelization:\s*(\d+)", (folder / "serverless.yml").read_text(), re.M)
    return int(found.group(1)) if found else 1


def export_ref(work: Path, ref: str = BASELINE) -> Path:
    """`ref`'s tree in a folder of its own (nothing in any worktree is touched)."""
    folder = work / f"code-{ref}"
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def probe(code: Path, work: Path, *, opens: int, accounting: int, parallel: int) -> dict[str, Any]:
    with dynamodb_local() as server:
        folder = work / f"probe-{code.name}"
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(code)}
        done = subprocess.run(
            [
                sys.executable,
                str(PROBE),
                "--endpoint",
                server.endpoint_url,
                "--work",
                str(folder),
                "--opens",
                str(opens),
                "--accounting-opens",
                str(accounting),
                "--parallel",
                str(parallel),
            ],
            env=env,
            cwd=code,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode:
        raise RuntimeError(f"probe on {code} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return summarise(result)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Per-open figures from a probe's raw counts."""
    acc = result["accounting"]
    n = acc["opens_accounted"]
    pixel_calls = sum(acc["pixel"]["calls"].values())
    enrich_calls = sum(acc["enrich"]["calls"].values())
    per_open: dict[str, Any] = {
        "pixel_calls": ratio(pixel_calls, n),
        "enrich_calls": ratio(enrich_calls, n),
        "pixel_wru": ratio(acc["pixel"]["wru_total"], n),
        "enrich_wru": ratio(acc["enrich"]["wru_total"], n),
        "enrich_calls_by_operation": {k: ratio(v, n) for k, v in sorted(acc["enrich"]["calls"].items())},
        "enrich_wru_by_target": {k: ratio(v, n) for k, v in sorted(acc["enrich"]["wru"].items())},
    }
    per_open["total_wru"] = round(per_open["pixel_wru"] + per_open["enrich_wru"], 3)
    per_open["total_calls"] = round(per_open["pixel_calls"] + per_open["enrich_calls"], 3)
    thr = result["throughput"]
    saturated_put_ms = 1000 / result["floor_parallel_puts_per_second"]
    return {
        **result,
        "per_open": per_open,
        "event_over_put": ratio(thr["ms_per_event"], result["floor_put_ms"]),
        "saturated_put_ms": round(saturated_put_ms, 3),
        "event_over_saturated_put": ratio(thr["ms_per_event"], saturated_put_ms),
    }


def run(
    work: Path, *, opens: int = 20_000, today_opens: int = 2_000, accounting: int = 1_000
) -> dict[str, Any]:
    ours = probe(ROOT, work, opens=opens, accounting=accounting, parallel=deployed_parallelization(ROOT))
    baseline = export_ref(work)
    today = probe(
        baseline,
        work,
        opens=today_opens,
        accounting=accounting // 2,
        parallel=deployed_parallelization(baseline),
    )
    return {
        "ours": ours,
        "today": today,
        "baseline": BASELINE,
        "target_wru_per_open": TARGET_WRU_PER_OPEN,
        "target_event_over_put": TARGET_EVENT_OVER_PUT,
        "meets_wru": ours["per_open"]["total_wru"] <= TARGET_WRU_PER_OPEN,
        "meets_event_over_put": ours["event_over_put"] <= TARGET_EVENT_OVER_PUT,
    }
