"""`mailpixel clicks`: the clicks table read back by email and by user, and the email's summary
once the clicks are enriched, with its click-to-open rate from the kept aggregates."""

from __future__ import annotations

import json

from mailpixel.enrich.clicks import build_click_handler
from mailpixel.ops.cli import main
from mailpixel.ops.local.stream_poller import StreamPoller
from mailpixel.pixel.app import create_app
from mailpixel.signing import make_click_url
from tests.conftest import target_args
from tests.integration.test_aggregates import enrich_one, one_event
from tests.signed_urls import NEW

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"


def test_clicks_by_email_by_user_and_summary(settings, ddb, store, capsys):
    app = create_app(settings.with_overrides(signing_secrets=(NEW,))).test_client()
    for user, link, method in [
        ("u1", "https://a.example/", "GET"),
        ("u1", "https://b.example/", "GET"),
        ("u2", "https://a.example/", "GET"),
        ("u3", "https://a.example/", "HEAD"),
    ]:
        url = make_click_url("https://px.example.com", "e1", user, link, NEW)
        assert (
            app.open(
                url.removeprefix("https://px.example.com"), method=method, headers={"User-Agent": CHROME}
            ).status_code
            == 302
        )
    target = [*target_args(settings), "--clicks-table", settings.clicks_table]

    assert main(["clicks", "--email-id", "e1", "--summary", "--format", "json", *target]) == 0
    pending = json.loads(capsys.readouterr().out)
    assert pending["pending"] == 4 and pending["click_to_open_rate"] is None  # nothing counted yet

    handler = build_click_handler(settings, ddb=ddb, provider=None)
    StreamPoller(settings, handler, ddb=ddb, table=settings.clicks_table).wait_idle()
    # Four people opened e1 (two of them clicked), and Apple prefetched it for a fifth.
    for n, user in enumerate(["u1", "u2", "u4", "u5"]):
        enrich_one(
            store,
            ddb,
            settings,
            one_event(f"o{n}", "2026-11-24T10:00:00.000Z", user, "e1"),
            machine_open=False,
        )
    enrich_one(
        store, ddb, settings, one_event("mpp", "2026-11-24T09:00:00.000Z", "u6", "e1"), machine_open=True
    )
    assert main(["clicks", "--email-id", "e1", "--summary", "--format", "json", *target]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "clicks": 4,
        "human_clicks": 3,
        "machine_clicks": 1,
        "machine_by_reason": {"security_scanner": 1},
        "pending": 0,
        "unique_human_clickers": 2,
        "human_clicks_per_link": {"https://a.example/": 2, "https://b.example/": 1},
        "click_to_open_rate": 0.5,  # 2 human clickers / 4 human openers
    }
    assert main(["clicks", "--email-id", "e1", "--summary", *target]) == 0
    summary_lines = dict(line.strip().split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert summary_lines["click_to_open_rate"] == "0.5 (50.00%)"
    assert summary_lines["unique_human_clickers"] == "2"
    # A user's summary has no rate: it belongs to an email.
    assert main(["clicks", "--user-id", "u1", "--summary", "--format", "json", *target]) == 0
    assert "click_to_open_rate" not in json.loads(capsys.readouterr().out)
    assert main(["clicks", "--user-id", "u1", "--format", "json", *target]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["url"] for r in rows] == ["https://a.example/", "https://b.example/"]
    assert main(["clicks", "--email-id", "e1", *target]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()[1:]
    assert [line.split()[4] for line in lines].count("human") == 3
    assert "machine:security_scanner" in out and "head_request" in out


def test_forget_erases_clicks_by_user_and_by_email(settings, ddb, table, capsys):
    from tests.conftest import all_items

    app = create_app(settings.with_overrides(signing_secrets=(NEW,))).test_client()
    for email, user in [("e1", "u1"), ("e2", "u1"), ("e1", "u2"), ("e3", "u3")]:
        url = make_click_url("https://px.example.com", email, user, "https://a.example/", NEW)
        assert app.get(url.removeprefix("https://px.example.com")).status_code == 302
    ddb.put_item(
        TableName=settings.meta_table, Item={"pk": {"S": "email#e2"}, "sk": {"S": "webhook_open#u1"}}
    )
    env_target = target_args(settings)

    import os

    os.environ["MAILPIXEL_CLICKS_TABLE"] = settings.clicks_table
    try:
        assert main(["forget", "--user-id", "u1", "--format", "json", *env_target]) == 0
        assert json.loads(capsys.readouterr().out)["clicks"] == 2
        assert sorted(i["user_id"] for i in all_items(ddb, settings.clicks_table)) == ["u2", "u3"]
        assert all_items(ddb, settings.meta_table) == []  # the webhook marker went with the user
        assert main(["forget", "--email-id", "e1", "--format", "json", *env_target]) == 0
        assert json.loads(capsys.readouterr().out)["clicks"] == 1
        assert [i["user_id"] for i in all_items(ddb, settings.clicks_table)] == ["u3"]
    finally:
        del os.environ["MAILPIXEL_CLICKS_TABLE"]
