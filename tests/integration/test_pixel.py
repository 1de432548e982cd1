"""The pixel through the Flask test client: always a GIF, one open stored per good request."""

from __future__ import annotations

import logging

import pytest

from mailpixel.model.events import MAX_ID_LENGTH
from mailpixel.pixel.validation import MAX_USER_AGENT_LENGTH
from tests.conftest import all_items
from tests.pixel_asserts import assert_gif_bytes, assert_pixel_headers

TEN_KB = "x" * 10_240


def get_pixel(client, query: bytes | str, **kwargs):
    raw = query.decode("latin-1") if isinstance(query, bytes) else query
    # WSGI carries the query string as latin-1 text; this passes bytes through unchanged.
    response = client.get("/pixel", environ_overrides={"QUERY_STRING": raw}, **kwargs)
    assert response.status_code == 200
    assert_pixel_headers(response.headers)
    assert_gif_bytes(response.data)
    return response


def test_pixel_stores_an_open_with_the_public_schema(client, ddb, table):
    get_pixel(client, "user_id=123&email_id=abc", headers={"User-Agent": "Thunderbird/128"})
    (item,) = all_items(ddb, table)
    assert item["email_id"] == "abc"
    assert item["user_id"] == "123"
    assert item["user_agent"] == "Thunderbird/128"
    assert item["ip"] == "127.0.0.1"
    assert item["request_id"].startswith("local-")
    assert item["opened_at"].endswith("Z") and len(item["opened_at"]) == len("2026-11-24T13:49:00.123Z")
    assert item["open_key"] == f"{item['opened_at']}#{item['request_id']}"
    assert item["signed"] is False


def test_expires_at_follows_retention(client, ddb, table, settings):
    get_pixel(client, "email_id=e")
    (item,) = all_items(ddb, table)
    from datetime import datetime

    opened = datetime.fromisoformat(item["opened_at"].replace("Z", "+00:00")).timestamp()
    assert item["expires_at"] == int(opened) + settings.retention_days * 86_400


@pytest.mark.parametrize("query", ["", "user_id=u1", "email_id=", "email_id=%20%20", "email_id=%00%01"])
def test_missing_email_id_stores_nothing_and_logs_why(client, ddb, table, caplog, query):
    with caplog.at_level(logging.INFO, logger="mailpixel"):
        get_pixel(client, query)
    assert all_items(ddb, table) == []
    assert any(getattr(r, "reasons", None) and "missing:email_id" in r.reasons for r in caplog.records)
    counters = client.get("/health").get_json()["counters"]
    assert counters["pixel_not_recorded"] == 1


def test_overlong_values_are_cut_not_stored_whole(client, ddb, table):
    get_pixel(client, f"email_id={TEN_KB}&user_id={TEN_KB}", headers={"User-Agent": TEN_KB})
    (item,) = all_items(ddb, table)
    assert item["email_id"] == "x" * MAX_ID_LENGTH
    assert item["user_id"] == "x" * MAX_ID_LENGTH
    assert item["user_agent"] == "x" * MAX_USER_AGENT_LENGTH
    assert client.get("/health").get_json()["counters"]["pixel_param_issue"] == 3  # both ids and the UA


def test_invalid_percent_encoding_and_non_utf8_bytes(client, ddb, table):
    get_pixel(client, b"email_id=caf%E9%ZZ&user_id=%ff%fe\xff")
    (item,) = all_items(ddb, table)
    assert item["email_id"].startswith("caf")
    assert "%ZZ" in item["email_id"]
    assert "\ufffd" in item["email_id"] and "\ufffd" in item["user_id"]


def test_repeated_parameters_keep_the_first(client, ddb, table):
    get_pixel(client, "email_id=first&email_id=second&user_id=u&user_id=v")
    (item,) = all_items(ddb, table)
    assert (item["email_id"], item["user_id"]) == ("first", "u")


def test_spoofed_forwarded_for_does_not_change_the_ip(client, ddb, table):
    get_pixel(client, "email_id=e", headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "7.7.7.7"})
    (item,) = all_items(ddb, table)
    assert item["ip"] == "127.0.0.1"


def test_control_characters_are_removed(client, ddb, table):
    get_pixel(client, "email_id=a%0Ab%09c%1B&user_id=%E2%80%8Bu")
    (item,) = all_items(ddb, table)
    assert item["email_id"] == "abc"
    assert item["user_id"] == "u"


def test_head_answers_the_pixel_without_an_open(client, ddb, table):
    response = client.head("/pixel?email_id=e")
    assert response.status_code == 200
    assert_pixel_headers(response.headers)
    assert all_items(ddb, table) == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS_NOT_ALLOWED"])
def test_odd_methods_get_a_plain_405(client, method):
    if method == "OPTIONS_NOT_ALLOWED":
        response = client.open("/pixel?email_id=e", method="PROPFIND")
    else:
        response = client.open("/pixel?email_id=e", method=method)
    assert response.status_code == 405
    assert response.mimetype == "text/plain"


@pytest.mark.parametrize("path", ["/", "/pixel.gif", "/pixel/", "/../etc/passwd", "/%ff"])
def test_unknown_paths_get_a_plain_404(client, path):
    response = client.get(path)
    assert response.status_code in (404, 308)
    assert response.mimetype == "text/plain" or response.status_code == 308


def test_health_answers_json(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"


def test_database_gone_still_serves_the_pixel_and_keeps_the_open(settings, table, tmp_path):
    """A store that cannot be reached: the reader still gets the GIF; the open goes to the fallback."""
    from mailpixel.aws import dynamodb_client
    from mailpixel.ddb.store import EventStore
    from mailpixel.ops.local.stack import free_port
    from mailpixel.ops.replay import replay_file
    from mailpixel.pixel.app import create_app

    dead = settings.with_overrides(endpoint_url=f"http://127.0.0.1:{free_port()}", write_budget_seconds=0.3)
    app = create_app(dead)
    get_pixel(app.test_client(), "email_id=kept&user_id=u")
    pending = tmp_path / "data" / "fallback" / "pending.jsonl"
    assert pending.exists()
    live = EventStore(dynamodb_client(settings), settings.table)
    assert replay_file(live, pending)["stored"] == 1
    assert [i["email_id"] for i in live.iter_opens(email_id="kept")] == ["kept"]


def test_thousands_of_fields_are_ignored_past_the_limit(client, ddb, table):
    junk = "&".join(f"k{i}=v" for i in range(5000))
    get_pixel(client, f"email_id=e&{junk}&user_id=late")
    (item,) = all_items(ddb, table)
    assert item["email_id"] == "e"
    assert "user_id" not in item


@pytest.mark.parametrize(
    ("t", "kept"),
    [("1767225600", 1767225600), ("9" * 60, None), ("%C2%B2", None), ("12a", None), ("-5", None)],
    ids=["epoch", "sixty-digits", "superscript-two", "not-a-number", "negative"],
)
def test_the_urls_t_is_kept_only_when_it_is_an_epoch_time(client, ddb, table, t, kept):
    """An unsigned URL may carry any `t`: a number longer than DynamoDB stores made every write
    of the open fail (it went to the fallback forever), and "²" passed `isdigit` and failed
    `int` (no open at all). The open is stored either way, with `issued_t` only when it is one."""
    get_pixel(client, f"email_id=e1&user_id=u1&t={t}")
    (item,) = all_items(ddb, table)
    assert item.get("issued_t") == kept
