"""IP storage modes and retention, through the real Lambda handler and DynamoDB Local."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.conftest import all_items, http_api_event

IPV4 = "198.51.100.77"
IPV6 = "2001:db8:abcd:12:3456:789a:bcde:f012"

# mode, source IP, stored `ip` (None: no attribute), `pending_ip` kept for enrichment's geolocation.
CASES = [
    ("full", IPV4, IPV4, None),
    ("truncated", IPV4, "198.51.100.0", IPV4),
    ("none", IPV4, None, IPV4),
    ("full", IPV6, IPV6, None),
    ("truncated", IPV6, "2001:db8:abcd::", IPV6),
    ("none", IPV6, None, IPV6),
]


@pytest.mark.parametrize(
    ("mode", "source", "ip", "pending"), CASES, ids=[f"{c[0]}-v{4 if '.' in c[1] else 6}" for c in CASES]
)
def test_ip_storage_modes(monkeypatch, request, ddb, table, mode, source, ip, pending):
    monkeypatch.setenv("MAILPIXEL_IP_STORAGE", mode)
    handler = request.getfixturevalue("lambda_handler")
    response = handler(http_api_event("email_id=e1&user_id=u1", source_ip=source), None)
    assert response["statusCode"] == 200
    (item,) = all_items(ddb, table)
    assert item.get("ip") == ip
    assert item.get("pending_ip") == pending
    # Nothing else in the item carries the address.
    others = {k: v for k, v in item.items() if k not in ("ip", "pending_ip")}
    assert source not in repr(others)


@pytest.mark.parametrize("days", [1, 30, 400])
def test_retention_sets_expires_at_from_the_open_time(monkeypatch, request, ddb, table, days):
    monkeypatch.setenv("MAILPIXEL_RETENTION_DAYS", str(days))
    handler = request.getfixturevalue("lambda_handler")
    handler(http_api_event("email_id=e1&user_id=u1"), None)
    (item,) = all_items(ddb, table)
    opened = datetime.fromisoformat(item["opened_at"].replace("Z", "+00:00"))
    assert item["expires_at"] == int(opened.timestamp()) + days * 86_400
