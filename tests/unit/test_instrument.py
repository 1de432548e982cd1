"""`mailpixel instrument`: what is rewritten, what is left alone, and that every byte outside the
rewritten `href` values and the inserted pixel is kept (checked by an independent diff)."""

from __future__ import annotations

import csv
import html
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from mailpixel.ops.cli import main
from mailpixel.ops.instrument import Instrumenter, pixel_img
from mailpixel.signing import verify
from tests.conftest import FIXTURES
from tests.signed_urls import pairs_of

SECRET = "instrument-secret"
BASE = "https://px.example.com"
SOURCE = (FIXTURES / "email.html").read_bytes()
TEXT = SOURCE.decode("utf-8", errors="surrogateescape")

# Destinations the fixture's trackable links point to, in document order (after unescaping and
# stripping the spaces around the value, as a browser does).
TRACKED = [
    "https://shop.example.com/sale?utm_source=mail&utm_medium=email#top",
    "https://shop.example.com/a?b=1&c=2",
    "https://UPPER.example.com/Path?x=1",
    "https://spaced.example.com/p",
    "https://first.example/",
    "https://real.example/?q=caf%C3%A9",
    "https://été.example/chemin?q=é",
    "https://area.example/",
    "https://shop.example.com/sale?utm_source=mail&utm_medium=email#top",
]
LEFT_ALONE = [
    "mailto:hello@example.com?subject=Hi",
    "tel:+15551234567",
    "#section-2",
    "/relative/path",
    "javascript:alert(1)",
    "https://shop.example.com/unsub",
    "https://shop.example.com/u/{{user_id}}",
    "*|ARCHIVE|*",
    "https://example.com/p?id=*|UNIQID|*",
    "%%view_email_url%%",
    "https://example.com/?u={$user.id}",
    "{{unsubscribe_url}}",
    "https://second.example/",
    "https://decoy.example/",
    "https://in-comment.example/",
    "https://in-style.example/",
    "https://in-script.example/",
    "https://vml.example/",
    "https://cdn.example.com/logo.png",
]


def click_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def test_only_href_values_change_and_the_pixel_is_inserted_before_body_end():
    email = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET, t=1_767_225_600)
    out = email.render("user 7")
    pixel = pixel_img(email.pixel_url("user 7"))
    assert out.count(pixel) == 1
    assert out.index(pixel) == out.index("</BODY>") - len(pixel)
    without_pixel = out.replace(pixel, "")
    # The href values of both documents, found by a regular expression (not the tokenizer under
    # test), pair up one to one; an unquoted value comes back double-quoted.
    original_values = re.findall(r"""href\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", TEXT, flags=re.I)
    rewritten_values = re.findall(r"""href\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", without_pixel, flags=re.I)
    assert len(original_values) == len(rewritten_values)
    rebuilt = without_pixel
    followed = []
    for old, new in zip(original_values, rewritten_values, strict=True):
        if old == new:
            continue
        value = html.unescape(new.strip("\"'"))
        assert value.startswith(f"{BASE}/click?")
        params = click_params(value)
        followed.append(params["url"])
        assert params["user_id"] == "user 7" and params["email_id"] == "e1" and params["t"] == "1767225600"
        assert verify(pairs_of(urlsplit(value).query), [SECRET]) == (True, "ok")
        rebuilt = rebuilt.replace(new, old, 1)
    assert followed == TRACKED
    # Every other byte is the original's: with the old values put back, the bytes are the same.
    assert rebuilt.encode("utf-8", errors="surrogateescape") == SOURCE


@pytest.mark.parametrize("href", LEFT_ALONE)
def test_links_left_alone(href):
    out = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET).render("u1")
    assert out.count(html.escape(href, quote=False)) >= TEXT.count(html.escape(href, quote=False)) > 0


def test_email_scoped_mode_leaves_the_user_to_the_merge_tag():
    email = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET, email_scoped=True)
    out = email.render("*|UNIQID|*")
    urls = [html.unescape(u) for u in re.findall(r"""["'](https://px\.example\.com/click\?[^"']*)""", out)]
    assert len(urls) == len(TRACKED)
    for url in urls:
        assert url.endswith("&user_id=*|UNIQID|*")
        pairs = [(n, v) for n, v in pairs_of(urlsplit(url).query) if n != "user_id"]
        assert ("scope", "email") in pairs and verify(pairs, [SECRET]) == (True, "ok")
    assert "user_id=&" in html.unescape(re.findall(r'<img src="([^"]*/pixel\?[^"]*)"', out)[0]) + "&"


def test_a_document_without_body_gets_the_pixel_at_the_end():
    source = '<p><a href="https://x.example/">x</a></p>'
    email = Instrumenter(source, email_id="e", base_url=BASE, secret=None)
    link = html.escape(email.signer.url("https://x.example/", "u"), quote=True)
    assert email.render("u") == f'<p><a href="{link}">x</a></p>' + pixel_img(email.pixel_url("u"))


def test_cli_writes_one_file_per_recipient_and_keeps_the_other_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    recipients.write_text("user_id,first_name,segment\nu1,Ada,vip\nu2,Bob,\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["instrument", "--html", str(FIXTURES / "email.html"), "--email-id", "e1", "--base-url", BASE]
    assert main([*args, "--recipients", str(recipients), "--out-dir", str(out)]) == 0
    with (out / "recipients.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [
        {"user_id": "u1", "first_name": "Ada", "segment": "vip", "file": "000001.html"},
        {"user_id": "u2", "first_name": "Bob", "segment": "", "file": "000002.html"},
    ]
    email = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET)
    for row in rows:
        written = (out / row["file"]).read_bytes()
        assert written == email.render(row["user_id"]).encode("utf-8", errors="surrogateescape")


def test_cli_streams_json_lines(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    recipients.write_text("name,user_id\nAda,u1\nBob,u2\n", encoding="utf-8")
    args = ["instrument", "--html", str(FIXTURES / "email.html"), "--email-id", "e1", "--base-url", BASE]
    assert main([*args, "--recipients", str(recipients), "--jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["name"], x["user_id"]) for x in lines] == [("Ada", "u1"), ("Bob", "u2")]
    assert all("/click?" in x["html"] and "/pixel?" in x["html"] for x in lines)


def test_cli_refuses_a_csv_without_user_id(tmp_path, capsys):
    recipients = tmp_path / "list.csv"
    recipients.write_text("email\na@example.com\n", encoding="utf-8")
    args = ["instrument", "--html", str(FIXTURES / "email.html"), "--email-id", "e1", "--jsonl"]
    with pytest.raises(ValueError, match="user_id column"):
        main([*args, "--recipients", str(recipients)])


def test_cli_email_scoped_prints_one_email(monkeypatch, capsysbinary):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    args = ["instrument", "--html", str(FIXTURES / "email.html"), "--email-id", "e1", "--base-url", BASE]
    assert main([*args, "--email-scoped", "{{user_id}}"]) == 0
    raw = capsysbinary.readouterr().out
    assert b"Caf\xe9" in raw  # the template's invalid byte, written back as it was
    out = raw.decode("utf-8", errors="surrogateescape")
    assert out.count("scope=email") == len(TRACKED)
    assert out.count("&amp;user_id={{user_id}}") == len(TRACKED)
