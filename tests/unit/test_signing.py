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
