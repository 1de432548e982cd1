"""Issue 11 against DynamoDB Local and the real handler: IDs with `/` in every route and the
CLI, IDs at the byte limit through enrichment, and what each privacy mode leaves behind."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
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
    assert "unenriched" not in items["wide"]  # out of the index `reenrich` reads
    assert "enriched_at" in items["req-1"] and "client" in items["req-1"]
    assert handler.metrics.snapshot()["enrich_poison_record"] == 1
    # Only the good open is counted.
    from mailpixel.api.stats import email_stats

    assert email_stats(ddb, settings.meta_table, "e1")["opens"] == 1


# Item 5: with MAILPIXEL_IP_STORAGE=truncated|none, no full address and no user id outlives
# enrichment anywhere; local files are their owner's only.

FULL_IP = "81.2.69.142"


def test_private_modes_leave_no_full_address_in_the_tables_or_the_geo_cache(settings, ddb, store, ipinfo):
    from mailpixel.enrich.geo.providers import IpinfoProvider
    from mailpixel.enrich.handler import build_handler
    from tests.conftest import all_items
    from tests.integration.test_enrich_stream import put_open, stream_batch

    private = settings.with_overrides(ip_storage="truncated")
    put_open(store, private, 1, ip="81.2.69.0", pending=FULL_IP)
    handler = build_handler(private, ddb=ddb, provider=IpinfoProvider(ipinfo.url, timeout=1.0))
    assert handler({"Records": stream_batch(private, ddb)}, None) == {"batchItemFailures": []}
    everything = all_items(ddb, settings.table) + all_items(ddb, settings.meta_table)
    assert FULL_IP not in json.dumps(everything, default=str)
    (cached,) = [i for i in everything if str(i.get("pk", "")).startswith("geo#")]
    assert cached["pk"] == "geo#81.2.69.0" and "cached_at" not in cached
    assert int(cached["expires_at"]) % 3600 == 0  # says nothing of when the address was seen
    (event,) = all_items(ddb, settings.table)
    assert event["geo"]["country"]  # geolocated all the same
    # A neighbour in the same network is answered from the cache, without a provider request.
    requests = ipinfo.requests
    put_open(store, private, 2, ip="81.2.69.0", pending="81.2.69.7")
    assert handler({"Records": stream_batch(private, ddb)[1:]}, None) == {"batchItemFailures": []}
    assert ipinfo.requests == requests


class BrokenDisk:
    def save(self, event):
        raise OSError("disk full")


def test_fallback_log_and_repair_lines_keep_no_full_address_nor_user_id(settings, table, tmp_path):
    from mailpixel.pixel.app import create_app
    from tests.app_logs import app_log_to

    private = settings.with_overrides(ip_storage="none", table="no-such-table")
    file_app = create_app(private).test_client()
    log_app = create_app(private, fallback=BrokenDisk()).test_client()
    log_path = tmp_path / "app.log"
    with app_log_to(log_path):
        for client in (file_app, log_app):
            response = client.get(
                "/pixel?email_id=e1&user_id=secret-user%01&sig=abcdef", environ_base={"REMOTE_ADDR": FULL_IP}
            )
            assert response.status_code == 200 and response.mimetype == "image/gif"
    fallback = Path(settings.data_dir) / "fallback" / "pending.jsonl"
    kept = fallback.read_text()
    assert "secret-user" in kept and FULL_IP not in kept  # the open is kept, its full address not
    log_text = log_path.read_text()
    assert "open_not_stored" in log_text and "pixel_params_repaired" in log_text
    assert FULL_IP not in log_text
    # The open itself (open_not_stored) carries its user id to be replayed; a repair line does not.
    repaired = [line for line in log_text.splitlines() if "pixel_params_repaired" in line]
    assert repaired and not [line for line in repaired if "secret-user" in line or "abcdef" in line]
    # Readable by their owner only, whatever the umask.
    assert fallback.stat().st_mode & 0o777 == 0o600
    assert fallback.parent.stat().st_mode & 0o777 == 0o700


def test_forget_reaches_the_local_files(settings, table, ddb, capsys, monkeypatch):
    monkeypatch.setenv("MAILPIXEL_DATA_DIR", settings.data_dir)
    from mailpixel.files import open_private
    from mailpixel.ops.erasure import local_data_files

    fallback, _, unreadable, failures, *_ = local_data_files(Path(settings.data_dir))
    with open_private(fallback) as fh:
        fh.write(json.dumps({"email_id": "e1", "user_id": "gone"}) + "\n")
        fh.write(json.dumps({"email_id": "e1", "user_id": "stays"}) + "\n")
    with open_private(unreadable) as fh:
        fh.write('{"email_id": "e1", "user_id": "gone", cut sho\n')
    record = {"dynamodb": {"NewImage": {"email_id": {"S": "e2"}, "user_id": {"S": "gone"}}}}
    with open_private(failures) as fh:
        fh.write(json.dumps(record) + "\n")
    assert cli.main(["forget", "--user-id", "gone", "--format", "json", *target_args(settings)]) == 0
    assert json.loads(capsys.readouterr().out)["local_lines"] == 3
    assert "gone" not in fallback.read_text() + unreadable.read_text() + failures.read_text()
    assert "stays" in fallback.read_text()


def test_enrichment_failure_file_keeps_no_full_address(settings, ddb, store, ipinfo, tmp_path):
    from mailpixel.enrich.geo.providers import IpinfoProvider
    from mailpixel.enrich.handler import build_handler
    from mailpixel.ops.local.stream_poller import StreamPoller
    from tests.integration.test_enrich_stream import put_open

    ipinfo.mode = "500"
    private = settings.with_overrides(ip_storage="truncated")
    put_open(store, private, 1, ip="81.2.69.0", pending=FULL_IP)
    handler = build_handler(private, ddb=ddb, provider=IpinfoProvider(ipinfo.url, timeout=1.0))
    failure_log = tmp_path / "failures.jsonl"
    poller = StreamPoller(private, handler, ddb=ddb, retry_delay=0, max_attempts=1, failure_log=failure_log)
    poller.poll_once()
    text = failure_log.read_text()
    assert "81.2.69.0" in text and FULL_IP not in text
    assert failure_log.stat().st_mode & 0o777 == 0o600


# Also: counts tallied per minute are not lost with an instance reclaimed while idle.


def test_lambda_invocation_ends_with_a_flush_once_the_minute_has_passed(lambda_handler, tmp_path):
    import sys

    from tests.app_logs import app_log_to

    lambda_handler(http_api_event("email_id=e1&user_id=u1"), None)  # tallies open_stored
    metrics = sys.modules["handler"].get_app().extensions["mailpixel"].metrics
    metrics._flushed_at -= 3600  # the minute passed while the instance waited
    log_path = tmp_path / "app.log"
    with app_log_to(log_path):
        lambda_handler(http_api_event(path="/health"), None)  # tallies nothing itself
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [line.get("open_stored") for line in lines if line["message"] == "metrics"] == [1]


def test_local_server_flushes_its_counts_on_shutdown(settings, table, tmp_path):
    import threading
    import urllib.request

    from mailpixel.ops.local.stack import _serve, free_port
    from tests.app_logs import app_log_to

    local = settings.with_overrides(port=free_port())
    stop, ready = threading.Event(), threading.Event()
    log_path = tmp_path / "app.log"
    with app_log_to(log_path):
        server = threading.Thread(target=_serve, args=(local, lambda url: ready.set(), stop))
        server.start()
        assert ready.wait(30)
        url = f"http://127.0.0.1:{local.port}/pixel?email_id=e1&user_id=u1"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            assert response.status == 200
        stop.set()
        server.join(30)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [line.get("open_stored") for line in lines if line["message"] == "metrics"] == [1]
