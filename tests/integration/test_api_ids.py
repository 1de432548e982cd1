"""Issue 18, items 14 and 15: IDs the path cannot carry. `.` and `..` (browsers resolve them as
dot segments) are reachable as a query parameter; an ID with a line break or another control
character is the documented 400, not a 404."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from mailpixel.api.app import create_api_app
from mailpixel.pixel.app import create_app
from tests.conftest import all_items

KEY = "api-ids-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOTS = (".", "..")


@pytest.fixture
def api(settings, table) -> Any:
    return create_api_app(settings.with_overrides(api_keys=(KEY,))).test_client()


@pytest.fixture
def dotted(settings, table, ddb) -> None:
    """Opens of emails `.` and `..` by users `..` and `.`, recorded by the pixel (unsigned, local)."""
    pixel = create_app(settings).test_client()
    for email_id, user_id in (DOTS, DOTS[::-1]):
        assert pixel.get("/pixel", query_string={"email_id": email_id, "user_id": user_id}).status_code == 200
    assert sorted(i["email_id"] for i in all_items(ddb, table)) == [".", ".."]


@pytest.mark.parametrize("email_id", DOTS)
def test_emails_dot_and_dot_dot_are_reachable_as_a_query_parameter(api, dotted, email_id):
    opens = api.get("/api/emails/opens", query_string={"email_id": email_id}, headers=AUTH)
    assert opens.status_code == 200
    assert [item["email_id"] for item in opens.get_json()["items"]] == [email_id]
    stats = api.get("/api/emails/stats", query_string={"email_id": email_id}, headers=AUTH)
    assert stats.status_code == 200 and stats.get_json()["email_id"] == email_id
    daily = api.get("/api/emails/daily", query_string={"email_id": email_id}, headers=AUTH)
    assert daily.status_code == 200 and daily.get_json()["email_id"] == email_id


@pytest.mark.parametrize("user_id", DOTS)
def test_users_dot_and_dot_dot_are_reachable_as_a_query_parameter(api, dotted, user_id):
    opens = api.get("/api/users/opens", query_string={"user_id": user_id}, headers=AUTH)
    assert [item["user_id"] for item in opens.get_json()["items"]] == [user_id]
    stats = api.get("/api/users/stats", query_string={"user_id": user_id}, headers=AUTH)
    assert stats.status_code == 200 and stats.get_json()["user_id"] == user_id


def test_the_query_form_answers_like_the_path_form(api, dotted):
    for path in ("/api/emails/{}/opens", "/api/emails/{}/stats", "/api/users/{}/stats"):
        by_path = api.get(path.format("x%2Fy"), headers=AUTH).get_json()
        name = "user_id" if "users" in path else "email_id"
        by_query = api.get(path.replace("{}/", ""), query_string={name: "x/y"}, headers=AUTH).get_json()
        assert by_path == by_query
    for path in ("/api/emails/stats", "/api/users/opens"):  # missing or repeated: a 400 that says how
        for query in ("", "email_id=a&email_id=b&user_id=a&user_id=b"):
            response = api.get(f"{path}?{query}", headers=AUTH)
            assert response.status_code == 400 and "as a query parameter" in response.get_json()["message"]


CONTROL = ["a\nb", "\n", "a\rb", "a\tb", "a\x00b", "a\x1fb", "a\x7fb", "a\u200bb", " a", "a "]


@pytest.mark.parametrize("value", CONTROL, ids=[repr(v) for v in CONTROL])
def test_an_id_no_open_can_have_is_the_documented_400(api, value):
    paths = [f"/api/emails/{quote(value, safe='')}/{what}" for what in ("stats", "daily", "opens")]
    paths += [f"/api/users/{quote(value, safe='')}/{what}" for what in ("stats", "opens")]
    for path in paths:
        response = api.get(path, headers=AUTH)
        assert response.status_code == 400, path
        body = response.get_json()
        assert body["error"] == "bad_request" and "so no open can have it" in body["message"]
    for path, name in (("/api/emails/stats", "email_id"), ("/api/users/opens", "user_id")):
        assert api.get(path, query_string={name: value}, headers=AUTH).status_code == 400
