"""Signed click URLs: the published vectors, the fast signer against the reference `sign`, and
the destination rule that keeps even a signed link from becoming a dangerous redirect."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailpixel.model.ids import cleaning_changes
from mailpixel.pixel.click import RefusedDestination, destination_problem, location_for
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
ids = text.filter(lambda value: not cleaning_changes(value))  # the others are refused (test_signing.py)


@given(email_id=ids, user_id=ids, destination=text, t=st.none() | st.integers(0, 2**40))
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


# Issue 18, item 3: the check runs on the `Location` that is sent (`location_for`), read the way
# the WHATWG URL standard (browsers) reads it; every destination it refuses is refused by /click
# (a 400, never a 500) and left untracked by `instrument` (`destination_problem`).
REFUSED_AS_SENT = {
    # NFKC (IDNA's mapping) turns these fullwidth and small forms into `\` or `%` in the host.
    "fullwidth_backslash": "https://good\uff3c.evil.example/",
    "small_backslash": "https://good\ufe68.evil.example/",
    "fullwidth_percent": "https://good\uff0541.example/",
    "small_percent": "https://good\ufe6a41.example/",
    # Forbidden host code points (WHATWG "forbidden host code point").
    "host_space_ideographic": "https://good\u3000evil.example/",
    "host_less_than": "https://good<.example/",
    "host_greater_than": "https://good>.example/",
    "host_quote": 'https://go"od.example/',
    "host_pipe": "https://a|b.example/",
    "host_bracket_open": "https://good[.example/",
    "host_bracket_close": "https://good].example/",
    "host_caret": "https://go^od.example/",
    "host_non_ascii_then_forbidden": "https://é<.example/",
    # What answered 500 before: Python's IDNA codec or port parsing raised.
    "empty_label": "https://good.com../",
    "empty_label_inside": "https://good..com/",
    "label_over_63_octets": "https://" + "a" * 64 + ".example/",
    "non_ascii_label_over_63_octets": "https://" + "é" * 64 + ".example/",
    "name_over_253": "https://" + ".".join(["a" * 63] * 4) + "/",
    "port_99999": "https://good.example:99999/",
    "port_65536": "https://good.example:65536/",
    "port_abc": "https://good.example:abc/",
    "port_fullwidth_digits": "https://good.example:\uff18\uff10/",
    "port_signed": "https://good.example:+80/",
    "two_ports": "https://good.example:80:80/",
    # WHATWG "ends in a number": parsed as IPv4, in forms a person does not read as that address.
    "ipv4_hex": "https://0x7F.1/",
    "ipv4_short": "https://127.1/",
    "ipv4_octal": "https://0177.0.0.1/",
    "ipv4_five_parts": "https://1.2.3.4.5/",
    "ipv4_out_of_range": "https://999.1.1.1/",
    "ipv4_hex_last": "https://good.example.0x/",
    "ipv4_number_last": "https://good.example.42/",
    # IPv6: WHATWG refuses invalid addresses and zone ids.
    "ipv6_invalid": "https://[1::2::3]/",
    "ipv6_name": "https://[good.example]/",
    "ipv6_zone": "https://[fe80::1%25eth0]/",
    "ipv6_trailing": "https://[::1]x/",
    # IDNA: invalid Punycode, disallowed code points (UTS #46 / IDNA 2008, as browsers apply).
    "punycode_empty": "https://xn--/",
    "punycode_invalid": "https://xn--ZZ.example/",
    "disallowed_code_point": "https://\u2615.example/",
    "soft_hyphen": "https://\u00adgood.example/",
    # The WHATWG URL standard's host parser examples: failures there, and hosts
    # it rewrites into a form the signed text does not show (`0` is 0.0.0.0, `example%2Ecom` is
    # example.com), refused here as well.
    "whatwg_percent_dot": "https://example%2Ecom/",
    "whatwg_zero": "https://0/",
    "whatwg_percent_zero": "https://%30/",
    "whatwg_0x": "https://0x/",
    "whatwg_too_big": "https://0xffffffff1/",
    "whatwg_ipv6_escaped_bracket": "https://[0:0::1%5D/",
    "whatwg_ipv6_escaped_digit": "https://[0:0::%31]/",
    "whatwg_09": "https://09/",
    "whatwg_example_255": "https://example.255/",
    "whatwg_caret": "https://example^example/",
}

# Destinations followed, and the `Location` sent for each (WHATWG's own examples among them).
FOLLOWED_AS = {
    "https://example.com/": "https://example.com/",
    "https://EXAMPLE.COM/": "https://EXAMPLE.COM/",  # WHATWG example; the browser lower-cases it
    "https://[0:0::1]/": "https://[0:0::1]/",  # WHATWG example: [::1] to the browser, the same address
    "HTTPS://Example.COM/Path": "HTTPS://Example.COM/Path",
    "https://EXAMPLE.com/../x": "https://EXAMPLE.com/../x",  # the browser resolves `..`, same host
    "https://example.com:0/": "https://example.com:0/",
    "https://example.com:65535/": "https://example.com:65535/",
    "http://example.com:/": "http://example.com/",  # an empty port is no port, to browsers too
    "https://good.example./": "https://good.example./",  # the DNS root
    "https://my_host.example/": "https://my_host.example/",
    "https://1.2.3.4/": "https://1.2.3.4/",
    "https://[::1]:8443/": "https://[::1]:8443/",
    "https://faß.ExAmPlE/": "https://xn--fa-hia.example/",  # UTS #46 nontransitional, not IDNA 2003's fass
    "https://\uff47\uff4f\uff4f\uff44.example/": "https://good.example/",  # fullwidth letters map to ASCII
    "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/": "https://127.0.0.1/",  # WHATWG: IPv4 after mapping
    "https://xn--fa-hia.example/": "https://xn--fa-hia.example/",
    "https://例え.jp/パス?q=é#ü": "https://xn--r8jz45g.jp/%E3%83%91%E3%82%B9?q=%C3%A9#%C3%BC",
    "https://shop.example/a|b?x=[1]&y=%zz#f": "https://shop.example/a|b?x=[1]&y=%zz#f",
}


@pytest.mark.parametrize("url", REFUSED_AS_SENT.values(), ids=REFUSED_AS_SENT.keys())
def test_destinations_refused_as_sent(url):
    assert destination_problem(url) is not None
    with pytest.raises(RefusedDestination):
        location_for(url)


@pytest.mark.parametrize(("url", "location"), FOLLOWED_AS.items(), ids=FOLLOWED_AS.keys())
def test_location_sent_for_followed_destinations(url, location):
    assert destination_problem(url) is None
    assert location_for(url) == location
    assert location.isascii()


@given(text)
def test_any_text_is_either_refused_or_gets_an_ascii_location(url):
    """No destination makes `location_for` raise anything but a refusal (a 500 at /click)."""
    for candidate in (url, "https://" + url, "https://good.example/" + url, "http://" + url + ":1/"):
        try:
            location = location_for(candidate)
        except RefusedDestination:
            continue
        assert location.isascii() and location.isprintable() and "\\" not in location
