"""Hypothesis against the real `/click` (the Lambda handler, then the app directly): never a 500,
a redirect only to a signed destination that passes the destination rule, and then exactly to
the `Location` that rule checked (`location_for`: the signed text, non-ASCII made ASCII)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailpixel.model.ids import cleaning_changes
from mailpixel.pixel.app import create_app
from mailpixel.pixel.click import destination_problem, location_for
from mailpixel.signing import make_click_url
from tests.conftest import http_api_event
from tests.integration.test_fuzz import FUZZ
from tests.signed_urls import NEW

NAMES = st.one_of(st.sampled_from(["email_id", "user_id", "t", "url", "scope", "sig"]), st.text(max_size=8))
DESTINATIONS = st.one_of(
    st.text(max_size=80),
    st.builds(lambda s: "https://" + s, st.text(max_size=60)),
    st.builds(
        lambda host, path, query, frag: f"https://{host}.example/{path}?{query}#{frag}",
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
        st.text(alphabet="abcXYZ019-._~%/:@!$&'()*+,;=", max_size=20),
        st.text(alphabet="abcXYZ019-._~%/?:@!$&'()*+,;=", max_size=30),
        st.text(alphabet="abcXYZ019-._~%/?:@!$&'()*+,;=#", max_size=20),
    ),
)


@pytest.fixture
def signed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", NEW)


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in (response.get("headers") or {}).items()}


@FUZZ
@given(params=st.lists(st.tuples(NAMES, st.binary(max_size=120)), max_size=7))
def test_arbitrary_queries_never_redirect_nor_fail(signed_env, lambda_handler, params):
    query = "&".join(f"{quote_from_bytes(name.encode())}={quote_from_bytes(value)}" for name, value in params)
    response = lambda_handler(http_api_event(query, path="/click"), None)
    assert response["statusCode"] == 400, response
    assert "location" not in headers_of(response)


@FUZZ
@given(
    destination=DESTINATIONS,
    user=st.text(max_size=20).filter(lambda user: not cleaning_changes(user)),  # others refused
    extra=st.sampled_from(["", "&x=1", "&url=https://evil.example/"]),
)
def test_signed_destinations_redirect_exactly_or_not_at_all(settings, table, destination, user, extra):
    app = create_app(settings.with_overrides(signing_secrets=(NEW,)))
    url = make_click_url("https://px.example.com", "e1", user, destination, NEW) + extra
    response = app.test_client().get(url.removeprefix("https://px.example.com"))
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert extra == "" and destination_problem(destination) is None
        location = response.headers["Location"]
        assert location == location_for(destination) and location.isascii()
        if destination.isascii() and len(location) == len(destination):  # no empty port dropped
            assert location == destination
    else:
        assert "Location" not in response.headers
        assert extra or destination_problem(destination) is not None
