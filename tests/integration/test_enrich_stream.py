"""The enrich stream handler and the local stream poller, against DynamoDB Local."""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

import pytest

from mailpixel.enrich.classify.ranges import IpRanges, parse_range_file
from mailpixel.enrich.geo.providers import IpinfoProvider
from mailpixel.enrich.handler import StreamHandler, build_handler
from mailpixel.model.events import RequestFacts, build_open_event
from mailpixel.ops.local.stream_poller import StreamPoller
from tests.conftest import all_items, http_api_event

APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"


@pytest.fixture
def handler(settings, ddb, table, ipinfo) -> StreamHandler:
    return build_handler(
        settings, ddb=ddb, provider=IpinfoProvider(ipinfo.url, timeout=1.0), backoff_sleep_limit_seconds=0
    )


def put_open(
    store, settings, n: int, *, ip: str = "81.2.69.142", ua: str = APPLE_MAIL, pending: str | None = None
):
    facts = RequestFacts(
        request_id=f"req-{n}", epoch_ms=int(time.time() * 1000) + n, ip=pending or ip, user_agent=ua
    )
    event = build_open_event(
        email_id="e1",
        user_id=f"u{n}",
        facts=facts,
        retention_seconds=settings.retention_seconds,
        stored_ip=ip,
    )
    assert store.put_event(event)
    return event


def stream_batch(settings, ddb) -> list[dict[str, Any]]:
    """Every record in the table's stream so far, in Lambda's shape, read by the local poller."""
    seen: list[dict[str, Any]] = []

    def capture(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(event["Records"])
        return {"batchItemFailures": []}

    StreamPoller(settings, capture, ddb=ddb).poll_once()
    return seen


def events_by_user(ddb, table) -> dict[str, dict[str, Any]]:
    return {i["user_id"]: i for i in all_items(ddb, table)}


def test_poller_hands_records_in_lambda_shape(settings, ddb, store):
    put_open(store, settings, 1)
    (record,) = stream_batch(settings, ddb)
    assert record["eventName"] == "INSERT" and record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"].startswith("arn:aws:dynamodb:")
    assert record["awsRegion"] == settings.region and record["eventVersion"]
    data = record["dynamodb"]
    assert isinstance(data["ApproximateCreationDateTime"], float)
    assert data["StreamViewType"] == "NEW_IMAGE" and data["SequenceNumber"]
    assert data["Keys"]["email_id"] == {"S": "e1"} and data["NewImage"]["user_agent"] == {"S": APPLE_MAIL}


def test_enriches_new_events(settings, ddb, store, handler, ipinfo):
    put_open(store, settings, 1)
    put_open(store, settings, 2, ip="66.102.8.33", ua=GMAIL_PROXY)
    put_open(store, settings, 3, ip="17.58.101.0", ua="Mozilla/5.0", pending="17.58.101.7")
    assert handler({"Records": stream_batch(settings, ddb)}, None) == {"batchItemFailures": []}
    items = events_by_user(ddb, settings.table)

    human = items["u1"]
    assert human["client"] == {
        "name": "Apple Mail",
        "version": "605.1.15",
        "os": "Mac OS X 10.15.7",
        "device": "Mac",
    }
    assert human["machine_open"] is False and "machine_reason" not in human and "proxy" not in human
    assert human["geo"]["source"] == "ipinfo" and human["geo"]["country"] in {"US", "FR", "AU"}
    assert human["enriched_at"].endswith("Z")

    assert human["evidence"] == {"rule": "human"}

    gmail = items["u2"]
    assert gmail["machine_open"] is False and gmail["proxy"] == "gmail"
    # The proxy's address says nothing about the reader: no lookup is spent on it.
    assert gmail["geo"]["source"] == "proxy:gmail not_looked_up" and gmail["geo"]["country"] is None
    assert gmail["evidence"] == {"rule": "gmail_proxy", "ua_token": "via ggpht.com", "range_owner": "google"}

    mpp = items["u3"]
    assert mpp["machine_open"] is True and mpp["machine_reason"] == "apple_mpp" and mpp["proxy"] == "apple"
    assert mpp["evidence"] == {"rule": "apple_mpp", "ua_token": "Mozilla/5.0", "range_owner": "apple"}
    assert "pending_ip" not in mpp and mpp["ip"] == "17.58.101.0"
    assert mpp["geo"]["source"] == "proxy:apple not_looked_up"  # Apple's own /8: no published place
    assert ipinfo.ips_seen == ["81.2.69.142"] and ipinfo.requests == 1  # only the reader's address


def test_apple_relay_opens_take_the_place_apple_publishes(settings, ddb, store, ipinfo):
    """A relay egress prefix with Apple's published place (a refreshed ranges file): used as is."""
    relay = parse_range_file("# owner: apple\n17.0.0.0/8\n172.224.226.0/27 GB,GB-EN,London\n")
    handler = build_handler(
        settings, ddb=ddb, provider=IpinfoProvider(ipinfo.url, timeout=1.0), ranges=IpRanges([relay])
    )
    put_open(store, settings, 1, ip="172.224.226.5", ua="Mozilla/5.0")
    put_open(
        store,
        settings,
        2,
        ip="172.224.226.9",
        ua=APPLE_MAIL.replace("Gecko)", "Gecko) Version/17.1 Safari/605.1.15"),
    )
    assert handler({"Records": stream_batch(settings, ddb)}, None) == {"batchItemFailures": []}
    items = events_by_user(ddb, settings.table)
    london = {"country": "GB", "region": "GB-EN", "city": "London", "source": "proxy:apple via apple_egress"}
    assert items["u1"]["machine_reason"] == "apple_mpp" and items["u1"]["geo"] == {
        **dict.fromkeys(("latitude", "longitude", "timezone", "org")),
        **london,
    }
    relayed = items["u2"]
    assert relayed["machine_open"] is False and relayed["proxy"] == "apple"
    assert relayed["evidence"] == {"rule": "apple_relay", "range_owner": "apple"}
    assert {k: relayed["geo"][k] for k in london} == london
    assert ipinfo.requests == 0 and not ipinfo.ips_seen


def test_replayed_and_duplicated_batches_change_nothing(settings, ddb, store, handler, ipinfo):
    put_open(store, settings, 1)
    put_open(store, settings, 2)
    records = stream_batch(settings, ddb)
    assert handler({"Records": records}, None) == {"batchItemFailures": []}
    before = all_items(ddb, settings.table)

    assert handler({"Records": records}, None) == {"batchItemFailures": []}  # replayed
    doubled = [r for record in records for r in (record, copy.deepcopy(record))]
    assert handler({"Records": doubled}, None) == {"batchItemFailures": []}  # duplicated
    assert all_items(ddb, settings.table) == before
    assert ipinfo.requests == 1  # later passes answered from the cache


def test_one_poison_record_is_reported_alone(settings, ddb, store, handler):
    for n in (1, 2, 3):
        put_open(store, settings, n)
    records = stream_batch(settings, ddb)
    poison = copy.deepcopy(records[1])
    poison["dynamodb"]["SequenceNumber"] = "999"
    poison["dynamodb"]["NewImage"] = {
        "email_id": {"S": "e1"},
        "open_key": {"S": "k"},
        "expires_at": {"N": "soon"},
    }
    no_image = copy.deepcopy(records[1])
    no_image["dynamodb"]["SequenceNumber"] = "998"
    del no_image["dynamodb"]["NewImage"]
    batch = [records[0], poison, records[1], no_image, records[2], "garbage"]
    result = handler({"Records": batch}, None)
    assert result == {"batchItemFailures": [{"itemIdentifier": "999"}, {"itemIdentifier": "998"}]}
    assert all("enriched_at" in item for item in all_items(ddb, settings.table))


def test_only_inserts_are_enriched(settings, ddb, store, handler):
    put_open(store, settings, 1)
    (record,) = stream_batch(settings, ddb)
    for name in ("MODIFY", "REMOVE"):
        assert handler({"Records": [{**record, "eventName": name}]}, None) == {"batchItemFailures": []}
    assert "enriched_at" not in all_items(ddb, settings.table)[0]


@pytest.mark.parametrize("mode", ["slow", "429", "500", "malformed"])
def test_provider_failure_reports_records_for_retry(settings, ddb, store, handler, ipinfo, mode):
    ipinfo.mode, ipinfo.delay = mode, 1.5
    put_open(store, settings, 1)
    put_open(store, settings, 2, ip="10.0.0.7")  # private: needs no provider
    records = stream_batch(settings, ddb)
    result = handler({"Records": records}, None)
    assert result == {
        "batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in records]
    }
    items = events_by_user(ddb, settings.table)
    assert "enriched_at" not in items["u1"] and "enriched_at" not in items["u2"]  # the batch stops at u1

    ipinfo.mode = "ok"
    handler.geolocator.backoff_until = 0  # the retry comes after the backoff
    assert handler({"Records": records}, None) == {"batchItemFailures": []}
    assert events_by_user(ddb, settings.table)["u1"]["geo"]["source"] == "ipinfo"
    assert events_by_user(ddb, settings.table)["u2"]["geo"]["source"] == "reserved"


def test_geolocation_down_past_the_max_wait_enriches_without_location(settings, ddb, store, handler, ipinfo):
    """A provider that stays down must not cost the event its client and verdict."""

    ipinfo.mode = "500"
    put_open(store, settings, 1)
    records = stream_batch(settings, ddb)
    assert handler({"Records": records}, None)["batchItemFailures"]  # young record: retried later
    handler.clock = lambda: time.time() + settings.geo_max_wait_seconds + 1
    handler.geolocator.backoff_until = 0
    assert handler({"Records": records}, None) == {"batchItemFailures": []}
    item = events_by_user(ddb, settings.table)["u1"]
    assert item["geo"]["source"] == "unavailable" and item["geo"]["country"] is None
    assert item["client"]["name"] and "machine_open" in item and "enriched_at" in item


def test_erased_event_is_not_recreated(settings, ddb, store, handler):
    put_open(store, settings, 1)
    records = stream_batch(settings, ddb)
    key = records[0]["dynamodb"]["Keys"]
    ddb.delete_item(TableName=settings.table, Key=key)
    assert handler({"Records": records}, None) == {"batchItemFailures": []}
    assert all_items(ddb, settings.table) == []


def test_poller_retries_then_gives_up_to_the_failure_log(settings, ddb, store, handler, ipinfo, tmp_path):
    ipinfo.mode = "500"
    put_open(store, settings, 1)
    failure_log = tmp_path / "failures.jsonl"
    poller = StreamPoller(settings, handler, ddb=ddb, retry_delay=0, max_attempts=2, failure_log=failure_log)
    poller.poll_once()
    assert not failure_log.exists()
    handler.geolocator.backoff_until = 0
    poller.poll_once()  # the retry, failing again: given up
    assert len(failure_log.read_text().splitlines()) == 1
    assert poller.invocations == 2


@pytest.fixture
def enrich_env(monkeypatch, ipinfo):
    monkeypatch.setenv("IPINFO_URL", ipinfo.url)
    monkeypatch.setenv("IPINFO_TOKEN", "test-token")


def test_end_to_end_pixel_stream_enrich(enrich_env, lambda_handler, settings, ddb, ipinfo):
    """The real handler.py: pixel → DynamoDB Local → its stream → poller → handler.enrich."""
    event = http_api_event(
        {"user_id": "u9", "email_id": "e9"}, source_ip="81.2.69.160", headers={"User-Agent": APPLE_MAIL}
    )
    assert lambda_handler(event, None)["statusCode"] == 200
    poller = StreamPoller(settings, sys.modules["handler"].enrich, ddb=ddb, interval=0.05).start()
    try:
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (item,) = all_items(ddb, settings.table)
            if "enriched_at" in item:
                break
            time.sleep(0.05)
    finally:
        poller.stop()
    assert item["client"]["name"] == "Apple Mail"
    assert item["machine_open"] is False
    assert item["geo"]["source"] == "ipinfo" and item["geo"]["country"]
    assert item["enriched_at"]
    assert ipinfo.auth_headers == ["Bearer test-token"]
