"""The query API against DynamoDB Local: auth, pagination and bad input."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest

from mailpixel.api.app import create_api_app
from mailpixel.aws import dynamodb_client
from mailpixel.config import Settings
from mailpixel.ddb.codec import plain_item, to_attr
from mailpixel.ddb.store import EventStore
from mailpixel.model.events import OpenEvent, iso_millis
from mailpixel.model.keys import STATS_SK, all_pk, day_sk, email_pk, link_sk_of, meta_key
from mailpixel.ops.local.tables import ensure_tables
from tests.integration.test_aggregates import enrich_one, one_event, prefetch_then_people

KEYS = ("first-key-0123456789", "second-key-abcdefghij")
AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
START_MS = 1_795_500_000_000  # 2026-11-24T04:00:00Z


@pytest.fixture
def api(settings, table):
    return create_api_app(settings.with_overrides(api_keys=KEYS)).test_client()


def get(api, path: str, **params: str):
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
    return api.get(f"{path}?{query}" if query else path, headers=AUTH)


def opens(count: int, email_id: str = "e1", user_id: str = "u1", step_ms: int = 3_600_000) -> list[OpenEvent]:
    return [
        OpenEvent(
            email_id=email_id,
            opened_at=iso_millis(START_MS + n * step_ms),
            request_id=f"{email_id}-{n:03d}",
            expires_at=2_000_000_000,
            user_id=user_id,
            ip="203.0.113.0",
            pending_ip="203.0.113.77",
            user_agent="Mozilla/5.0",
        )
        for n in range(count)
    ]


@pytest.fixture(scope="module")
def shared(dynamodb_local, tmp_path_factory):
    """Read-only tests share one pair of tables (creating and seeding them is most of the time):
    57 opens of e1 hourly from 2026-11-24T04:00Z; 5 of e2, by the same user, in between."""
    settings = Settings(
        table="api-read-events",
        meta_table="api-read-meta",
        endpoint_url=dynamodb_local.endpoint_url,
        data_dir=str(tmp_path_factory.mktemp("api")),
        api_keys=KEYS,
    )
    client = dynamodb_client(settings)
    ensure_tables(client, settings.table, settings.meta_table)
    store = EventStore(client, settings.table)
    events = opens(57) + opens(5, email_id="e2", step_ms=7_200_000)
    for event in events:
        store.put_event(event)
    return create_api_app(settings).test_client(), events


@pytest.fixture
def seeded(shared):
    return shared[1]


@pytest.fixture
def reader(shared):
    return shared[0]


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {KEYS[0]}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {KEYS[0]}x"},
        {"Authorization": f"Bearer {KEYS[0][:-1]}"},
        {"X-Api-Key": KEYS[0]},
    ],
)
def test_requests_without_a_valid_key_get_401_json(reader, headers):
    response = reader.get("/api/emails/e1/stats", headers=headers)
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"] == "unauthorized" and body["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key", KEYS)
def test_every_configured_key_works(reader, key):
    response = reader.get("/api/emails/e1/stats", headers={"Authorization": f"bearer  {key} "})
    assert response.status_code == 200
    assert response.get_json()["opens"] == 0
    assert response.headers["Cache-Control"] == "no-store"


def test_auth_comes_before_validation(reader):
    response = reader.get("/api/emails/e1/opens?limit=zero&cursor=%%%")
    assert response.status_code == 401


def test_without_configured_keys_the_api_says_how_to_set_them(settings, table):
    client = create_api_app(settings).test_client()
    response = client.get("/api/emails", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 401
    assert "MAILPIXEL_API_KEYS" in response.get_json()["message"]
    assert client.get("/dashboard").status_code == 200  # the page itself holds no data


# --- pagination -----------------------------------------------------------------------------


def walk(api, path: str, **params: str) -> tuple[list[str], int]:
    ids: list[str] = []
    pages, cursor = 0, None
    while True:
        response = get(api, path, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["count"] == len(body["items"])
        ids += [item["request_id"] for item in body["items"]]
        pages += 1
        cursor = body["cursor"]
        if cursor is None:
            return ids, pages
        assert pages < 100


@pytest.mark.parametrize("limit", ["1", "10", "57", "1000"])
def test_paging_an_email_to_the_end_misses_and_repeats_nothing(reader, seeded, limit):
    expected = [e.request_id for e in seeded if e.email_id == "e1"]
    ids, pages = walk(reader, "/api/emails/e1/opens", limit=limit)
    assert ids == expected
    assert pages >= len(expected) // int(limit)
    newest_first, _ = walk(reader, "/api/emails/e1/opens", limit=limit, order="desc")
    assert newest_first == expected[::-1]


def test_paging_a_user_through_the_index_in_time_order(reader, seeded):
    expected = [e.request_id for e in sorted(seeded, key=lambda e: e.open_key)]
    ids, _ = walk(reader, "/api/users/u1/opens", limit="7")
    assert ids == expected


def test_since_and_until_bound_every_page(reader, seeded):
    since, until = "2026-11-24T10:00:00Z", "2026-11-25"
    expected = [
        e.request_id
        for e in seeded
        if e.email_id == "e1" and "2026-11-24T10:00:00.000Z" <= e.opened_at < "2026-11-26"
    ]
    ids, _ = walk(reader, "/api/emails/e1/opens", limit="4", since=since, until=until)
    assert ids == expected and expected


def test_the_full_ip_awaiting_enrichment_is_never_shown(reader, seeded):
    item = get(reader, "/api/emails/e1/opens", limit="1").get_json()["items"][0]
    assert "pending_ip" not in item and "open_key" not in item
    assert item["ip"] == "203.0.113.0" and item["opened_at"] == seeded[0].opened_at


# --- bad input ------------------------------------------------------------------------------


def cursor_of(key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        ("/api/emails/e1/opens", {"cursor": "not a cursor!"}, "cursor"),
        ("/api/emails/e1/opens", {"cursor": cursor_of([1, 2])}, "cursor"),
        ("/api/emails/e1/opens", {"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "cursor"),
        (
            "/api/emails/e1/opens",
            {"cursor": cursor_of({"email_id": {"S": "e2"}, "open_key": {"S": "x"}})},
            "cursor",
        ),
        ("/api/emails/e1/opens", {"cursor": cursor_of({"email_id": {"S": "e1"}})}, "cursor"),
        (
            "/api/emails/e1/opens",
            {"cursor": cursor_of({"email_id": {"S": "e1"}, "open_key": {"N": "1"}})},
            "cursor",
        ),
        (
            "/api/users/u1/opens",
            {"cursor": cursor_of({"email_id": {"S": "e1"}, "open_key": {"S": "2026-11-24"}})},
            "cursor",
        ),
        ("/api/emails/e1/opens", {"since": "yesterday"}, "since"),
        ("/api/emails/e1/opens", {"until": "2026-13-45"}, "until"),
        ("/api/emails/e1/opens", {"since": "2026-11-25", "until": "2026-11-24"}, "after"),
        ("/api/emails/e1/opens", {"limit": "0"}, "limit"),
        ("/api/emails/e1/opens", {"limit": "ten"}, "limit"),
        ("/api/emails/e1/opens", {"limit": "1000000"}, "limit"),
        ("/api/emails/e1/opens", {"order": "sideways"}, "order"),
        ("/api/users/u1/opens", {"since": "\x00"}, "since"),
        ("/api/emails/e1/daily", {"since": "24/11/2026"}, "since"),
        ("/api/emails/e1/daily", {"since": "2026-11-25", "until": "2026-11-01"}, "after"),
        ("/api/daily", {"since": "2020-01-01", "until": "2026-01-01"}, "400 days"),
        ("/api/emails", {"days": "0"}, "days"),
        ("/api/emails", {"limit": "-3"}, "limit"),
        ("/api/emails/" + "x" * 300 + "/stats", {}, "256"),
        ("/api/users/" + "y" * 300 + "/opens", {}, "256"),
        # Issue 11: dates at the edges of the calendar overflowed into a 500.
        ("/api/emails/e1/opens", {"since": "0001-01-01T00:00:00+14:00"}, "out of range"),
        ("/api/users/u1/opens", {"until": "9999-12-31T23:59:59-14:00"}, "out of range"),
        ("/api/daily", {"until": "0001-01-01"}, "since"),
        ("/api/emails/e1/daily", {"since": "0001-01-01T00:00:00+14:00"}, "out of range"),
        # Issue 11: an ID within 256 characters but past 512 bytes can be no key.
        ("/api/emails/" + "\U0001f600" * 200 + "/stats", {}, "512 bytes"),
    ],
)
def test_bad_input_is_a_400_with_a_clear_message(reader, seeded, path, params, words):
    response = get(reader, path, **params)
    assert response.status_code == 400, response.data
    body = response.get_json()
    assert body["error"] == "bad_request"
    assert words in body["message"], body["message"]


def test_a_cursor_from_another_email_or_range_is_refused_not_followed(reader, seeded):
    cursor = get(reader, "/api/emails/e1/opens", limit="3").get_json()["cursor"]
    other = get(reader, "/api/emails/e2/opens", cursor=cursor)
    assert other.status_code == 400 and "cursor" in other.get_json()["message"]
    # The same email but a range the cursor's position lies outside of.
    late = get(reader, "/api/emails/e1/opens", cursor=cursor, since="2026-11-26")
    assert late.status_code in (200, 400)
    if late.status_code == 200:
        assert all(item["opened_at"] >= "2026-11-26" for item in late.get_json()["items"])


@pytest.mark.parametrize(
    "raw",
    [
        "/api/emails/e1/opens?cursor=%FF%FE",
        "/api/emails/e1/opens?since=%F0%9F%92%A9&until=%",
        "/api/emails/e1/opens?limit=1e3",
        "/api/emails/e1/opens?limit=" + "9" * 5000,
        "/api/emails/%F0%9F%92%A9/stats",
        "/api/emails/%00/daily?since=&until=",
        "/api/users/u1/opens?cursor=" + "A" * 10_000,
        "/api/emails?days=%20",
        "/api/emails/e1/opens?order=&limit=&cursor=&since=&until=",
    ],
)
def test_odd_requests_never_500(reader, seeded, raw):
    response = reader.get(raw, headers=AUTH)
    assert response.status_code in (200, 400), (raw, response.status_code, response.data[:200])
    assert response.is_json


def test_unknown_api_paths_and_methods_are_not_errors_of_ours(reader):
    assert reader.get("/api/nothing-here", headers=AUTH).status_code == 404
    assert reader.post("/api/emails/e1/stats", headers=AUTH).status_code == 405


# --- stats endpoints ------------------------------------------------------------------------


def test_stats_daily_and_recent_reflect_enriched_opens(api, store, ddb, settings):
    from datetime import UTC, datetime

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    enrich_one(
        store,
        ddb,
        settings,
        one_event("a", f"{today}T00:00:01.000Z"),
        machine_open=False,
        client={"name": "Apple Mail"},
        geo={"country": "FR"},
    )
    enrich_one(
        store,
        ddb,
        settings,
        one_event("b", f"{today}T00:00:02.000Z", user_id="u2"),
        machine_open=True,
        machine_reason="apple_mpp",
    )
    stats = get(api, "/api/emails/e1/stats").get_json()
    assert (stats["opens"], stats["human_opens"], stats["machine_opens"]) == (2, 1, 1)
    assert stats["clients"] == {"Apple Mail": 1} and stats["countries"] == {"FR": 1}
    assert (stats["unique_openers"], stats["unique_human_openers"]) == (2, 1)

    daily = get(api, "/api/emails/e1/daily", since=today, until=today).get_json()
    assert daily["days"] == [
        {**daily["days"][0], "date": today, "opens": 2, "human_opens": 1, "machine_opens": 1}
    ]
    assert daily["totals"]["opens"] == 2
    everything = get(api, "/api/daily").get_json()
    assert len(everything["days"]) == 30 and everything["days"][-1]["date"] == today
    assert everything["totals"]["opens"] == 2

    recent = get(api, "/api/emails").get_json()["emails"]
    assert [(r["email_id"], r["opens"]) for r in recent] == [("e1", 2)]
    user = get(api, "/api/users/u2/stats").get_json()
    assert (user["opens"], user["machine_opens"], user["first_open_at"]) == (1, 1, f"{today}T00:00:02.000Z")


# --- click aggregates -----------------------------------------------------------------------


def add_to_meta_item(ddb, table: str, pk: str, sk: str, counters: dict[str, int], **fields: Any) -> None:
    """Add `counters` to a meta item (made if missing) and set `fields`: one GetItem, one PutItem."""
    key = meta_key(pk, sk)
    found = plain_item(ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {}))
    item = {**found, **fields, "pk": pk, "sk": sk}
    for name, count in counters.items():
        item[name] = int(found.get(name, 0)) + count
    ddb.put_item(TableName=table, Item={name: to_attr(value) for name, value in item.items()})


def seed_click_aggregates(
    ddb,
    meta_table: str,
    email_id: str,
    links: dict[str, tuple[int, int]],
    *,
    clickers: int,
    human_clickers: int,
    day: str | None = None,
) -> dict[str, int]:
    """An email's click aggregates as enrichment keeps them, written straight into the meta table
    (what is tested here is the read side). `links` maps each destination to its (human, machine)
    clicks. The counters are added to the items the opens left: the email's stats item and, with
    `day`, that day's item of the email and of all emails (shard 0). Returns the counters."""
    human = sum(h for h, _ in links.values())
    machine = sum(m for _, m in links.values())
    counters = {"clicks": human + machine, "human_clicks": human, "machine_clicks": machine}
    add_to_meta_item(
        ddb,
        meta_table,
        email_pk(email_id),
        STATS_SK,
        counters,
        email_id=email_id,
        unique_clickers=clickers,
        unique_human_clickers=human_clickers,
    )
    for url, (h, m) in links.items():
        link = {
            "pk": email_pk(email_id),
            "sk": link_sk_of(url),
            "url": url,
            "email_id": email_id,
            "clicks": h + m,
            "human_clicks": h,
            "machine_clicks": m,
            "expires_at": 2_000_000_000,
        }
        ddb.put_item(TableName=meta_table, Item={name: to_attr(value) for name, value in link.items()})
    if day is not None:
        add_to_meta_item(
            ddb, meta_table, email_pk(email_id), day_sk(day), counters, email_id=email_id, date=day
        )
        add_to_meta_item(ddb, meta_table, all_pk(0), day_sk(day), counters, date=day)
    return counters


def test_stats_show_clicks_unique_clickers_the_rate_and_links(api, store, ddb, settings):
    from datetime import UTC, datetime

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    # Apple's prefetch first (an opener, not a human one), then three people.
    prefetch_then_people(store, ddb, settings, today, 3)
    links = {
        "https://shop.example/b": (1, 0),
        "https://shop.example/a?x=<b>1</b>&y=2": (3, 2),
        "https://shop.example/c": (0, 4),
    }
    counters = seed_click_aggregates(
        ddb, settings.meta_table, "e1", links, clickers=4, human_clickers=2, day=today
    )
    assert counters == {"clicks": 10, "human_clicks": 4, "machine_clicks": 6}

    stats = get(api, "/api/emails/e1/stats").get_json()
    assert {name: stats[name] for name in counters} == counters
    assert (stats["unique_human_openers"], stats["unique_clickers"], stats["unique_human_clickers"]) == (
        3,
        4,
        2,
    )
    assert stats["click_to_open_rate"] == round(2 / 3, 4) == 0.6667
    assert stats["first_open_at"] == f"{today}T09:00:00.000Z"
    assert stats["first_human_open_at"] == f"{today}T10:00:00.000Z"
    # Most human clicks first; the URL comes back exactly as stored.
    assert stats["links"] == [
        {"url": "https://shop.example/a?x=<b>1</b>&y=2", "clicks": 5, "human_clicks": 3, "machine_clicks": 2},
        {"url": "https://shop.example/b", "clicks": 1, "human_clicks": 1, "machine_clicks": 0},
        {"url": "https://shop.example/c", "clicks": 4, "human_clicks": 0, "machine_clicks": 4},
    ]

    (row,) = get(api, "/api/emails").get_json()["emails"]
    assert row["click_to_open_rate"] == 0.6667 and row["clicks"] == 10 and "links" not in row
    daily = get(api, "/api/emails/e1/daily", since=today, until=today).get_json()
    assert (
        {name: daily["days"][0][name] for name in counters}
        == counters
        == {name: daily["totals"][name] for name in counters}
    )
    everything = get(api, "/api/daily").get_json()
    assert {name: everything["totals"][name] for name in counters} == counters


def test_an_email_with_no_human_opener_has_no_rate_and_no_links(api, store, ddb, settings):
    enrich_one(store, ddb, settings, one_event("m", "2026-11-24T10:00:00.000Z"), machine_open=True)
    stats = get(api, "/api/emails/e1/stats").get_json()
    assert stats["click_to_open_rate"] is None and stats["first_human_open_at"] is None
    assert (stats["clicks"], stats["unique_human_clickers"], stats["links"]) == (0, 0, [])
    seed_click_aggregates(
        ddb, settings.meta_table, "e1", {"https://a.example/": (2, 0)}, clickers=1, human_clickers=1
    )
    stats = get(api, "/api/emails/e1/stats").get_json()
    # People clicked in a client that showed no images: clicks, but still no rate.
    assert stats["human_clicks"] == 2 and stats["click_to_open_rate"] is None
    nothing = get(api, "/api/emails/never-sent/stats").get_json()
    assert nothing["links"] == [] and nothing["click_to_open_rate"] is None and nothing["clicks"] == 0


# --- the OpenAPI file -----------------------------------------------------------------------
