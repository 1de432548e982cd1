"""Issue 18, items 3, 4 and 6 through the real app (and the real Lambda handler) against DynamoDB
Local: the `Location` actually sent is what is checked; a click whose HMAC verifies is followed
whatever its `t`; a click URL's query is no signed open."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailpixel.config import Settings
from mailpixel.pixel.app import EXTENSION, create_app
from mailpixel.signing import ClickSigner, canonical, make_click_url, sign
from tests.conftest import all_items
from tests.signed_urls import NEW
from tests.unit.test_click_signing import FOLLOWED_AS, REFUSED_AS_SENT

BASE = "https://px.example.com"
DEST = "https://shop.example.com/sale?utm_source=mail#top"


@pytest.fixture
def app(settings: Settings, table: str) -> Any:
    return create_app(settings.with_overrides(signing_secrets=(NEW,)))


@pytest.fixture
def strict(settings: Settings, table: str) -> Any:
    """A pixel app with a maximum signature age (30 days)."""
    return create_app(settings.with_overrides(signing_secrets=(NEW,), signature_max_age_days=30))


def get(app: Any, url: str) -> Any:
    return app.test_client().get(url[len(BASE) :])


def counters(app: Any) -> dict[str, int]:
    return app.extensions[EXTENSION].metrics.snapshot()  # type: ignore[no-any-return]


def test_signed_destinations_refused_as_sent_answer_400_and_record_nothing(app, ddb, settings):
    for name, destination in REFUSED_AS_SENT.items():
        response = get(app, make_click_url(BASE, "e1", "u1", destination, NEW))
        assert response.status_code == 400, name
        assert "Location" not in response.headers, name
    assert all_items(ddb, settings.clicks_table) == []
    assert counters(app).get("click_error", 0) == 0


def test_the_location_sent_is_the_one_checked(app, ddb, settings):
    for destination, location in FOLLOWED_AS.items():
        response = get(app, make_click_url(BASE, "e1", "u1", destination, NEW))
        assert response.status_code == 302, destination
        assert response.headers["Location"] == location
    stored = {item["url"] for item in all_items(ddb, settings.clicks_table)}
    assert stored == set(FOLLOWED_AS)  # the click keeps the destination as signed


# Item 4: with a maximum age, a click whose HMAC verifies is the sender's whatever its `t`.
@pytest.mark.parametrize(
    ("t", "reason"),
    [(None, "t_missing"), (+3600, "t_future"), ("millis", "t_future"), (-31 * 86_400, "sig_expired")],
    ids=["missing", "ahead", "milliseconds", "expired"],
)
def test_an_authentic_click_with_a_bad_t_redirects_and_records_nothing(strict, ddb, settings, t, reason):
    now = int(time.time())
    issued = None if t is None else now * 1000 if t == "millis" else now + int(t)
    response = get(strict, make_click_url(BASE, "e1", "u1", DEST, NEW, t=issued))
    assert response.status_code == 302
    assert response.headers["Location"] == DEST
    assert all_items(ddb, settings.clicks_table) == []
    assert counters(strict).get(f"click_{reason}") == 1


def test_an_unparsable_signed_t_redirects_and_records_nothing(strict, ddb, settings):
    params = {"email_id": "e1", "user_id": "u1", "t": "²", "url": DEST}
    response = get(strict, f"{BASE}/click?{canonical(params)}&sig={sign(params, NEW)}")
    assert response.headers["Location"] == DEST
    assert all_items(ddb, settings.clicks_table) == []
    assert counters(strict).get("click_t_invalid") == 1


def test_with_a_maximum_age_a_fresh_click_is_recorded_and_a_forged_one_refused(strict, ddb, settings):
    url = make_click_url(BASE, "e1", "u1", DEST, NEW, t=int(time.time()) + 60)  # a little skew is fine
    assert get(strict, url).headers["Location"] == DEST
    assert len(all_items(ddb, settings.clicks_table)) == 1
    undated_forgery = make_click_url(BASE, "e1", "u1", "https://evil.example/", "not-the-secret")
    assert get(strict, undated_forgery).status_code == 400


# Item 6: a click URL's query sent to /pixel is no signed open (nor an opener for webhooks).
def test_a_click_query_sent_to_the_pixel_records_no_open(app, ddb, settings, table):
    user = make_click_url(BASE, "e1", "u1", DEST, NEW, t=int(time.time()))
    scoped = ClickSigner(BASE, "e1", NEW, int(time.time()), scoped=True).url(DEST, "u1")
    params = {"email_id": "e1", "user_id": "u1", "url": DEST, "hp": "1"}
    honeypot = f"{BASE}/click?{canonical(params)}&sig={sign(params, NEW)}"
    for url in (user, scoped, honeypot):
        assert get(app, url).status_code == 302  # a click where it belongs
        response = get(app, url.replace("/click?", "/pixel?"))
        assert response.status_code == 200 and response.mimetype == "image/gif"
    assert all_items(ddb, table) == []
    assert counters(app).get("pixel_wrong_route") == 3
    assert len(all_items(ddb, settings.clicks_table)) == 3
