"""Signed pixel URLs: the algorithm, its test vectors, and `mailpixel url`."""

from __future__ import annotations

import base64
import json

import pytest

from mailpixel.ops import cli
from mailpixel.signing import SIG_LENGTH, canonical, make_url, sign, verify
from tests.signed_urls import NEW, NOW, OLD, VECTORS, pairs_of, url_query


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vectors(vector):
    params = vector["params"]
    assert canonical(params) == vector["canonical"]
    assert sign(params, vector["secret"]) == vector["sig"]
    url = make_url(
        vector["base_url"], params["email_id"], params["user_id"], vector["secret"], t=params.get("t")
    )
    assert url == vector["url"]
    assert verify(pairs_of(url_query(url)), [vector["secret"]]) == (True, "ok")


def test_signature_is_22_base64url_characters_132_bits():
    sig = sign({"email_id": "e", "user_id": "u"}, NEW)
    assert len(sig) == SIG_LENGTH == 22
    assert set(sig) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(base64.urlsafe_b64decode(sig + "==")) * 8 >= 128


def test_canonical_ignores_order_and_sig_and_encodes_rfc3986():
    assert (
        canonical([("user_id", "a b"), ("sig", "x"), ("email_id", "~._-")]) == "email_id=~._-&user_id=a%20b"
    )


def test_encoding_of_the_url_does_not_matter_only_the_values():
    url = make_url("http://h", "e 1", "u/1", NEW)
    query = url_query(url).replace("%20", "+").replace("%2F", "/")
    assert "e+1" in query and "u/1" in query
    assert verify(pairs_of(query), [NEW]) == (True, "ok")


def test_verify_reasons():
    query = url_query(make_url("http://h", "e1", "u1", NEW, t=NOW))
    pairs = pairs_of(query)
    sig = dict(pairs)["sig"]
    assert verify(pairs, [NEW]) == (True, "ok")
    assert verify(pairs, []) == (False, "no_secrets")
    assert verify(pairs_of("email_id=e1&user_id=u1"), [NEW]) == (False, "sig_missing")
    assert verify(pairs_of(query + "&extra=1"), [NEW]) == (False, "sig_invalid")
    assert verify(pairs_of(query.replace(sig, sig[:-1])), [NEW]) == (False, "sig_invalid")
    assert verify(pairs_of(query.replace(sig, sig + "A")), [NEW]) == (False, "sig_invalid")
    assert verify(pairs_of(query.replace(sig, "é" * 22)), [NEW]) == (False, "sig_invalid")
    assert verify(pairs, ["wrong"]) == (False, "sig_invalid")


def test_repeated_parameter_breaks_the_signature():
    query = url_query(make_url("http://h", "e1", "u1", NEW))
    assert verify(pairs_of("email_id=e2&" + query), [NEW]) == (False, "sig_invalid")


def test_rotation_first_secret_signs_every_secret_verifies():
    old_url = make_url("http://h", "e1", "u1", OLD)
    assert verify(pairs_of(url_query(old_url)), [NEW, OLD]) == (True, "ok")
    assert verify(pairs_of(url_query(old_url)), [NEW]) == (False, "sig_invalid")


def test_max_age_applies_to_signed_t_only():
    day = 86_400
    fresh = pairs_of(url_query(make_url("http://h", "e1", "u1", NEW, t=NOW - day)))
    stale = pairs_of(url_query(make_url("http://h", "e1", "u1", NEW, t=NOW - 31 * day)))
    undated = pairs_of(url_query(make_url("http://h", "e1", "u1", NEW)))
    bad_t = [("email_id", "e1"), ("t", "soon"), ("sig", sign({"email_id": "e1", "t": "soon"}, NEW))]
    assert verify(fresh, [NEW], max_age_seconds=30 * day, now=NOW) == (True, "ok")
    assert verify(stale, [NEW], max_age_seconds=30 * day, now=NOW) == (False, "sig_expired")
    assert verify(stale, [NEW], now=NOW) == (True, "ok")
    assert verify(undated, [NEW], max_age_seconds=30 * day, now=NOW) == (False, "t_missing")  # issue 11
    assert verify(bad_t, [NEW], max_age_seconds=30 * day, now=NOW) == (False, "t_invalid")


def test_make_url_without_secret_is_unsigned_and_keeps_pixel_suffix():
    assert make_url("http://h:5000/", "e1", "u1", None) == "http://h:5000/pixel?email_id=e1&user_id=u1"
    assert make_url("https://x/prod/pixel", "e1", "u1", None) == "https://x/prod/pixel?email_id=e1&user_id=u1"


def test_cli_url_json_with_time(monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", NEW)
    assert (
        cli.main(
            [
                "url",
                "--email-id",
                "e1",
                "--user-id",
                "u1",
                "--base-url",
                "https://px",
                "--with-time",
                "--format",
                "json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"url", "img"}
    params = dict(pairs_of(url_query(data["url"])))
    assert int(params["t"]) > NOW - 10**7
    assert verify(pairs_of(url_query(data["url"])), [NEW]) == (True, "ok")
    assert data["url"].startswith("https://px/pixel?")


def test_cli_url_without_secret_warns_and_defaults_to_local(monkeypatch, capsys):
    monkeypatch.delenv("MAILPIXEL_SIGNING_SECRETS", raising=False)
    monkeypatch.delenv("MAILPIXEL_SIGNING_SECRETS_PARAMETER", raising=False)
    monkeypatch.delenv("MAILPIXEL_BASE_URL", raising=False)
    monkeypatch.setenv("PORT", "5123")
    assert cli.main(["url", "--email-id", "e1", "--user-id", "u1"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "http://127.0.0.1:5123/pixel?email_id=e1&user_id=u1"
    assert "unsigned" in out.err


# Issue 18, item 5: an ID is signed as it is stored. The pixel and /click clean IDs (controls and
# format characters dropped, white space trimmed); a URL signed for " alice" would verify, and its
# opens be stored as "alice", out of reach of `forget --user-id " alice"`. The URL makers refuse
# every ID that cleaning changes, by the same function the pixel's cleaning is checked with.
UNCLEAN = [
    " alice",
    "alice ",
    "\talice",
    "alice\r",
    "alice\r\n",
    "ali\u200bce",
    "\ufeffalice",
    "a\x00b",
    "\u202ealice",
]


@pytest.mark.parametrize("value", UNCLEAN)
def test_the_pixel_would_store_these_ids_as_something_else(value):
    from mailpixel.model.ids import cleaning_changes
    from mailpixel.pixel.validation import parse_pixel_params

    stored = parse_pixel_params({"email_id": [value], "user_id": [value]})
    assert stored.email_id != value and stored.user_id != value
    assert cleaning_changes(value)


@pytest.mark.parametrize("value", UNCLEAN)
def test_url_makers_refuse_ids_the_pixel_would_clean(value):
    from mailpixel.signing import ClickSigner, make_click_url

    message = "has white space at an end, or control or format characters"
    for secret in (NEW, None):  # unsigned, the pixel would clean it all the same
        with pytest.raises(ValueError, match=f"^email_id {message}"):
            make_url("http://h", value, "u1", secret)
        with pytest.raises(ValueError, match=f"^user_id {message}"):
            make_url("http://h", "e1", value, secret)
        with pytest.raises(ValueError, match=f"^user_id {message}"):
            make_click_url("http://h", "e1", value, "https://example.org/", secret)
        for scoped in (False, True):
            with pytest.raises(ValueError, match=f"^email_id {message}"):
                ClickSigner("http://h", value, secret, None, scoped)


@pytest.mark.parametrize("value", ["alice", "a b", "Zoë+1", "user 42@example.com", "", "é" * 256])
def test_clean_ids_are_signed_and_stored_as_given(value):
    from mailpixel.model.ids import cleaning_changes
    from mailpixel.pixel.validation import parse_pixel_params

    assert not cleaning_changes(value)
    url = make_url("http://h", value or "e1", value, NEW)
    stored = parse_pixel_params(dict(query_params_of(url)))
    assert (stored.email_id, stored.user_id) == (value or "e1", value)


def query_params_of(url: str) -> dict[str, list[str]]:
    from mailpixel.pixel.validation import query_params

    return query_params(url_query(url).encode())


# Issue 18, item 6: a click signature never verifies at the pixel, nor a pixel one at /click.
def test_a_signature_verifies_only_on_its_own_route():
    from mailpixel.signing import CLICK_PATH, PIXEL_PATH, ClickSigner, make_click_url

    pixel = pairs_of(url_query(make_url("http://h", "e1", "u1", NEW, t=NOW)))
    click = pairs_of(url_query(make_click_url("http://h", "e1", "u1", "https://example.org/", NEW, t=NOW)))
    scoped_url = ClickSigner("http://h", "e1", NEW, NOW, scoped=True).url("https://example.org/", "u1")
    scoped = [(n, v) for n, v in pairs_of(url_query(scoped_url)) if n != "user_id"]
    assert verify(pixel, [NEW], route=PIXEL_PATH) == (True, "ok")
    assert verify(click, [NEW], route=CLICK_PATH) == (True, "ok")
    assert verify(scoped, [NEW], route=CLICK_PATH) == (True, "ok")
    for pairs in (click, scoped):
        assert verify(pairs, [NEW]) == (True, "ok")  # the HMAC alone holds: the route decides
        assert verify(pairs, [NEW], route=PIXEL_PATH) == (False, "wrong_route")
    assert verify(pixel, [NEW], route=CLICK_PATH) == (False, "wrong_route")
    # Any click-only parameter, signed with it or not, keeps a query off the pixel.
    for extra in ("url", "scope", "hp"):
        params = {"email_id": "e1", "user_id": "u1", extra: "1"}
        signed = [*params.items(), ("sig", sign(params, NEW))]
        assert verify(signed, [NEW], route=PIXEL_PATH) == (False, "wrong_route")


def test_release_applies_the_pixel_route():
    """A quarantined open is verified later by `release`, with the pixel's route rule."""
    from dataclasses import replace as with_fields

    from mailpixel.model.events import RequestFacts, build_open_event
    from mailpixel.signing import make_click_url, release

    query = url_query(make_click_url("http://h", "e1", "u1", "https://example.org/", NEW, t=NOW))
    facts = RequestFacts("r1", NOW * 1000, "192.0.2.1", "ua")
    event = build_open_event(
        email_id="e1",
        user_id="u1",
        facts=facts,
        retention_seconds=86_400,
        stored_ip="192.0.2.1",
        signed=None,
        issued_t=NOW,
    )
    quarantined = with_fields(event, unverified=[list(pair) for pair in pairs_of(query)])
    assert release(quarantined, [NEW]) == (None, "wrong_route")
    pixel = url_query(make_url("http://h", "e1", "u1", NEW, t=NOW))
    released, why = release(with_fields(event, unverified=[list(p) for p in pairs_of(pixel)]), [NEW])
    assert why == "ok" and released is not None and released.signed is True


@pytest.mark.parametrize("value", [" alice", "alice\r", "ali\u200bce"])
def test_instrument_refuses_a_recipient_the_pixel_would_clean_before_writing_anything(value):
    """`mailpixel instrument` checks every row first (docs: instrumenting): an unclean user id stops the run
    with its row named, as a too-long one does, instead of failing half-way through."""
    import csv
    import io

    from mailpixel.ops.instrument_cli import RecipientsError, recipients

    text = io.StringIO()
    csv.writer(text).writerows([["user_id"], ["bob"], [value]])
    rows = recipients(io.StringIO(text.getvalue(), newline=""))
    assert next(rows)[0]["user_id"] == "bob"
    with pytest.raises(RecipientsError, match=r"row 2 \(line \d+\): user_id .* has white space at an end"):
        next(rows)
