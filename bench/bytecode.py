"""(8) Cold start of the deployed zip with and without precompiled bytecode for the runtime's Python.

Lambda's /var/task is read-only, so a zip without `__pycache__` compiles every module it
imports from source at every cold start, and keeps nothing. This unzips `make package`'s
output twice, compiles one copy with the runtime's Python (3.13, `pyenv prefix 3.13.0`,
`--invalidation-mode unchecked-hash`: a zip does not keep the sources' mtimes exactly, so
timestamp-checked bytecode would be recompiled anyway), and times, in fresh interpreters of a
3.13 venv holding only boto3 (as the runtime has), interleaved, with PYTHONDONTWRITEBYTECODE
so nothing is cached between runs: `import handler` + building the pixel's app (its first
request), and the same for the query API.

The zip's compiled wheels are for arm64 Linux; on another CPU their pure-Python fallbacks
load instead (markupsafe), which both copies share.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from bench.package_size import ZIP
from bench.stack import ROOT
from bench.stats import ratio

VENV = ROOT / ".cache" / "py313-boto3"
PROBES = {
    "pixel": "import handler; handler.get_app()",
    "api": "import handler; handler.get_api_app()",
}
TIMER = "import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"


def runtime_python() -> Path:
    prefix = subprocess.run(["pyenv", "prefix", "3.13.0"], capture_output=True, text=True, check=True)
    return Path(prefix.stdout.strip()) / "bin" / "python3.13"


def venv_python() -> Path:
    """A 3.13 venv with boto3 only (what the Lambda runtime provides), made once."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([str(runtime_python()), "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "boto3"], check=True)
    return python


def unpack(work: Path, compiled: bool, python: Path) -> Path:
    folder = work / ("compiled" if compiled else "source")
    shutil.rmtree(folder, ignore_errors=True)
    with zipfile.ZipFile(ZIP) as archive:
        archive.extractall(folder)
    for cache in list(folder.rglob("__pycache__")):  # the zip as it would ship without bytecode
        shutil.rmtree(cache)
    if compiled:
        subprocess.run(
            [
                str(python),
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "unchecked-hash",
                str(folder),
            ],
            check=False,
            capture_output=True,
        )
    return folder


def once(python: Path, folder: Path, code: str) -> float:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "MAILPIXEL_TABLE": "mailpixel-bench-events",
    }
    done = subprocess.run(
        [str(python), "-c", TIMER.format(code=code)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def run(work: Path, samples: int = 15) -> dict[str, Any]:
    if not ZIP.exists():
        return {"error": f"{ZIP} missing: run `make package` (or the package benchmark) first"}
    python = venv_python()
    folders = {"source": unpack(work, False, python), "compiled": unpack(work, True, python)}
    times: dict[str, dict[str, list[float]]] = {p: {k: [] for k in folders} for p in PROBES}
    for _ in range(samples):
        for probe, code in PROBES.items():
            for kind, folder in folders.items():
                times[probe][kind].append(once(python, folder, code))
    median_ms = {
        probe: {kind: round(statistics.median(values) * 1000, 2) for kind, values in by_kind.items()}
        for probe, by_kind in times.items()
    }
    pyc_bytes = sum(p.stat().st_size for p in folders["compiled"].rglob("*.pyc"))
    return {
        "samples": samples,
        "python": str(runtime_python()),
        "median_ms": median_ms,
        "compiled_over_source": {p: ratio(m["compiled"], m["source"]) for p, m in median_ms.items()},
        "pyc_bytes_added": pyc_bytes,
    }
