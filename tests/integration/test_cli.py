"""The `mailpixel opens` command against DynamoDB Local."""

from __future__ import annotations

import csv
import io
import json

import pytest

from mailpixel.model.events import OpenEvent
from mailpixel.ops.cli import main
from tests.conftest import http_api_event

PUBLIC_FIELDS = {"email_id", "user_id", "opened_at", "ip", "user_agent", "request_id", "expires_at"}


@pytest.fixture
def seeded(lambda_handler, table):
    """Three opens: two of e1 (u1 on two days), one of e2 (u1)."""
    for request_id, email, epoch_ms in (
        ("r1", "e1", 1795528140000),  # 2026-11-24
        ("r2", "e1", 1795614540000),  # 2026-11-25
        ("r3", "e2", 1795528200000),  # 2026-11-24
    ):
        event = http_api_event(f"user_id=u1&email_id={email}", request_id=request_id)
        event["requestContext"]["timeEpoch"] = epoch_ms
        lambda_handler(event, None)


def run(capsys, settings, *args: str) -> str:
    code = main([*args, "--endpoint-url", settings.endpoint_url, "--table", settings.table])
    out: str = capsys.readouterr().out
    assert code == 0
    return out


def test_opens_json_by_email(seeded, capsys, settings):
    rows = json.loads(run(capsys, settings, "opens", "--email-id", "e1", "--format", "json"))
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    assert set(rows[0]) >= PUBLIC_FIELDS
    assert rows[0]["ip"] == "203.0.113.9"


def test_opens_by_user_through_the_index(seeded, capsys, settings):
    rows = json.loads(run(capsys, settings, "opens", "--user-id", "u1", "--format", "json"))
    assert [r["request_id"] for r in rows] == ["r1", "r3", "r2"]


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2026-11-24", "2026-11-24", ["r1"]),
        ("2026-11-25", None, ["r2"]),
        (None, "2026-11-24T23:59:59Z", ["r1"]),
        ("2026-11-24T13:49:00.001Z", "2026-11-25T20:00:00+00:00", ["r2"]),
        ("2026-11-26", None, []),
    ],
)
def test_since_and_until(seeded, capsys, settings, since, until, expected):
    args = ["opens", "--email-id", "e1", "--format", "json"]
    args += ["--since", since] if since else []
    args += ["--until", until] if until else []
    assert [r["request_id"] for r in json.loads(run(capsys, settings, *args))] == expected


def test_csv_and_table_formats(seeded, capsys, settings):
    rows = list(
        csv.DictReader(io.StringIO(run(capsys, settings, "opens", "--email-id", "e1", "--format", "csv")))
    )
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    table = run(capsys, settings, "opens", "--email-id", "e1")
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["opened_at", "email_id"]
    assert len(lines) == 3 and "2026-11-24T13:49:00.000Z" in lines[1]


def test_empty_json_is_an_empty_array(table, capsys, settings):
    assert json.loads(run(capsys, settings, "opens", "--email-id", "nobody", "--format", "json")) == []


def test_paginates_past_one_page(store, capsys, settings):
    big = "u" * 200
    for n in range(40):
        store.put_event(
            OpenEvent(
                email_id="many",
                opened_at=f"2026-11-24T00:00:{n:02d}.000Z",
                request_id=f"r{n:02d}",
                expires_at=1,
                user_agent=big * 20,
            )
        )
    # Force small pages so the command must follow cursors.
    from mailpixel.ddb.store import EventStore

    rows = list(EventStore(store.client, store.table).iter_opens(email_id="many", limit=7))
    assert [r["request_id"] for r in rows] == [f"r{n:02d}" for n in range(40)]
    out = json.loads(run(capsys, settings, "opens", "--email-id", "many", "--format", "json"))
    assert len(out) == 40


def test_bad_date_is_a_clear_error(table, capsys, settings):
    code = main(
        [
            "opens",
            "--email-id",
            "e1",
            "--since",
            "yesterday",
            "--endpoint-url",
            settings.endpoint_url,
            "--table",
            settings.table,
        ]
    )
    assert code == 2
    assert "not an ISO-8601 date" in capsys.readouterr().err


def test_unreachable_store_is_a_clear_error(capsys):
    from mailpixel.ops.local.stack import free_port

    code = main(["opens", "--email-id", "e1", "--endpoint-url", f"http://127.0.0.1:{free_port()}"])
    assert code == 1
    assert "cannot reach DynamoDB" in capsys.readouterr().err


# --- mailpixel stats ------------------------------------------------------------------------


def test_stats_shows_clicks_the_rate_first_human_open_and_links(store, ddb, settings, capsys):
    from tests.conftest import target_args
    from tests.integration.test_aggregates import prefetch_then_people
    from tests.integration.test_api import seed_click_aggregates

    prefetch_then_people(store, ddb, settings, "2026-11-24", 4)
    hostile = "https://evil.example/\x1b[2J\x07"  # a terminal escape in a signed URL
    links = {"https://shop.example/a": (1, 2), "https://shop.example/b": (3, 0), hostile: (0, 1)}
    seed_click_aggregates(ddb, settings.meta_table, "e1", links, clickers=4, human_clickers=3)

    assert main(["stats", "--email-id", "e1", "--format", "json", *target_args(settings)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert main(["stats", "--email-id", "e1", *target_args(settings)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    lines = [line.split(None, 1) for line in out.splitlines()]
    table = {name: value for name, value in lines if name != "link"}
    assert table["clicks"] == "7" == str(figures["clicks"])
    assert table["human_clicks"] == "4" == str(figures["human_clicks"])
    assert table["unique_human_clickers"] == "3" == str(figures["unique_human_clickers"])
    assert figures["click_to_open_rate"] == 0.75
    assert table["click_to_open_rate"] == "0.75 (75.00%)  = unique_human_clickers / unique_human_openers"
    assert table["first_human_open_at"] == "2026-11-24T10:00:00.000Z" == figures["first_human_open_at"]
    assert table["first_open_at"] == "2026-11-24T09:00:00.000Z"
    # One line per destination, most human clicks first, as the API orders them.
    shown = [value.split() for name, value in lines if name == "link"]
    assert [(row[0], row[3], row[5]) for row in shown] == [
        ("3", "3", "https://shop.example/b"),
        ("1", "3", "https://shop.example/a"),
        ("0", "1", "https://evil.example/\\x1b[2J\\x07"),
    ]
    assert [link["url"] for link in figures["links"]] == [
        "https://shop.example/b",
        "https://shop.example/a",
        hostile,
    ]


def test_stats_of_an_email_with_nothing_counted(table, capsys, settings):
    from tests.conftest import target_args

    assert main(["stats", "--email-id", "nothing", *target_args(settings)]) == 0
    table_out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert table_out["opens"] == "0" and table_out["clicks"] == "0"
    assert table_out["click_to_open_rate"] == "-  = unique_human_clickers / unique_human_openers"
    assert table_out["first_human_open_at"] == "-"
    assert table_out["links"] == "-"
