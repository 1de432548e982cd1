"""`/click` through the real app and the real Lambda handler, against DynamoDB Local: the
redirect, the stored click, idempotence, the no-open-redirect rule and the fallback."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from mailpixel.aws import dynamodb_client
from mailpixel.config import Settings
from mailpixel.ddb.store import EventStore
from mailpixel.ops.cli import main
from mailpixel.ops.local.stack import free_port
from mailpixel.pixel.app import create_app
from mailpixel.signing import ClickSigner, canonical, make_click_url, sign
from tests.conftest import all_items, http_api_event
from tests.signed_urls import NEW, OLD
from tests.unit.test_click_signing import HOSTILE, REFUSED_AS_SENT

BASE = "https://px.example.com"
DEST = "https://shop.example.com/sale/?utm_source=mail&q=a+b%20c&empty=&x=%2F#section/2?k=v"


@pytest.fixture
def signed(settings: Settings) -> Settings:
    return settings.with_overrides(signing_secrets=(NEW, OLD))


def path_of(url: str) -> str:
    return url[len(BASE) :]


def click(app_settings: Settings, url: str, method: str = "GET", **headers: str) -> Any:
    app = create_app(app_settings)
    return app.test_client().open(path_of(url), method=method, headers=headers)


def clicks(ddb: Any, settings: Settings) -> list[dict[str, Any]]:
    return all_items(ddb, settings.clicks_table)


def assert_refused(response: Any) -> None:
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.mimetype == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"


def test_signed_click_is_stored_apart_from_opens_and_redirected_exactly(signed, ddb, table):
    url = make_click_url(BASE, "e1", "u1", DEST, NEW, t=1_767_225_600)
    response = click(signed, url, **{"User-Agent": "Mozilla/5.0 (Macintosh) Safari/605.1.15"})
    assert response.status_code == 302
    assert response.headers["Location"] == DEST
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    (item,) = clicks(ddb, signed)
    assert item["email_id"] == "e1" and item["user_id"] == "u1" and item["url"] == DEST
    assert item["method"] == "GET" and item["signed"] is True and item["issued_t"] == 1_767_225_600
    assert item["click_key"] == f"{item['clicked_at']}#{item['request_id']}"
    assert item["user_agent"].startswith("Mozilla/5.0 (Macintosh)")
    assert all_items(ddb, table) == []  # a query of the events table returns opens only


def test_a_click_signed_with_the_old_secret_still_works(signed, ddb, table):
    response = click(signed, make_click_url(BASE, "e1", "u1", DEST, OLD))
    assert response.headers["Location"] == DEST
    assert len(clicks(ddb, signed)) == 1


def test_head_is_recorded_with_its_method_and_redirected(signed, ddb, table):
    response = click(signed, make_click_url(BASE, "e1", "u1", DEST, NEW), method="HEAD")
    assert response.status_code == 302 and response.headers["Location"] == DEST
    (item,) = clicks(ddb, signed)
    assert item["method"] == "HEAD"


def test_non_ascii_destination_is_followed_percent_encoded_only_where_it_must(signed, ddb, table):
    destination = "https://例え.jp/パス?q=é&x=%41#frag"
    response = click(signed, make_click_url(BASE, "e1", "u1", destination, NEW))
    # An HTTP header is ASCII: the host in IDNA, other non-ASCII as UTF-8 escapes, nothing else touched.
    assert response.headers["Location"] == "https://xn--r8jz45g.jp/%E3%83%91%E3%82%B9?q=%C3%A9&x=%41#frag"
    (item,) = clicks(ddb, signed)
    assert item["url"] == destination


@pytest.mark.parametrize("hostile", HOSTILE)
def test_no_open_redirect_for_unsigned_tampered_or_signed_hostile_destinations(signed, ddb, table, hostile):
    good = make_click_url(BASE, "e1", "u1", "https://good.example/", NEW)
    unsigned = f"{BASE}/click?email_id=e1&user_id=u1&url={quote(hostile, safe='')}"
    tampered = good.replace(quote("https://good.example/", safe=""), quote(hostile, safe=""))
    assert tampered != good
    signed_by_mistake = make_click_url(BASE, "e1", "u1", hostile, NEW)
    raw = f"{BASE}/click?email_id=e1&user_id=u1&url={hostile}&sig=" + good.rsplit("sig=", 1)[1]
    for url in (unsigned, tampered, signed_by_mistake, raw):
        assert_refused(click(signed, url))
    assert clicks(ddb, signed) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("email_id", "e2"), ("user_id", "someone-else"), ("t", "1767225601"), ("sig", "AAAAAAAAAAAAAAAAAAAAAA")],
)
def test_tampering_with_any_parameter_is_refused(signed, ddb, table, name, value):
    params = {"email_id": "e1", "user_id": "u1", "t": "1767225600", "url": DEST}
    url = f"{BASE}/click?{canonical(params)}&sig={sign(params, NEW)}"
    assert click(signed, url).status_code == 302
    changed = {**params, name: value}
    changed_sig = value if name == "sig" else sign(params, NEW)
    assert_refused(click(signed, f"{BASE}/click?{canonical({**changed, 'sig': ''})[:-4]}&sig={changed_sig}"))
    if name != "sig":  # a second `sig` after a valid one changes nothing signed
        assert_refused(click(signed, f"{url}&{name}={quote(value)}"))  # repeated parameter
    assert len(clicks(ddb, signed)) == 1


def test_a_pixel_url_is_no_click_url(signed, ddb, table):
    from mailpixel.signing import make_url

    pixel = make_url(BASE, "e1", "u1", NEW)
    assert_refused(click(signed, pixel.replace("/pixel?", "/click?") + "&url=https%3A%2F%2Fevil.example%2F"))
    assert_refused(click(signed, pixel.replace("/pixel?", "/click?")))


def test_email_scoped_signature_leaves_the_user_to_the_merge_tag(signed, ddb, table):
    signer = ClickSigner(BASE, "e1", NEW, None, scoped=True)
    template = signer.url(DEST, "{{user_id}}")
    assert template.endswith("&user_id={{user_id}}")
    for user in ("alice", "bob%40example.com"):
        response = click(signed, template.replace("{{user_id}}", user))
        assert response.headers["Location"] == DEST
    assert sorted(i["user_id"] for i in clicks(ddb, signed)) == ["alice", "bob@example.com"]
    assert {i["signature_scope"] for i in clicks(ddb, signed)} == {"email"}
    # The destination stays covered: swapping it breaks the signature.
    other = template.replace(quote(DEST, safe=""), quote("https://evil.example/", safe=""))
    assert_refused(click(signed, other.replace("{{user_id}}", "alice")))
    # A user-scoped signature cannot be turned into an email-scoped one.
    user_scoped = make_click_url(BASE, "e1", "alice", DEST, NEW)
    assert_refused(click(signed, user_scoped.replace("&user_id=alice", "&scope=email&user_id=mallory")))


def test_expired_signature_still_redirects_but_records_nothing(signed, ddb, table):
    strict = signed.with_overrides(signature_max_age_days=1)
    url = make_click_url(BASE, "e1", "u1", DEST, NEW, t=1_000_000_000)
    assert click(strict, url).headers["Location"] == DEST
    assert clicks(ddb, signed) == []


def test_without_secrets_unsigned_clicks_redirect_locally_only(settings, ddb, table):
    url = make_click_url(BASE, "e1", "u1", DEST, None)
    assert click(settings, url).headers["Location"] == DEST
    (item,) = clicks(ddb, settings)
    assert item["signed"] is False
    # In AWS (no local endpoint), a missing secret must not turn /click into an open redirect.
    in_aws = settings.with_overrides(endpoint_url=None)
    app = create_app(in_aws, store=EventStore(ddb, settings.table, settings.clicks_table))
    assert_refused(app.test_client().get(path_of(url)))
    assert_refused(app.test_client().get(path_of(make_click_url(BASE, "e1", "u1", "javascript:x", None))))


@pytest.fixture
def signing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", NEW)


@pytest.fixture
def signed_handler(signing_env: None, lambda_handler: Any) -> Any:
    """The real handler, cold-started with a signing secret."""
    return lambda_handler


def test_the_lambda_handler_answers_400_not_500_for_what_used_to_raise(signed_handler):
    """An empty label, a long label, a bad port: Python's IDNA codec or int() raised, a 500."""
    for name in ("empty_label", "label_over_63_octets", "port_99999", "port_abc", "fullwidth_backslash"):
        query = make_click_url(BASE, "e1", "u1", REFUSED_AS_SENT[name], NEW).split("?", 1)[1]
        response = signed_handler(http_api_event(query, path="/click"), None)
        assert response["statusCode"] == 400, name


def test_retried_lambda_invocation_stores_one_click(signed_handler, ddb, settings, table):
    lambda_handler = signed_handler
    query = make_click_url(BASE, "e1", "u1", DEST, NEW).split("?", 1)[1]
    event = http_api_event(query, path="/click", request_id="click-retry-1")
    for _ in range(2):
        response = lambda_handler(event, None)
        assert response["statusCode"] == 302
        assert {k.lower(): v for k, v in response["headers"].items()}["location"] == DEST
    (item,) = clicks(ddb, settings)
    assert item["request_id"] == "click-retry-1"
    assert item["ip"] == event["requestContext"]["http"]["sourceIp"]
    forged = http_api_event(query.replace("u1", "u2"), path="/click", request_id="click-forged")
    response = lambda_handler(forged, None)
    assert response["statusCode"] == 400
    assert "location" not in {k.lower() for k in response["headers"]}
    body = (
        base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"].encode()
    )
    assert b"not valid" in body


def test_failed_write_goes_to_the_fallback_and_replay_stores_it_once(
    settings, ddb, table, monkeypatch, capsys
):
    broken = settings.with_overrides(
        endpoint_url=f"http://127.0.0.1:{free_port()}", write_budget_seconds=0.3, signing_secrets=(NEW,)
    )
    response = click(broken, make_click_url(BASE, "e9", "u9", DEST, NEW))
    assert response.headers["Location"] == DEST  # the reader is not kept waiting on the store
    pending = Path(settings.data_dir) / "fallback" / "pending.jsonl"
    (line,) = [json.loads(x) for x in pending.read_text().splitlines()]
    assert line["kind"] == "click" and line["url"] == DEST
    monkeypatch.setenv("MAILPIXEL_CLICKS_TABLE", settings.clicks_table)
    target = ["--file", str(pending), "--endpoint-url", settings.endpoint_url or "", "--table", table]
    for expected in ((1, 0), (0, 0)):
        assert main(["replay", *target]) == 0
        result = json.loads(capsys.readouterr().out)
        assert (result["stored"], result["duplicate"]) == expected, result
    (item,) = clicks(ddb, settings)
    assert item["email_id"] == "e9" and item["request_id"] == line["request_id"]
    assert all_items(ddb, table) == []


def test_drain_writes_clicks_from_the_queue_into_the_clicks_table(settings, ddb, table):
    from mailpixel.drain.handler import drain_records
    from mailpixel.model.clicks import ClickEvent

    event = ClickEvent(
        email_id="e1",
        clicked_at="2026-11-25T10:00:00.000Z",
        request_id="r1",
        expires_at=2_000_000_000,
        url=DEST,
    )
    records = [{"messageId": "m1", "body": json.dumps(event.to_json())}] * 2
    store = EventStore(dynamodb_client(settings), table, settings.clicks_table)
    assert drain_records(records, store) == {"batchItemFailures": []}
    (item,) = clicks(ddb, settings)
    assert item["url"] == DEST and item["click_key"] == "2026-11-25T10:00:00.000Z#r1"
    assert all_items(ddb, table) == []
