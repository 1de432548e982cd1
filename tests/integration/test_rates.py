"""Issue 17, item 5: recipients and the rates over them, against DynamoDB Local.

Opens and clicks go through the real per-batch enrichment writer (as `prefetch_then_people`
does); recipient counts through `record_recipients`, the API's PUT and the CLI. Every rate is
asserted exactly, and the estimated human openers (the union of human openers and human
clickers) equal a recount under replays, reordering and crashes."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from mailpixel.api import stats
from mailpixel.api.app import create_api_app
from mailpixel.ddb.recipients import FIELDS, MetaTable, record_recipients
from mailpixel.enrich.aggregates import CLICKS
from mailpixel.enrich.writer import EnrichmentWriter
from mailpixel.model.clicks import ClickEvent
from mailpixel.model.keys import email_pk, engaged_sk, meta_key, recipients_key
from mailpixel.model.query import BadQuery
from mailpixel.ops.cli import main
from tests.conftest import all_items, target_args
from tests.integration.test_aggregates import (
    expected_from_events,
    make_events,
    prefetch_then_people,
    seed,
)
from tests.integration.test_click_aggregates import enrich, make_clicks, recount
from tests.integration.test_click_aggregates import stored as stored_click

FIXTURES = Path(__file__).parent.parent / "fixtures"
KEY = "rates-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
DAY = "2026-11-24"


@pytest.fixture
def api(settings, table):
    return create_api_app(settings.with_overrides(api_keys=(KEY,))).test_client()


def click(request_id: str, user_id: str, at: str, url: str = "https://shop.example/a") -> ClickEvent:
    return ClickEvent(
        email_id="e1",
        clicked_at=f"{DAY}T{at}.000Z",
        request_id=request_id,
        expires_at=2_000_000_000,
        url=url,
        user_id=user_id,
        ip="198.51.100.9",
        user_agent="Mozilla/5.0",
        signed=True,
    )


def enrich_clicks(store, ddb, settings, clicks: list[tuple[ClickEvent, bool]]) -> list[bool | Exception]:
    """Each (click, machine) through the click writer, in one batch."""
    for event, _ in clicks:
        store.put_event(event)
    writer = EnrichmentWriter(ddb, settings, kind=CLICKS)
    verdicts = [
        {"machine_click": machine, "client": {"name": "Chrome"}, "enriched_at": "x"}
        | ({"machine_reason": "security_scanner"} if machine else {})
        for _, machine in clicks
    ]
    return writer.write_batch([(stored_click(c), v) for (c, _), v in zip(clicks, verdicts, strict=True)])


def campaign(store, ddb, settings) -> None:
    """Apple's prefetch for u9 (its only open) at 09:00, people u0, u1, u2 opening from 10:00;
    then clicks: u9 as a person (a click implies an open), u0 as a person (already an opener),
    u5 only by a scanner, u6 as a person whose client never loaded the pixel."""
    prefetch_then_people(store, ddb, settings, DAY, 3)
    results = enrich_clicks(
        store,
        ddb,
        settings,
        [
            (click("c-u9", "u9", "11:00:00"), False),
            (click("c-u0", "u0", "11:01:00"), False),
            (click("c-u5", "u5", "09:00:01"), True),
            (click("c-u6", "u6", "12:00:00", "https://shop.example/b"), False),
        ],
    )
    assert results == [True] * 4


def test_each_rate_over_recorded_recipients_is_exact_and_says_how_it_is_computed(store, ddb, settings, api):
    campaign(store, ddb, settings)
    before = api.get("/api/emails/e1/stats", headers=AUTH).get_json()
    # No recipients recorded: the rates over them are unknown, the others are there.
    assert before["recipients"] is None
    assert {name for name, rate in before["rates"].items() if rate["value"] is None} == {
        "open_rate",
        "estimated_human_open_rate",
        "click_rate",
    }

    put = api.put(
        "/api/emails/e1/recipients", json={"sent": 10, "tracked_opens": 8, "tracked_clicks": 10}, headers=AUTH
    )
    assert put.status_code == 200, put.data
    assert {k: v for k, v in put.get_json().items() if k != "recorded_at"} == {
        "email_id": "e1",
        "sent": 10,
        "tracked_opens": 8,
        "tracked_clicks": 10,
    }
    got = api.get("/api/emails/e1/stats", headers=AUTH).get_json()
    assert got["recipients"] == {"sent": 10, "tracked_opens": 8, "tracked_clicks": 10}
    assert (got["opens"], got["machine_opens"], got["clicks"], got["machine_clicks"]) == (4, 1, 4, 1)
    assert (got["unique_human_openers"], got["unique_human_clickers"]) == (3, 3)
    # u0, u1, u2 opened; u9 and u6 clicked as people without a human open: 5, each once.
    assert got["estimated_human_openers"] == 5
    assert got["rates"] == {
        "open_rate": {"value": 0.375, "formula": "unique_human_openers / recipients.tracked_opens"},
        "estimated_human_open_rate": {
            "value": 0.625,
            "formula": "estimated_human_openers / recipients.tracked_opens",
        },
        "click_rate": {"value": 0.3, "formula": "unique_human_clickers / recipients.tracked_clicks"},
        "click_to_open_rate": {"value": 1.0, "formula": "unique_human_clickers / unique_human_openers"},
        "machine_open_share": {"value": 0.25, "formula": "machine_opens / opens"},
        "machine_click_share": {"value": 0.25, "formula": "machine_clicks / clicks"},
    }
    assert got["click_to_open_rate"] == 1.0
    # The recent-emails rows carry the same recipients and rates.
    (row,) = stats.recent_emails(ddb, settings.meta_table, days=1, today=date.fromisoformat(DAY))
    assert row["rates"] == got["rates"] and row["recipients"] == got["recipients"]


def test_a_replayed_click_and_a_click_before_the_open_add_no_second_estimated_opener(store, ddb, settings):
    # u1 clicks first, then opens as a person; u2's click is delivered twice.
    assert enrich_clicks(store, ddb, settings, [(click("c1", "u1", "08:00:00"), False)]) == [True]
    prefetch_then_people(store, ddb, settings, DAY, 3)
    assert enrich_clicks(store, ddb, settings, [(click("c2", "u2", "11:00:00"), False)]) == [True]
    assert enrich_clicks(store, ddb, settings, [(click("c2", "u2", "11:00:00"), False)]) == [False]
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert (got["unique_human_openers"], got["estimated_human_openers"]) == (3, 3)
    # The marker names the event that put the user in the union: u1's click came first.
    marker = ddb.get_item(TableName=settings.meta_table, Key=meta_key(email_pk("e1"), engaged_sk("u1")))
    assert marker["Item"]["seen_by"]["S"].startswith("click:")


@pytest.mark.parametrize(
    "crash",
    [None, ("opener", "after"), ("opener", "before"), ("commit", "after"), ("claim", "after")],
    ids=lambda c: "no-crash" if c is None else "-".join(reversed(c)),
)
def test_estimated_human_openers_equal_a_recount_of_the_union(store, ddb, settings, crash):
    names = [f"newsletter/{n}" for n in range(2)]
    opens = make_events(50, names=names, users=6, days=1)
    # Clickers user-3 … user-8: some only click, and user-0 … user-2 only open.
    clicks = [
        replace(c, user_id=f"user-{int(c.user_id[5:]) + 3}" if c.user_id else None)
        for c in make_clicks(40, emails=2, users=6)
    ]
    seed(store, ddb, settings, opens, crash=crash)
    enrich(store, ddb, settings, clicks, crash=crash)
    openers = expected_from_events(ddb, settings)["emails"]
    clickers = recount(ddb, settings)
    assert set(openers) == set(clickers) == set(names)
    union = assert_estimated_human_openers_equal_recount(ddb, settings)
    for email_id in names:
        assert union[email_id] == openers[email_id]["humans"] | clickers[email_id]["humans"]
        # The data has both kinds: people who only clicked and people who only opened.
        assert clickers[email_id]["humans"] - openers[email_id]["humans"]
        assert openers[email_id]["humans"] - clickers[email_id]["humans"]


def recount_union(ddb, settings) -> dict[str, set[str]]:
    """Per email, the users with a human open or a human click, from the opens and clicks tables
    alone: what `estimated_human_openers` must be the size of."""
    union: dict[str, set[str]] = defaultdict(set)
    for table, verdict in ((settings.table, "machine_open"), (settings.clicks_table, "machine_click")):
        for item in all_items(ddb, table):
            union[item["email_id"]]  # an email with events but nobody in the union counts 0
            if item.get("user_id") and item.get("enriched_at") and item.get(verdict) is False:
                union[item["email_id"]].add(item["user_id"])
    return union


def assert_estimated_human_openers_equal_recount(ddb, settings) -> dict[str, set[str]]:
    """Every email's `estimated_human_openers` equals the recount of the union; returns it."""
    union = recount_union(ddb, settings)
    assert union
    got = {
        email_id: stats.email_stats(ddb, settings.meta_table, email_id)["estimated_human_openers"]
        for email_id in union
    }
    assert got == {email_id: len(users) for email_id, users in union.items()}
    return union


def test_a_second_record_replaces_the_first(ddb, settings, table):
    meta = MetaTable.of(ddb, settings)
    record_recipients(meta, "e1", 100, 90, 80)
    record_recipients(meta, "e1", 100, 90, 80)  # a retry: the same numbers, not twice them
    assert stats.email_stats(ddb, settings.meta_table, "e1")["recipients"] == {
        "sent": 100,
        "tracked_opens": 90,
        "tracked_clicks": 80,
    }
    record_recipients(meta, "e1", 250, 200, 250)  # the running total after a second batch
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert got["recipients"] == {"sent": 250, "tracked_opens": 200, "tracked_clicks": 250}
    item = ddb.get_item(TableName=settings.meta_table, Key=recipients_key("e1"))["Item"]
    assert int(item["expires_at"]["N"]) > 0 and item["email_id"]["S"] == "e1"


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ((10, 11, 0), "tracked_opens (11) cannot exceed sent (10)"),
        ((10, 0, 11), "tracked_clicks (11) cannot exceed sent (10)"),
        ((-1, 0, 0), "sent must be between 0"),
        ((True, 0, 0), "sent must be a whole number"),
        ((1.5, 1, 1), "sent must be a whole number"),
        ((10**10, 0, 0), "sent must be between 0"),
    ],
)
def test_counts_that_cannot_be_are_refused(ddb, settings, table, counts: tuple[Any, ...], message: str):
    with pytest.raises(BadQuery, match=message.replace("(", r"\(").replace(")", r"\)")):
        record_recipients(MetaTable.of(ddb, settings), "e1", *counts)
    assert "Item" not in ddb.get_item(TableName=settings.meta_table, Key=recipients_key("e1"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "send a JSON object"),
        ([1, 2], "send a JSON object"),
        ({"tracked_opens": 1}, "sent is required"),
        ({"sent": 5, "opens": 1}, "unknown field(s) opens"),
        ({"sent": "5"}, "sent must be a whole number"),
        ({"sent": 5, "tracked_clicks": 6}, "tracked_clicks (6) cannot exceed sent (5)"),
    ],
)
def test_the_api_refuses_bad_bodies_with_a_400_that_says_why(api, ddb, settings, body: Any, message: str):
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
    response = api.put("/api/emails/e1/recipients", headers=AUTH, **kwargs)
    assert response.status_code == 400 and message in response.get_json()["message"]
    assert api.put("/api/emails/e1/recipients", json={"sent": 1}).status_code == 401
    assert "Item" not in ddb.get_item(TableName=settings.meta_table, Key=recipients_key("e1"))


def test_tracked_counts_default_to_sent_and_an_id_with_a_slash_works(api):
    response = api.put("/api/emails/news%2F2026-11/recipients", json={"sent": 40}, headers=AUTH)
    assert response.status_code == 200
    got = api.get("/api/emails/news%2F2026-11/stats", headers=AUTH).get_json()
    assert got["recipients"] == {"sent": 40, "tracked_opens": 40, "tracked_clicks": 40}


def test_cli_records_recipients_and_stats_prints_each_rate_with_its_formula(store, ddb, settings, capsys):
    campaign(store, ddb, settings)
    args = ["--email-id", "e1", *target_args(settings)]
    assert main(["recipients", *args, "--sent", "10", "--tracked-opens", "8"]) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert (recorded["sent"], recorded["tracked_opens"], recorded["tracked_clicks"]) == (10, 8, 10)
    assert main(["stats", *args]) == 0
    table = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.strip())
    assert table["recipients"] == "sent 10, tracked_opens 8, tracked_clicks 10"
    assert table["estimated_human_openers"] == "5"
    assert table["open_rate"] == "0.375 (37.50%)  = unique_human_openers / recipients.tracked_opens"
    assert table["estimated_human_open_rate"] == (
        "0.625 (62.50%)  = estimated_human_openers / recipients.tracked_opens"
    )
    assert table["click_rate"] == "0.3 (30.00%)  = unique_human_clickers / recipients.tracked_clicks"
    assert table["machine_click_share"] == "0.25 (25.00%)  = machine_clicks / clicks"
    # A count that cannot be is a one-line error, and nothing is recorded.
    assert (
        main(
            ["recipients", "--email-id", "e2", *target_args(settings), "--sent", "3", "--tracked-clicks", "4"]
        )
        == 2
    )
    assert "tracked_clicks (4) cannot exceed sent (3)" in capsys.readouterr().err
    assert stats.email_stats(ddb, settings.meta_table, "e2")["recipients"] is None
    # An ID no open can have (past the pixel's limits) is refused the same way.
    assert main(["recipients", "--email-id", "x" * 300, *target_args(settings), "--sent", "3"]) == 2
    assert "email_id is longer than 256 characters" in capsys.readouterr().err


def test_forget_user_removes_their_engaged_markers(store, ddb, settings):
    from mailpixel.ops.erasure import Eraser

    campaign(store, ddb, settings)
    for user in ("u9", "u0", "u6"):
        key = meta_key(email_pk("e1"), engaged_sk(user))
        assert "Item" in ddb.get_item(TableName=settings.meta_table, Key=key)
        Eraser(ddb, settings.table, settings.meta_table, settings.clicks_table).forget_user(user)
        assert "Item" not in ddb.get_item(TableName=settings.meta_table, Key=key)


CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
OUTLOOK = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"


def test_rates_over_real_pixel_and_click_requests_and_both_enrichments(settings, ddb, table, ipinfo):
    """Every open and click goes through the real `/pixel` and `/click`, the stream and the
    real classification: Apple's prefetch (its /8, a bare UA), a person in Outlook, a Safe Links
    fetch from Microsoft's EOP range and a Proofpoint fetch (scanners), and people's clicks."""
    import time

    from mailpixel.enrich.clicks import build_click_handler
    from mailpixel.enrich.geo.providers import IpinfoProvider
    from mailpixel.enrich.handler import build_handler
    from mailpixel.ops.local.stream_poller import StreamPoller
    from mailpixel.pixel.app import create_app
    from mailpixel.signing import make_click_url, make_url
    from tests.signed_urls import NEW

    signed = settings.with_overrides(signing_secrets=(NEW,))
    client = create_app(signed).test_client()
    issued = int(time.time()) - 3600  # sent an hour ago: no click is "too fast"

    def fetch(url: str, ua: str, ip: str, status: int) -> None:
        response = client.get(
            url.removeprefix("https://px.example"),
            headers={"User-Agent": ua},
            environ_base={"REMOTE_ADDR": ip},
        )
        assert response.status_code == status

    def opened(user: str, ua: str, ip: str) -> None:
        fetch(make_url("https://px.example", "e1", user, NEW, t=issued), ua, ip, 200)

    def clicked(user: str, ua: str, ip: str) -> None:
        fetch(
            make_click_url("https://px.example", "e1", user, "https://shop.example/a", NEW, t=issued),
            ua,
            ip,
            302,
        )

    opened("apple-only", "Mozilla/5.0", "17.58.101.9")  # Apple's prefetch, the only open
    opened("reader", OUTLOOK, "81.2.69.142")  # a person
    opened("reader", OUTLOOK, "81.2.69.142")  # … twice: one opener
    opened("scanned", CHROME, "40.107.22.35")  # Safe Links / EOP fetching the image
    clicked("apple-only", CHROME, "81.2.69.150")  # the person behind the prefetch clicks
    clicked("reader", CHROME, "81.2.69.142")
    clicked("scanned", CHROME, "67.231.150.12")  # Proofpoint's range: a scanner (probable)

    provider = IpinfoProvider(ipinfo.url, timeout=1.0)
    opens = build_handler(settings, ddb=ddb, provider=provider, backoff_sleep_limit_seconds=0)
    clicks = build_click_handler(settings, ddb=ddb, provider=provider, backoff_sleep_limit_seconds=0)
    StreamPoller(settings, opens, ddb=ddb).wait_idle()
    StreamPoller(settings, clicks, ddb=ddb, table=settings.clicks_table).wait_idle()

    record_recipients(MetaTable.of(ddb, settings), "e1", 5, 4, 5)
    got = stats.email_stats(ddb, settings.meta_table, "e1")
    assert (got["opens"], got["machine_opens"], got["clicks"], got["machine_clicks"]) == (4, 2, 3, 1)
    assert (got["unique_human_openers"], got["unique_human_clickers"], got["estimated_human_openers"]) == (
        1,
        2,
        2,
    )
    values = {name: rate["value"] for name, rate in got["rates"].items()}
    assert values == {
        "open_rate": 0.25,  # reader / 4 tracked
        "estimated_human_open_rate": 0.5,  # reader and apple-only (a click implies an open) / 4
        "click_rate": 0.4,  # reader and apple-only / 5
        "click_to_open_rate": 2.0,
        "machine_open_share": 0.5,  # the prefetch and the EOP fetch of 4 opens
        "machine_click_share": round(1 / 3, 4),  # Proofpoint's fetch of 3 clicks
    }
    # Proofpoint's range is weaker evidence, and the stored click says so.
    (proofpoint,) = [c for c in all_items(ddb, settings.clicks_table) if c["user_id"] == "scanned"]
    assert proofpoint["evidence"]["rule"] == "scanner_range:proofpoint"
    assert proofpoint["evidence"]["range_certainty"] == "probable"


def test_instrument_record_writes_its_summary_as_the_recipients(store, ddb, settings, tmp_path, capsys):
    """`instrument --record`: the counts the summary prints are the email's recipients, consent
    included (one recipient tracked fully, one for clicks only, one not at all)."""
    from mailpixel.ops.local.stack import free_port

    people = tmp_path / "recipients.csv"
    people.write_text("user_id,tracking\nu1,all\nu2,clicks\nu3,none\n", encoding="utf-8")

    def instrument(out: str, endpoint: str) -> int:
        return main([
            "instrument", "--html", str(FIXTURES / "newsletter.html"), "--email-id", "rec-1",
            "--recipients", str(people), "--out-dir", str(tmp_path / out),
            "--base-url", "https://t.example.com", "--record",
            "--endpoint-url", endpoint, "--meta-table", settings.meta_table,
        ])  # fmt: skip

    assert instrument("out", settings.endpoint_url or "") == 0
    assert "recorded as the recipients of rec-1" in capsys.readouterr().err
    got = stats.email_stats(ddb, settings.meta_table, "rec-1")["recipients"]
    assert {name: got[name] for name in FIELDS} == {"sent": 3, "tracked_opens": 1, "tracked_clicks": 2}

    # Nothing listens on this port: the emails are still written, the exit status says the
    # record failed, and the message is the command that records the same counts later.
    assert instrument("again", f"http://127.0.0.1:{free_port()}") == 1
    err = capsys.readouterr().err
    assert "mailpixel recipients --email-id rec-1 --sent 3 --tracked-opens 1 --tracked-clicks 2" in err
    assert len(list((tmp_path / "again").glob("*.html"))) == 3


def test_instrument_record_refuses_email_scoped_mode(tmp_path, capsys):
    args = ["instrument", "--html", str(FIXTURES / "newsletter.html"), "--email-id", "rec-2"]
    assert main([*args, "--email-scoped", "{{id}}", "--record", "--base-url", "https://t.example.com"]) == 2
    assert "mailpixel recipients" in capsys.readouterr().err
