"""Issue 11 against DynamoDB Local and the real handler: IDs with `/` in every route and the
CLI, IDs at the byte limit through enrichment, and what each privacy mode leaves behind."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from mailpixel.ops import cli
from tests.conftest import http_api_event, target_args
from tests.integration.test_aggregates import enrich_one, one_event

KEY = "hardening-key-0123456789"
SLASHED = ["newsletter/2026-11", "/leading", "trailing/", "a//b", "x/stats", "50% off/€"]


@pytest.fixture
def api_keys_env(monkeypatch):
    monkeypatch.setenv("MAILPIXEL_API_KEYS", KEY)


@pytest.fixture
def gateway(api_keys_env, lambda_handler):
    """The real handler.py behind the API Gateway stand-in, with an API key configured."""
    return lambda_handler


def call(gateway, path: str, query: str = "") -> tuple[int, dict[str, str], bytes]:
    event = http_api_event(query, path=path, headers={"Authorization": f"Bearer {KEY}"})
    response = gateway(event, None)
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return response["statusCode"], response.get("headers", {}), data


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# Sent percent-encoded, as the dashboard sends them, and as they are (a `%` must be encoded).
CASES = [(i, True) for i in SLASHED] + [(i, False) for i in SLASHED if "%" not in i]


@pytest.mark.parametrize(("email_id", "encode"), CASES)
def test_ids_with_slashes_work_in_every_api_route(store, ddb, settings, gateway, email_id, encode):
    """Issue 11, item 2: the README's own `newsletter/2026-11` was a 404 on every /api route."""
    user_id = email_id[::-1]
    enrich_one(
        store, ddb, settings, one_event("r1", today(), user_id=user_id, email_id=email_id), machine_open=False
    )
    segment = (lambda value: quote(value, safe="")) if encode else (lambda value: value)
    for path, key, value in [
        (f"/api/emails/{segment(email_id)}/stats", "email_id", email_id),
        (f"/api/emails/{segment(email_id)}/daily", "email_id", email_id),
        (f"/api/emails/{segment(email_id)}/opens", "items", email_id),
        (f"/api/users/{segment(user_id)}/opens", "items", email_id),
        (f"/api/users/{segment(user_id)}/stats", "user_id", user_id),
    ]:
        status, _, body = call(gateway, path)
        assert status == 200, (path, body)
        data = json.loads(body)
        if key == "items":
            assert [item["email_id"] for item in data["items"]] == [value], path
        else:
            assert data[key] == value, path
    stats = json.loads(call(gateway, f"/api/emails/{segment(email_id)}/stats")[2])
    assert stats["opens"] == 1
    recent = json.loads(call(gateway, "/api/emails")[2])["emails"]
    assert [e["email_id"] for e in recent] == [email_id]


def test_cli_reads_ids_with_slashes(store, ddb, settings, capsys):
    enrich_one(
        store, ddb, settings, one_event("r1", today(), user_id="u/1", email_id="news/11"), machine_open=False
    )
    assert cli.main(["opens", "--email-id", "news/11", "--format", "json", *target_args(settings)]) == 0
    assert [o["email_id"] for o in json.loads(capsys.readouterr().out)] == ["news/11"]
    assert cli.main(["stats", "--email-id", "news/11", "--format", "json", *target_args(settings)]) == 0
    assert json.loads(capsys.readouterr().out)["opens"] == 1
    assert cli.main(["forget", "--user-id", "u/1", "--format", "json", *target_args(settings)]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 1


def test_health_in_aws_shows_only_status_and_version(settings, store):
    """Issue 11, also: /health told anyone the table name and the traffic counters."""
    from mailpixel.pixel.app import create_app

    aws = create_app(settings.with_overrides(endpoint_url=None), store=store).test_client()
    assert aws.get("/health").get_json().keys() == {"status", "version"}
    local = create_app(settings, store=store).test_client()
    assert {"status", "version", "table", "counters"} <= local.get("/health").get_json().keys()


def test_an_id_past_the_byte_limit_is_set_aside_without_blocking_or_keeping_the_address(settings, ddb, store):
    """Issue 11, item 3: 256 four-byte characters (1024 bytes) made every enrichment
    transaction fail: retried until dropped, holding the shard, keeping `pending_ip`."""
    from mailpixel.enrich.handler import build_handler
    from mailpixel.model.events import OpenEvent
    from tests.conftest import all_items
    from tests.integration.test_enrich_stream import put_open, stream_batch

    wide = "\U0001f600" * 256
    poison = OpenEvent(
        email_id="e1",
        user_id=wide,
        opened_at=today(),
        request_id="wide",
        expires_at=2_000_000_000,
        ip="198.51.100.0",
        pending_ip="198.51.100.77",
        user_agent="Mozilla/5.0",
    )
    assert store.put_event(poison)  # an event from before the byte limit
    put_open(store, settings, 1)
    handler = build_handler(settings, ddb=ddb, provider=None)
    assert handler({"Records": stream_batch(settings, ddb)}, None) == {"batchItemFailures": []}
    items = {i["request_id"]: i for i in all_items(ddb, settings.table)}
    assert "pending_ip" not in items["wide"] and items["wide"]["enrich_skipped"] == "id_too_long:user_id"
    assert "enriched_at" in items["req-1"] and "client" in items["req-1"]
    assert handler.metrics.snapshot()["enrich_poison_record"] == 1
    # Only the good open is counted.
    from mailpixel.api.stats import email_stats

    assert email_stats(ddb, settings.meta_table, "e1")["opens"] == 1
