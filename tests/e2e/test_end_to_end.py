"""Issues 3 and 6 together: pixel hits through the real handler, the table's stream, the real
`handler.enrich`, then `mailpixel stats` and `/api/.../stats`, checked against a recount of every
stored event, after the stream has been replayed twice."""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import pytest

from mailpixel.ops.cli import main
from mailpixel.ops.local.stream_poller import StreamPoller
from tests.conftest import all_items, http_api_event, target_args
from tests.fake_ipinfo import FakeIpinfo

APPLE_MPP = "Mozilla/5.0"
OUTLOOK = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Microsoft Outlook 16.0.17928; ms-office; MSOffice 16"
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"


@pytest.fixture
def stack_env(monkeypatch, ipinfo: FakeIpinfo) -> FakeIpinfo:
    monkeypatch.setenv("IPINFO_URL", ipinfo.url)
    monkeypatch.setenv("MAILPIXEL_API_KEYS", "k1")
    return ipinfo


def recount(events: list[dict[str, Any]]) -> dict[str, Any]:
    humans = [e for e in events if not e["machine_open"]]
    return {
        "opens": len(events),
        "human_opens": len(humans),
        "machine_opens": len(events) - len(humans),
        "unique_openers": len({e["user_id"] for e in events}),
        "unique_human_openers": len({e["user_id"] for e in humans}),
        "first_open_at": min(e["opened_at"] for e in events),
        "last_open_at": max(e["opened_at"] for e in events),
    }


def test_stats_agree_with_a_recount_after_replays(stack_env, lambda_handler, settings, ddb, table, capsys):
    rng = random.Random(7)
    kinds = [
        (APPLE_MPP, "17.58.0.10"),
        (OUTLOOK, "81.2.69.160"),
        (GMAIL, "66.249.84.1"),
        (OUTLOOK, "81.2.69.142"),
    ]
    for n in range(30):
        ua, ip = rng.choice(kinds)
        event = http_api_event(
            {"email_id": "camp", "user_id": f"u{rng.randint(1, 8)}"},
            request_id=f"r{n}",
            source_ip=ip,
            headers={"User-Agent": ua},
        )
        event["requestContext"]["timeEpoch"] = 1_795_528_140_000 + n * 61_000
        assert lambda_handler(event, None)["statusCode"] == 200

    enrich = sys.modules["handler"].enrich
    for _ in range(3):  # the first pass enriches; two full replays must change nothing
        poller = StreamPoller(settings, enrich, ddb=ddb)
        poller.wait_idle(timeout=60)

    events = [e for e in all_items(ddb, table) if e["email_id"] == "camp"]
    assert len(events) == 30 and all("enriched_at" in e for e in events)
    expected = recount(events)
    assert expected["machine_opens"] > 0 and expected["human_opens"] > 0

    assert main(["stats", "--email-id", "camp", "--format", "json", *target_args(settings)]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    assert {k: from_cli[k] for k in expected} == expected

    app = sys.modules["handler"].get_api_app()
    response = app.test_client().get("/api/emails/camp/stats", headers={"Authorization": "Bearer k1"})
    assert response.status_code == 200
    from_api = response.get_json()
    assert {k: from_api[k] for k in expected} == expected
