"""(3) Deployment zip size, from the same `serverless package` that `make package` runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections import Counter
from typing import Any

from bench.stack import ROOT

ZIP = ROOT / ".serverless" / "mailpixel.zip"
# Lambda's limit for a zip uploaded directly, and for the unzipped function with its layers.
LAMBDA_ZIP_LIMIT = 50 * 1024 * 1024
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


def run() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(MAILPIXEL_PACKAGE_PYTHON=str(ROOT / ".venv" / "bin" / "python"), SLS_TELEMETRY_DISABLED="1")
    if not (ROOT / ".venv" / "bin" / "python").exists():
        env["MAILPIXEL_PACKAGE_PYTHON"] = sys.executable
    start = time.perf_counter()
    result = subprocess.run(
        ["npx", "--no-install", "serverless", "package"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        return {"error": (result.stdout + result.stderr)[-2000:]}
    with zipfile.ZipFile(ZIP) as archive:
        infos = archive.infolist()
    by_top: Counter[str] = Counter()
    for info in infos:
        by_top[info.filename.split("/")[0]] += info.file_size
    zipped = ZIP.stat().st_size
    unzipped = sum(i.file_size for i in infos)
    return {
        "command": "MAILPIXEL_PACKAGE_PYTHON=$PWD/.venv/bin/python npx --no-install serverless package",
        "package_seconds": round(seconds, 1),
        "zip_bytes": zipped,
        "unzipped_bytes": unzipped,
        "files": len(infos),
        "zip_share_of_lambda_limit": round(zipped / LAMBDA_ZIP_LIMIT, 4),
        "unzipped_share_of_lambda_limit": round(unzipped / LAMBDA_UNZIPPED_LIMIT, 4),
        "largest_unzipped": [{"entry": name, "bytes": size} for name, size in by_top.most_common(8)],
    }
