"""A local stack for benchmarks: DynamoDB Local on a free port with a throw-away dbPath,
mailpixel's tables, and the app served by Werkzeug, all started and stopped in-process."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from mailpixel.aws import dynamodb_client
from mailpixel.config import Settings
from mailpixel.ops.local.stack import DynamoDBLocal, free_port
from mailpixel.ops.local.tables import ensure_tables
from tests.fake_ipinfo import FakeIpinfo

ROOT = Path(__file__).resolve().parent.parent
HTTP_V2_FIXTURE = ROOT / "tests" / "fixtures" / "apigw_http_v2.json"
_names = itertools.count()


@contextmanager
def fake_ipinfo(mode: str = "ok", delay: float = 0.0) -> Iterator[FakeIpinfo]:
    """The tests' ipinfo-compatible fake (tests/fake_ipinfo.py), started on a free port."""
    server = FakeIpinfo().start()
    server.mode, server.delay = mode, delay
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """DynamoDB Local on a free port with its own temporary data directory, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="mailpixel-bench-"))
    server = DynamoDBLocal(free_port(), folder / "db").start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def fresh_settings(server: DynamoDBLocal, data_dir: Path, **changes: Any) -> Settings:
    """Settings with new tables (created now) on `server`, so runs never see each other's items."""
    number = next(_names)
    settings = Settings(
        table=f"bench-events-{number}",
        meta_table=f"bench-meta-{number}",
        clicks_table=f"bench-clicks-{number}",
        endpoint_url=server.endpoint_url,
        data_dir=str(data_dir),
    ).with_overrides(**changes)
    ensure_tables(dynamodb_client(settings), settings.table, settings.meta_table, settings.clicks_table)
    return settings


class QuietRequestHandler(WSGIRequestHandler):
    """No access-log line per request: thousands of them would drown the report."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Serve `app` with Werkzeug's threaded server on a free port; yields its base URL."""
    server: BaseWSGIServer = make_server(
        "127.0.0.1", free_port(), app, threaded=True, request_handler=QuietRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="bench-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def http_api_event(
    params: dict[str, str], *, request_id: str, source_ip: str = "203.0.113.9"
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) GET /pixel event, built on the tests' stored fixture."""
    event: dict[str, Any] = copy.deepcopy(_fixture())
    event["rawQueryString"] = urlencode(params)
    event["queryStringParameters"] = dict(params)
    event["requestContext"]["requestId"] = request_id
    event["requestContext"]["http"]["sourceIp"] = source_ip
    event["headers"]["x-forwarded-for"] = source_ip
    return event


_FIXTURE: dict[str, Any] = {}


def _fixture() -> dict[str, Any]:
    if not _FIXTURE:
        _FIXTURE.update(json.loads(HTTP_V2_FIXTURE.read_text(encoding="utf-8")))
    return _FIXTURE


def scan_items(settings: Settings) -> list[dict[str, Any]]:
    """Every item in the events table, as plain values, read by a consistent scan."""
    from mailpixel.ddb.codec import plain_item
    from mailpixel.ddb.store import paged

    client = dynamodb_client(settings)
    return [plain_item(item) for item in paged(client.scan, TableName=settings.table, ConsistentRead=True)]


def count_items(settings: Settings) -> int:
    """Items in the events table, counted by a consistent scan (what is stored)."""
    client = dynamodb_client(settings)
    total, kwargs = 0, {"TableName": settings.table, "Select": "COUNT", "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)  # type: ignore[arg-type]
        total += page["Count"]
        if "LastEvaluatedKey" not in page:
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def stream_records(settings: Settings) -> list[dict[str, Any]]:
    """Every record now on the events table's stream, shaped as Lambda hands them over
    (`mailpixel.ops.local.stream_poller.lambda_record`, as `make run`'s poller does), read from the start."""
    from mailpixel.aws import streams_client
    from mailpixel.ops.local.stream_poller import lambda_record

    client = dynamodb_client(settings)
    streams = streams_client(settings)
    arn = client.describe_table(TableName=settings.table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            records += [lambda_record(r, arn, settings.region) for r in page["Records"]]
            iterator = page.get("NextShardIterator")
    return records


def batches(records: list[dict[str, Any]], size: int) -> Iterator[dict[str, Any]]:
    """Lambda's stream event: `{"Records": [...]}` of at most `size` records."""
    for start in range(0, len(records), size):
        yield {"Records": records[start : start + size]}
