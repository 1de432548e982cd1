"""Signed click URLs: the published vectors, the fast signer against the reference `sign`, and
the destination rule that keeps even a signed link from becoming a dangerous redirect."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailpixel.pixel.click import destination_problem
from mailpixel.signing import ClickSigner, canonical, make_click_url, sign, verify
from tests.conftest import FIXTURES
from tests.signed_urls import VECTORS as PIXEL_VECTORS
from tests.signed_urls import pairs_of, url_query

CLICK_VECTORS = json.loads((FIXTURES / "click_signing_vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", CLICK_VECTORS, ids=[v["name"] for v in CLICK_VECTORS])
def test_click_vectors(vector):
    params = dict(vector["params"])
    scoped = params.get("scope") == "email"
    signed = {k: v for k, v in params.items() if not (scoped and k == "user_id")}
    assert canonical(signed) == vector["canonical"]
    assert sign(signed, vector["secret"]) == vector["sig"]
    t = int(params["t"]) if "t" in params else None
    signer = ClickSigner(vector["base_url"], params["email_id"], vector["secret"], t, scoped)
    url = signer.url(params["url"], params["user_id"])
    assert url == vector["url"]
    pairs = pairs_of(url_query(url))
    if scoped:
        pairs = [(n, v) for n, v in pairs if n != "user_id"]
    assert verify(pairs, [vector["secret"]]) == (True, "ok")


def test_pixel_vectors_are_not_click_vectors():
    """A pixel URL carries no `url`: its signature can never vouch for a destination."""
    for vector in PIXEL_VECTORS:
        params = {**vector["params"], "url": "https://evil.example/"}
        assert sign(params, vector["secret"]) != vector["sig"]


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@given(email_id=text, user_id=text, destination=text, t=st.none() | st.integers(0, 2**40))
def test_fast_signer_signs_what_the_reference_signs(email_id, user_id, destination, t):
    url = make_click_url("https://px.example.com", email_id, user_id, destination, "s3cret", t=t)
    params = {"email_id": email_id, "user_id": user_id, "url": destination}
    if t is not None:
        params["t"] = str(t)
    assert url == f"https://px.example.com/click?{canonical(params)}&sig={sign(params, 's3cret')}"
    assert verify(pairs_of(url_query(url)), ["s3cret"]) == (True, "ok")


def test_without_a_secret_the_url_is_unsigned():
    url = make_click_url("http://127.0.0.1:5000", "e1", "u1", "https://example.org/", None)
    assert url == "http://127.0.0.1:5000/click?email_id=e1&url=https%3A%2F%2Fexample.org%2F&user_id=u1"


ACCEPTED = [
    "https://example.com",
    "https://example.com/",
    "HTTPS://Example.COM/Path",
    "http://example.com:8080/a/b?c=d&e=f#g",
    "https://example.com/p?next=https://other.example/&q=%2F%2Fevil#/x?y",
    "https://例え.jp/パス?q=é",
    "https://127.0.0.1:5000/x",
    "https://[::1]:8443/",
]

# Destinations never followed, even when signed (a sender's template mistake, say). Unsigned or
# tampered ones are refused earlier, by the signature: tests/integration/test_click.py.
HOSTILE = [
    "",
    "javascript:alert(1)",
    "JavaScript:alert(document.domain)",
    " javascript:alert(1)",
    "\tjavascript:alert(1)",
    "java\nscript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "ftp://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example\\",
    "https:\\\\evil.example",
    "https:/\\evil.example",
    "https:evil.example",
    "https:/evil.example",
    "https:///evil.example",
    "https://",
    "https://.evil",
    "https://%65vil.example/",  # host by percent-escape: no host a browser agrees on
    "https:%2F%2Fevil.example",
    "https://good.example@evil.example/",
    "https://good.example:pass@evil.example/",
    "https://good.example%40evil.example/@x",
    "https://evil.example\\@good.example/",
    "https://good.example\u3000.evil.example/",
    "https://good.example/\u202eexe.txt",
    "https://good.example/\x00",
    "https://good.example/ a",
    "https://good.example/\r\nSet-Cookie: a=b",
    "https://good.example/\x7f",
    "https://[::1/",
    "/relative/path",
    "evil.example",
    "https://good.example/" + "a" * 5000,
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_ordinary_destinations_are_followed(url):
    assert destination_problem(url) is None


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_destinations_are_refused_even_when_signed(url):
    assert destination_problem(url) is not None


# IDs the click route would cut (more than 256 characters or 512 bytes of UTF-8): a click on a URL
# signed for one would be stored under another ID, so none is signed, as `make_url` refuses them.
TOO_LONG = ["u" * 257, "\U0001f600" * 129, "é" * 255 + "€"]  # 257 chars; 516 bytes; 513 bytes
AT_THE_LIMIT = ["u" * 256, "\U0001f600" * 128, "é" * 256]


@pytest.mark.parametrize("user_id", TOO_LONG)
def test_a_user_id_the_click_would_cut_is_refused(user_id):
    with pytest.raises(ValueError, match=r"^user_id is longer than 256 characters or 512 bytes of UTF-8$"):
        make_click_url("https://px.example.com", "e1", user_id, "https://example.org/", "s3cret")
    with pytest.raises(ValueError, match="^user_id is longer"):  # unsigned, the click cuts it all the same
        make_click_url("https://px.example.com", "e1", user_id, "https://example.org/", None)


@pytest.mark.parametrize("email_id", TOO_LONG)
@pytest.mark.parametrize("scoped", [False, True])
def test_an_email_id_the_click_would_cut_is_refused_in_both_modes(email_id, scoped):
    with pytest.raises(ValueError, match=r"^email_id is longer than 256 characters or 512 bytes of UTF-8$"):
        ClickSigner("https://px.example.com", email_id, "s3cret", None, scoped)


@pytest.mark.parametrize("value", AT_THE_LIMIT)
def test_ids_at_the_limit_are_signed(value):
    url = make_click_url("https://px.example.com", value, value, "https://example.org/", "s3cret")
    assert verify(pairs_of(url_query(url)), ["s3cret"]) == (True, "ok")


def test_a_signer_checks_every_recipient_not_only_the_first():
    signer = ClickSigner("https://px.example.com", "e1", "s3cret", None, scoped=False)
    for user_id in ("u1", "u2"):
        assert signer.url("https://example.org/", user_id)
        assert signer.url("https://example.org/b", user_id)
    with pytest.raises(ValueError, match="^user_id is longer"):
        signer.url("https://example.org/", "u" * 257)
    with pytest.raises(ValueError, match="^user_id is longer"):  # a link already cached
        signer.url("https://example.org/b", "u" * 257)


def test_email_scoped_leaves_the_merge_tag_unchecked():
    """Email-scoped, the user id is the ESP's merge tag, outside the signature: not an ID yet."""
    signer = ClickSigner("https://px.example.com", "e1", "s3cret", None, scoped=True)
    tag = "{{" + "recipient.external_id" * 20 + "}}"
    assert signer.url("https://example.org/", tag).endswith(f"&user_id={tag}")
