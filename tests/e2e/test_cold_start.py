"""A cold start of each deployed function, as Lambda makes one (a fresh Python importing
`handler`), loads nothing of the other functions' packages, nor `ops/`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.unit.test_function_boundaries import FUNCTIONS, WEB_STACK, part_of

COLD_START = """
import json, sys, handler
event = json.load(open('tests/fixtures/apigw_http_v2.json'))
name = sys.argv[1]
if name == 'pixel':
    assert handler.pixel(event, None)['statusCode'] == 200
elif name == 'api':
    event.update(rawPath='/api/emails', rawQueryString='')
    event['requestContext']['http']['path'] = '/api/emails'
    assert handler.api(event, None)['statusCode'] == 401
else:
    assert getattr(handler, name)({'Records': []}, None) == {'batchItemFailures': []}
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by_cold_start(function: str, tmp_path: Path) -> set[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_EC2_METADATA_DISABLED": "true",
        "MAILPIXEL_TABLE": "boundary-events",
        # Nothing listens here: the pixel's write fails fast and goes to the fallback file.
        "DYNAMODB_ENDPOINT_URL": "http://127.0.0.1:9",
        "MAILPIXEL_DATA_DIR": str(tmp_path),
        "MAILPIXEL_WRITE_BUDGET": "0.3",
        "MAILPIXEL_GEO_PROVIDER": "none",
        "AWS_REGION": "us-east-1",
    }
    result = subprocess.run(
        [sys.executable, "-c", COLD_START, function],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


# Each entry in handler.py that serverless.yml deploys, and the package it belongs to.
ENTRIES = {name: name for name in FUNCTIONS} | {"enrich_clicks": "enrich"}


@pytest.mark.parametrize(("entry", "function"), ENTRIES.items())
def test_a_cold_start_loads_only_its_own_function(entry, function, tmp_path):
    modules = loaded_by_cold_start(entry, tmp_path)
    parts = {part_of(m) for m in modules if m.startswith("mailpixel.")}
    assert function in parts
    assert not parts & (set(FUNCTIONS) - {function}), sorted(str(p) for p in parts)
    assert "ops" not in parts
    if function in ("enrich", "drain"):
        assert not {m.split(".")[0] for m in modules} & set(WEB_STACK)
    if function == "pixel":
        # Enrichment's heavy dependencies stay off the pixel's path.
        assert not {m.split(".")[0] for m in modules} & {"ua_parser", "maxminddb", "requests"}
        assert (tmp_path / "fallback" / "pending.jsonl").read_text().count("\n") == 1


def test_every_deployed_entry_is_checked():
    deployed = set(re.findall(r"^\s+handler: handler\.(\w+)$", (ROOT / "serverless.yml").read_text(), re.M))
    assert deployed == set(ENTRIES)
