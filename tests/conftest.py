"""Shared fixtures: a real DynamoDB Local for the session, a fresh table per test, the app.

Nothing here mocks AWS: every store call goes over HTTP to DynamoDB Local on 127.0.0.1.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mailpixel.aws import dynamodb_client
from mailpixel.config import Settings
from mailpixel.ddb.store import EventStore
from mailpixel.ops.local.stack import DynamoDBLocal, free_port
from mailpixel.ops.local.tables import ensure_tables
from mailpixel.ops.local.wsgi import is_api_path
from mailpixel.pixel.app import create_app
from tests.fake_ipinfo import FakeIpinfo

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".test-artifacts"
_table_numbers = itertools.count()

# Never let botocore look for credentials or instance metadata off this machine.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def fake_ipinfo() -> Iterator[FakeIpinfo]:
    """One fake ipinfo server on 127.0.0.1 for the session; `ipinfo` resets it per test."""
    server = FakeIpinfo().start()
    yield server
    server.stop()


@pytest.fixture
def ipinfo(fake_ipinfo: FakeIpinfo) -> FakeIpinfo:
    fake_ipinfo.reset()
    return fake_ipinfo


def target_args(settings: Settings) -> list[str]:
    """CLI flags that point a `mailpixel` command at this test's tables."""
    return [
        "--endpoint-url",
        settings.endpoint_url or "",
        "--table",
        settings.table,
        "--meta-table",
        settings.meta_table,
    ]


def package_service(out: Path, params: dict[str, str] | None = None) -> Path:
    """`npx serverless package` into `out`, as a user would, with no AWS credentials and each
    of `params` as `--param name=value`. Returns `out`: the CloudFormation template and
    mailpixel.zip."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true", MAILPIXEL_PACKAGE_PYTHON=sys.executable, SLS_TELEMETRY_DISABLED="1"
    )
    command = ["npx", "--no-install", "serverless", "package", "--stage", "test", "--package", str(out)]
    for name, value in (params or {}).items():
        command += ["--param", f"{name}={value}"]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service packaged once per session with its default params (`package_service`)."""
    return package_service(tmp_path_factory.mktemp("package"))


def packaged_template(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "cloudformation-template-update-stack.json").read_text())
    return data


@pytest.fixture(scope="session")
def dynamodb_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamoDBLocal]:
    server = DynamoDBLocal(free_port(), tmp_path_factory.mktemp("dynamodb")).start()
    yield server
    server.stop()


@pytest.fixture
def settings(dynamodb_local: DynamoDBLocal, tmp_path: Path) -> Settings:
    """Settings for one test: its own table on the session's DynamoDB Local, its own data dir."""
    number = next(_table_numbers)
    return Settings(
        table=f"test-events-{os.getpid()}-{number}",
        meta_table=f"test-meta-{os.getpid()}-{number}",
        clicks_table=f"test-clicks-{os.getpid()}-{number}",
        endpoint_url=dynamodb_local.endpoint_url,
        data_dir=str(tmp_path / "data"),
        log_level="DEBUG",
    )


@pytest.fixture
def ddb(settings: Settings) -> Any:
    return dynamodb_client(settings)


@pytest.fixture
def table(settings: Settings, ddb: Any) -> str:
    """Creates the tables (events, meta, clicks) for this test; returns the events table's name."""
    ensure_tables(ddb, settings.table, settings.meta_table, settings.clicks_table)
    return settings.table


@pytest.fixture
def store(settings: Settings, ddb: Any, table: str) -> EventStore:
    return EventStore(ddb, table, settings.clicks_table)


@pytest.fixture
def app(settings: Settings, table: str) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def all_items(ddb: Any, table: str) -> list[dict[str, Any]]:
    """Every item in a table, read with a plain scan (what is stored, not what the code thinks)."""
    from mailpixel.ddb.codec import plain_item
    from mailpixel.ddb.store import paged

    return [plain_item(i) for i in paged(ddb.scan, TableName=table, ConsistentRead=True)]


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def http_api_event(
    query: str | dict[str, str] = "",
    *,
    method: str = "GET",
    path: str = "/pixel",
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
    source_ip: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event built on the stored fixture."""
    event = copy.deepcopy(load_event("apigw_http_v2.json"))
    raw = query if isinstance(query, str) else urlencode(query)
    event["rawQueryString"] = raw
    event["rawPath"] = path
    event["routeKey"] = f"{method} {path}"
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    if headers:
        event["headers"].update({k.lower(): v for k, v in headers.items()})
    if request_id:
        event["requestContext"]["requestId"] = request_id
    if source_ip:
        event["requestContext"]["http"]["sourceIp"] = source_ip
    return event


@pytest.fixture
def lambda_handler(settings: Settings, table: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """The real `handler.py`, imported fresh with this test's environment (as a cold start),
    behind a stand-in for API Gateway that sends each path to the function serverless.yml
    routes it to (`pixel` or `api`)."""
    monkeypatch.setenv("MAILPIXEL_TABLE", settings.table)
    monkeypatch.setenv("MAILPIXEL_META_TABLE", settings.meta_table)
    monkeypatch.setenv("MAILPIXEL_CLICKS_TABLE", settings.clicks_table)
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", settings.endpoint_url or "")
    monkeypatch.setenv("MAILPIXEL_DATA_DIR", settings.data_dir)
    monkeypatch.setenv("AWS_REGION", settings.region)
    monkeypatch.setenv("STRIP_STAGE_PATH", "1")
    sys.path.insert(0, str(ROOT))
    try:
        module = (
            importlib.reload(sys.modules["handler"])
            if "handler" in sys.modules
            else importlib.import_module("handler")
        )
    finally:
        sys.path.remove(str(ROOT))

    def gateway(event: dict[str, Any], context: Any) -> Any:
        path = str(event.get("rawPath") or event.get("path") or "")
        return (module.api if is_api_path(path) else module.pixel)(event, context)

    return gateway
