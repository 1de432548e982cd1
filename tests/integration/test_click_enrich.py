"""Clicks through the real app, then the clicks table's stream through the local poller into the
click enrichment handler, against DynamoDB Local and the fake ipinfo server."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailpixel.enrich.clicks import build_click_handler
from mailpixel.enrich.geo.providers import IpinfoProvider
from mailpixel.ops.local.stream_poller import StreamPoller
from mailpixel.pixel.app import create_app
from mailpixel.signing import make_click_url
from tests.conftest import all_items
from tests.signed_urls import NEW

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
DEST = "https://shop.example.com/sale?x=1#top"


@pytest.fixture
def poller(settings, ddb, table, ipinfo) -> StreamPoller:
    handler = build_click_handler(
        settings, ddb=ddb, provider=IpinfoProvider(ipinfo.url, timeout=1.0), backoff_sleep_limit_seconds=0
    )
    return StreamPoller(settings, handler, ddb=ddb, table=settings.clicks_table, retry_delay=0.01)


def click(settings, user: str, *, t: int | None, ua: str, ip: str, method: str = "GET") -> None:
    app = create_app(settings.with_overrides(signing_secrets=(NEW,)))
    url = make_click_url("https://px.example.com", "e1", user, DEST, NEW, t=t)
    response = app.test_client().open(
        url.removeprefix("https://px.example.com"),
        method=method,
        headers={"User-Agent": ua},
        environ_base={"REMOTE_ADDR": ip},
    )
    assert response.status_code == 302


def by_user(ddb, settings) -> dict[str, dict[str, Any]]:
    return {item["user_id"]: item for item in all_items(ddb, settings.clicks_table)}


def test_clicks_get_verdicts_evidence_and_geo_once(settings, ddb, poller):
    now = int(time.time())
    click(settings, "person", t=now - 3600, ua=CHROME, ip="81.2.69.142")
    click(settings, "scanner", t=now - 1, ua=CHROME, ip="40.107.22.35")
    click(settings, "fast", t=now - 1, ua=CHROME, ip="81.2.69.160")
    click(settings, "head", t=None, ua=CHROME, ip="81.2.69.161", method="HEAD")
    poller.wait_idle()
    items = by_user(ddb, settings)

    person = items["person"]
    assert person["machine_click"] is False and "machine_reason" not in person
    assert person["client"]["name"] == "Chrome"
    assert person["evidence"]["rule"] == "human"
    assert 3599 <= person["evidence"]["seconds_since_issue"] <= 3700
    assert person["geo"]["country"] and person["enriched_at"]

    scanner = items["scanner"]
    assert (scanner["machine_click"], scanner["machine_reason"]) == (True, "security_scanner")
    assert scanner["evidence"]["rule"] == "scanner_range:microsoft"
    assert scanner["evidence"]["range_owner"] == "microsoft"

    assert items["fast"]["evidence"]["rule"] == "too_fast"
    assert items["fast"]["evidence"]["seconds_since_issue"] < 5
    assert items["head"]["evidence"] == {"rule": "head_request"}
    assert items["head"]["method"] == "HEAD"

    # A replayed stream (a fresh poller reading from the start) changes nothing.
    before = by_user(ddb, settings)
    again = StreamPoller(settings, poller.handler, ddb=ddb, table=settings.clicks_table)
    again.wait_idle()
    assert by_user(ddb, settings) == before


def test_truncated_ips_are_geolocated_then_forgotten(settings, ddb, table, ipinfo):
    private = settings.with_overrides(ip_storage="truncated")
    click(private, "u1", t=None, ua=CHROME, ip="81.2.69.142")
    (item,) = all_items(ddb, settings.clicks_table)
    assert item["ip"] == "81.2.69.0" and item["pending_ip"] == "81.2.69.142"
    handler = build_click_handler(
        settings, ddb=ddb, provider=IpinfoProvider(ipinfo.url, timeout=1.0), backoff_sleep_limit_seconds=0
    )
    StreamPoller(settings, handler, ddb=ddb, table=settings.clicks_table).wait_idle()
    (item,) = all_items(ddb, settings.clicks_table)
    assert "pending_ip" not in item and item["geo"]["country"]


def test_opens_keep_their_urls_t_and_the_seconds_since_it_as_evidence(settings, ddb, table, ipinfo):
    from mailpixel.enrich.handler import build_handler
    from mailpixel.signing import make_url

    issued = int(time.time()) - 90
    app = create_app(settings.with_overrides(signing_secrets=(NEW,)))
    url = make_url("https://px.example.com", "e1", "u1", NEW, t=issued)
    response = app.test_client().get(
        url.removeprefix("https://px.example.com"), headers={"User-Agent": CHROME}
    )
    assert response.status_code == 200
    (stored,) = all_items(ddb, settings.table)
    assert stored["issued_t"] == issued
    handler = build_handler(
        settings, ddb=ddb, provider=IpinfoProvider(ipinfo.url, timeout=1.0), backoff_sleep_limit_seconds=0
    )
    StreamPoller(settings, handler, ddb=ddb).wait_idle()
    (opened,) = all_items(ddb, settings.table)
    assert 89 <= opened["evidence"]["seconds_since_issue"] <= 200
    assert opened["evidence"]["rule"]
