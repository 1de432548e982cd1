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
from mailpixel.ops.instrument import Instrumenter, attribute_value, pixel_img
from mailpixel.signing import ClickSigner, sign, verify
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
    email = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET, t=1_767_225_600, honeypot=False)
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
    assert len(urls) == len(TRACKED) + 1  # and the honeypot
    for url in urls:
        assert url.endswith("&user_id=*|UNIQID|*")
        pairs = [(n, v) for n, v in pairs_of(urlsplit(url).query) if n != "user_id"]
        assert ("scope", "email") in pairs and verify(pairs, [SECRET]) == (True, "ok")
    assert "user_id=&" in html.unescape(re.findall(r'<img src="([^"]*/pixel\?[^"]*)"', out)[0]) + "&"


def test_a_document_without_body_gets_the_pixel_at_the_end():
    source = '<p><a href="https://x.example/">x</a></p>'
    email = Instrumenter(source, email_id="e", base_url=BASE, secret=None, honeypot=False)
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
    assert main([*args, "--recipients", str(recipients)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.endswith("mailpixel: the recipients CSV needs a user_id column\n")
    assert "Traceback" not in captured.err


INSTRUMENT = ["instrument", "--html", str(FIXTURES / "email.html"), "--email-id", "e1", "--base-url", BASE]


def urls_in(page: str) -> list[str]:
    return [
        html.unescape(u)
        for u in re.findall(r"""["'](https://px\.example\.com/(?:click|pixel)\?[^"']*)""", page)
    ]


@pytest.mark.parametrize("mode", ["--jsonl", "--out-dir"])
def test_cli_dates_every_url_when_a_maximum_age_is_set(tmp_path, monkeypatch, capsys, mode):
    """With MAILPIXEL_SIGNATURE_MAX_AGE_DAYS the pixel and /click refuse a URL without `t`
    (`t_missing`): instrument adds it without --with-time, as `mailpixel url` does."""
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    monkeypatch.setenv("MAILPIXEL_SIGNATURE_MAX_AGE_DAYS", "30")
    recipients = tmp_path / "list.csv"
    recipients.write_text("user_id\nu1\n", encoding="utf-8")
    out = tmp_path / "out"
    where = ["--jsonl"] if mode == "--jsonl" else ["--out-dir", str(out)]
    assert main([*INSTRUMENT, "--recipients", str(recipients), *where]) == 0
    if mode == "--jsonl":
        (line,) = capsys.readouterr().out.splitlines()
        page = json.loads(line)["html"]
    else:
        page = (out / "000001.html").read_text(encoding="utf-8", errors="surrogateescape")
    urls = urls_in(page)
    assert len(urls) == len(TRACKED) + 2  # the links, the honeypot and the pixel
    for url in urls:
        assert verify(pairs_of(urlsplit(url).query), [SECRET], max_age_seconds=30 * 86_400) == (True, "ok")


def test_cli_dates_the_email_scoped_email_too(monkeypatch, capsysbinary):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    monkeypatch.setenv("MAILPIXEL_SIGNATURE_MAX_AGE_DAYS", "30")
    assert main([*INSTRUMENT, "--email-scoped", "{{user_id}}"]) == 0
    page = capsysbinary.readouterr().out.decode("utf-8", errors="surrogateescape")
    urls = urls_in(page)
    assert len(urls) == len(TRACKED) + 2
    for url in urls:
        pairs = [(n, v) for n, v in pairs_of(urlsplit(url).query) if not (n == "user_id" and "/click" in url)]
        assert verify(pairs, [SECRET], max_age_seconds=30 * 86_400) == (True, "ok")


def test_cli_leaves_t_out_without_a_maximum_age_unless_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    monkeypatch.delenv("MAILPIXEL_SIGNATURE_MAX_AGE_DAYS", raising=False)
    recipients = tmp_path / "list.csv"
    recipients.write_text("user_id\nu1\n", encoding="utf-8")
    assert main([*INSTRUMENT, "--recipients", str(recipients), "--jsonl"]) == 0
    page = json.loads(capsys.readouterr().out)["html"]
    assert not [u for u in urls_in(page) if "t" in click_params(u)]
    assert main([*INSTRUMENT, "--recipients", str(recipients), "--jsonl", "--with-time"]) == 0
    page = json.loads(capsys.readouterr().out)["html"]
    assert all(click_params(u)["t"].isdigit() for u in urls_in(page))


@pytest.mark.parametrize("mode", ["--jsonl", "--out-dir"])
def test_cli_refuses_a_user_id_too_long_for_the_pixel_before_writing_anything(
    tmp_path, monkeypatch, capsys, mode
):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    long_id = "u" * 300
    recipients.write_text(f"user_id,name\nu1,Ada\n{long_id},Bob\n", encoding="utf-8")
    out = tmp_path / "out"
    where = ["--jsonl"] if mode == "--jsonl" else ["--out-dir", str(out)]
    assert main([*INSTRUMENT, "--recipients", str(recipients), *where]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()  # no half-written campaign
    assert "Traceback" not in captured.err
    (message,) = captured.err.splitlines()
    assert message.startswith(f"mailpixel: {recipients}: row 2 (line 3): user_id 'uuuu")
    assert message.endswith("is longer than 256 characters or 512 bytes of UTF-8")
    assert long_id not in message  # named, not pasted whole


def test_cli_refuses_an_email_id_too_long_for_the_pixel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    args = ["instrument", "--html", str(FIXTURES / "email.html"), "--email-id", "e" * 257, "--base-url", BASE]
    assert main([*args, "--email-scoped", "{{user_id}}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.splitlines() == [
        "mailpixel: --email-id is longer than 256 characters or 512 bytes of UTF-8"
    ]


def test_cli_manifest_neutralises_formula_cells(tmp_path, monkeypatch):
    """recipients.csv goes to a spreadsheet like `opens --format csv` does: a cell that starts
    with = + - @ tab or CR gets a leading `'` (OWASP, CSV injection), as write_rows does."""
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    with recipients.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "name", "note", "=HEADER()"])
        writer.writerow(['=HYPERLINK("https://evil.example","x")', "+1", "-2", "@SUM(A1)"])
        writer.writerow(["u2", "\tTab", "\rCR", "plain"])
    out = tmp_path / "out"
    assert main([*INSTRUMENT, "--recipients", str(recipients), "--out-dir", str(out)]) == 0
    with (out / "recipients.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["user_id", "name", "note", "'=HEADER()", "file"],
        ['\'=HYPERLINK("https://evil.example","x")', "'+1", "'-2", "'@SUM(A1)", "000001.html"],
        ["u2", "'\tTab", "'\rCR", "plain", "000002.html"],
    ]
    # The emails themselves carry the IDs as given.
    email = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET)
    assert (out / "000001.html").read_bytes() == email.render(
        '=HYPERLINK("https://evil.example","x")'
    ).encode("utf-8", errors="surrogateescape")


def test_cli_email_scoped_prints_one_email(monkeypatch, capsysbinary):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    args = ["instrument", "--html", str(FIXTURES / "email.html"), "--email-id", "e1", "--base-url", BASE]
    assert main([*args, "--email-scoped", "{{user_id}}"]) == 0
    raw = capsysbinary.readouterr().out
    assert b"Caf\xe9" in raw  # the template's invalid byte, written back as it was
    out = raw.decode("utf-8", errors="surrogateescape")
    assert out.count("scope=email") == len(TRACKED) + 1  # and the honeypot
    assert out.count("&amp;user_id={{user_id}}") == len(TRACKED) + 1


def test_cli_reads_a_csv_with_a_byte_order_mark_after_checking_it(tmp_path, monkeypatch, capsys):
    """The rows are checked in a first pass, then read again from the start: a spreadsheet's
    byte order mark is skipped both times."""
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    recipients.write_bytes("\ufeffuser_id,name\nu1,Ada\n".encode())
    assert main([*INSTRUMENT, "--recipients", str(recipients), "--jsonl"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["user_id"] == "u1"


def test_cli_names_a_row_without_a_user_id_cell(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    recipients.write_text("name,user_id\nAda,u1\nBob\n", encoding="utf-8")
    assert main([*INSTRUMENT, "--recipients", str(recipients), "--jsonl"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"mailpixel: {recipients}: row 2 (line 3): has no user_id\n"


def test_cli_checks_rows_read_from_a_pipe_as_it_goes(tmp_path, monkeypatch, capsys):
    """A pipe cannot be read twice: rows before the bad one are written, then a clean error."""
    import os
    import threading

    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    fifo = tmp_path / "list.csv"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("w", encoding="utf-8") as fh:
            fh.write("user_id\nu1\n" + "\U0001f600" * 129 + "\n")

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        assert main([*INSTRUMENT, "--recipients", str(fifo), "--jsonl"]) == 2
    finally:
        writer.join(10)
    captured = capsys.readouterr()
    assert [json.loads(line)["user_id"] for line in captured.out.splitlines()] == ["u1"]
    assert captured.err.startswith(f"mailpixel: {fifo}: row 2 (line 3): user_id '\U0001f600")
    assert "Traceback" not in captured.err


# Issue 18.1: an href is decoded as a browser decodes an attribute value (WHATWG, "character
# reference state" in an attribute), not as `html.unescape` decodes text.
ATTRIBUTE_VALUES = [
    ("?a=1&currency=EUR", "?a=1&currency=EUR"),  # html.unescape: ¤cy=EUR
    ("?x=1&region=eu", "?x=1&region=eu"),  # ®ion
    ("?x=1&not=1", "?x=1&not=1"),  # ¬=1
    ("?x=1&timestamp=2", "?x=1&timestamp=2"),  # ×tamp
    ("?x=1&section=a", "?x=1&section=a"),  # §ion
    ("?a=1&amp;b=2", "?a=1&b=2"),
    ("?a=1&ampb=2", "?a=1&ampb=2"),  # legacy name glued to a letter: as written
    ("?a&amp=2", "?a&amp=2"),  # legacy name before `=`: as written
    ("?a=1&amp", "?a=1&"),  # at the end of the value: decoded
    ("?a=1&amp/", "?a=1&/"),  # before a character that is not `=` or alphanumeric: decoded
    ("&notit;", "&notit;"),  # the standard's example: longest match `not`, glued to `i`
    ("&notin;", "\u2209"),
    ("&not;", "\u00ac"),
    ("&copy2", "&copy2"),
    ("&copy;2", "\u00a92"),
    ("&AMP;x", "&x"),
    ("&unknown;", "&unknown;"),
    ("&#38;", "&"),
    ("&#x26", "&"),
    ("&#X26;x", "&x"),
    ("&#", "&#"),  # no digits: as written
    ("&#x;", "&#x;"),
    ("&#0;", "\ufffd"),
    ("&#x110000;", "\ufffd"),
    ("&#xD800;", "\ufffd"),
    ("&#128;", "\u20ac"),  # C1 controls mean windows-1252
    ("&#99999999999999999999999;", "\ufffd"),
    ("a & b", "a & b"),
    ("a&", "a&"),
]


@pytest.mark.parametrize(("raw", "decoded"), ATTRIBUTE_VALUES)
def test_attribute_values_are_decoded_as_browsers_do(raw, decoded):
    assert attribute_value(raw) == decoded


def test_a_raw_ampersand_in_an_href_signs_the_url_the_browser_follows():
    href = "https://shop.example/p?a=1&currency=EUR&region=eu&not=1&timestamp=2&section=x&amp;y=3"
    email = Instrumenter(
        f'<a href="{href}">x</a>', email_id="e", base_url=BASE, secret=SECRET, honeypot=False
    )
    (link,) = email.template.links
    assert (
        link.destination
        == "https://shop.example/p?a=1&currency=EUR&region=eu&not=1&timestamp=2&section=x&y=3"
    )


# Issue 18.2: hostile attribute soups. The href rewritten is the one a browser follows (the
# first real `href` attribute); every other byte stays. `tests/e2e/test_instrument_browser.py`
# checks the same tags against Chromium.
GOOD = "https://good.example/"
ATTRIBUTE_SOUPS = [
    '<a x"href="https://evil.example/" href="https://good.example/">x</a>',
    "<a x'href='https://evil.example/' href='https://good.example/'>x</a>",
    '<a href="https://good.example/" href="https://evil.example/">x</a>',
    "<a HREF='https://good.example/' href=\"https://evil.example/\">x</a>",
    '<a title=\'x href="https://evil.example/"\' href="https://good.example/">x</a>',
    '<a data-x=href="https://evil.example/" href="https://good.example/">x</a>',
    '<a =href="https://evil.example/" href="https://good.example/">x</a>',
    '<a href"="https://evil.example/" href="https://good.example/">x</a>',
    '<a <href="https://evil.example/" href="https://good.example/">x</a>',
    '<a/href="https://good.example/">x</a>',
    '<a href="https://good.example/"href="https://evil.example/">x</a>',
    '<a x=">" href="https://good.example/">x</a>',
    "<a x='\"' href=\"https://good.example/\" y='\"'>x</a>",
    '<a\thref\n=\n"https://good.example/">x</a>',
    "<a hReF=https://good.example/ href=https://evil.example/>x</a>",
    '<a x= href="https://evil.example/" href="https://good.example/">x</a>',
    '<a title=x/ href="https://good.example/">x</a>',
]


@pytest.mark.parametrize("tag", ATTRIBUTE_SOUPS)
def test_the_href_a_browser_follows_is_the_one_signed(tag):
    email = Instrumenter(tag, email_id="e", base_url=BASE, secret=SECRET, honeypot=False)
    assert [link.destination for link in email.template.links] == [GOOD]
    out = email.render("u")
    (click,) = [u for u in urls_in(out) if "/click?" in u]
    assert click_params(click)["url"] == GOOD
    # Every byte but the one href value is kept: put the original value back and compare.
    url = html.escape(email.signer.url(GOOD, "u"), quote=True)
    pixel = pixel_img(email.pixel_url("u"))
    assert out.endswith(pixel)
    restored = out[: -len(pixel)].replace(url, GOOD, 1)
    # A quoted value is rewritten inside its quotes; an unquoted one comes back double-quoted.
    assert tag in (restored, restored.replace(f'"{GOOD}"', GOOD, 1))


def test_a_tag_without_a_usable_href_is_left_alone():
    for tag in ["<a href>x</a>", "<a href=>x</a>", '<a x="href=https://evil.example/">x</a>']:
        email = Instrumenter(tag, email_id="e", base_url=BASE, secret=SECRET)
        assert email.template.links == [] and email.render("u") == tag + pixel_img(email.pixel_url("u"))


# Links /click would refuse: left alone, with a warning naming them; plain skips are silent.
REFUSED = [
    ("https://bad.example\\path", "backslash"),
    ("https://user@bad.example/", "userinfo"),
    ("https://bad.example/a b", "whitespace_or_control"),
    ("https://%62ad.example/", "host_escape"),
    ("http:///no-host", "no_host"),
]


@pytest.mark.parametrize(("href", "reason"), REFUSED)
def test_links_click_would_refuse_are_left_alone_with_a_warning(href, reason):
    source = f'<p>\n<a href="{href}">x</a>\n<a href="https://ok.example/">ok</a></p>'
    email = Instrumenter(source, email_id="e", base_url=BASE, secret=SECRET, honeypot=False)
    assert [link.destination for link in email.template.links] == ["https://ok.example/"]
    assert email.warnings == [f"line 2: link {href!r} left alone: /click would refuse it ({reason})"]
    assert f'href="{href}"' in email.render("u")


def test_plain_skips_are_silent():
    email = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET)
    assert email.warnings == []


def test_cli_prints_the_warnings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    page = tmp_path / "e.html"
    page.write_text('<body><a href="https://user@bad.example/">x</a><a href="mailto:a@b">m</a></body>')
    recipients = tmp_path / "list.csv"
    recipients.write_text("user_id\nu1\n", encoding="utf-8")
    args = ["instrument", "--html", str(page), "--email-id", "e1", "--base-url", BASE]
    assert main([*args, "--recipients", str(recipients), "--jsonl"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "mailpixel: warning: line 1: link 'https://user@bad.example/' left alone: "
        "/click would refuse it (userinfo)"
    )
    assert len(err) == 2 and err[1].startswith("mailpixel: e1: 1 recipients")


# The honeypot (issue 17.1): one signed link per recipient, hidden, with `hp=1`.
NEWSLETTER = (FIXTURES / "newsletter.html").read_text(encoding="utf-8")
HONEYPOT_BLOCK = re.compile(r'<div aria-hidden="true" style="[^"]*"><a href="([^"]*)"[^>]*></a></div>')


def test_the_honeypot_is_one_signed_hidden_link_and_the_only_difference():
    with_it, without = (
        Instrumenter(
            NEWSLETTER, email_id="dec", base_url=BASE, secret=SECRET, t=1_767_225_600, honeypot=hp
        ).render("ada")
        for hp in (True, False)
    )
    (block,) = HONEYPOT_BLOCK.finditer(with_it)
    assert with_it.replace(block.group(0), "") == without
    assert with_it.index(block.group(0)) < with_it.index("<img") < with_it.index("</body>")
    assert 'tabindex="-1" aria-hidden="true"' in block.group(0)
    assert "display:none" in block.group(0) and "mso-hide:all" in block.group(0)
    url = html.unescape(block.group(1))
    pairs = pairs_of(urlsplit(url).query)
    assert verify(pairs, [SECRET]) == (True, "ok")
    params = dict(pairs)
    assert (params["hp"], params["user_id"], params["email_id"], params["t"]) == (
        "1",
        "ada",
        "dec",
        "1767225600",
    )
    # The destination is the email's first link; the signature is `sign` over the same
    # parameters plus hp=1, as the /click side builds them.
    assert params["url"].startswith("https://www.plantshop.example/guides/winter-care?")
    unsigned = {k: v for k, v in params.items() if k != "sig"}
    assert params["sig"] == sign(unsigned, SECRET)


def test_the_honeypot_signer_matches_sign_with_hp_added():
    signer = ClickSigner(BASE, "dec", SECRET, None, scoped=False)
    plain = dict(pairs_of(urlsplit(signer.url("https://a.example/", "ada")).query))
    trap = dict(pairs_of(urlsplit(signer.url("https://a.example/", "ada", honeypot=True)).query))
    plain.pop("sig")
    assert trap.pop("sig") == sign({**plain, "hp": "1"}, SECRET)
    assert trap == {**plain, "hp": "1"}


def test_email_scoped_honeypot_leaves_the_user_to_the_merge_tag():
    email = Instrumenter(NEWSLETTER, email_id="dec", base_url=BASE, secret=SECRET, email_scoped=True)
    (block,) = HONEYPOT_BLOCK.finditer(email.render("{{id}}"))
    url = html.unescape(block.group(1))
    assert url.endswith("&user_id={{id}}")
    pairs = [(n, v) for n, v in pairs_of(urlsplit(url).query) if n != "user_id"]
    assert ("hp", "1") in pairs and verify(pairs, [SECRET]) == (True, "ok")


def test_no_honeypot_without_links_or_in_a_short_email():
    """A short HTML part with an image is scored by its length by SpamAssassin
    (HTML_IMAGE_ONLY_*): the honeypot goes only into emails longer than that."""
    no_links = "<body>" + "<p>words</p>" * 400 + "</body>"
    assert not HONEYPOT_BLOCK.search(
        Instrumenter(no_links, email_id="e", base_url=BASE, secret=SECRET).render("u")
    )
    short = '<body><p>Hi</p><a href="https://a.example/">a</a></body>'
    email = Instrumenter(short, email_id="e", base_url=BASE, secret=SECRET)
    assert not email.rendered("u").honeypot and not HONEYPOT_BLOCK.search(email.render("u"))
    padded = short.replace("<p>Hi</p>", "<p>Hi</p>" * 400)
    assert Instrumenter(padded, email_id="e", base_url=BASE, secret=SECRET).rendered("u").honeypot


# Consent per recipient (issue 17.6) and the summary (17.5).
def test_consent_per_recipient(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    recipients.write_text("user_id,tracking\nu1,all\nu2,Clicks\nu3,none\nu4, ALL \n", encoding="utf-8")
    out = tmp_path / "out"
    assert main([*INSTRUMENT, "--recipients", str(recipients), "--out-dir", str(out)]) == 0
    pages = [(out / f"00000{n}.html").read_bytes() for n in range(1, 5)]
    email = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET)
    assert pages[0] == email.render("u1").encode("utf-8", errors="surrogateescape")
    assert b"/pixel?" not in pages[1] and pages[1].count(b"/click?") == len(TRACKED) + 1
    assert pages[1] == email.render("u2", "clicks").encode("utf-8", errors="surrogateescape")
    assert pages[2] == SOURCE  # the email as written, byte for byte
    assert b"/pixel?" in pages[3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {
        "email_id": "e1",
        "recipients": 4,
        "tracked_opens": 2,
        "tracked_clicks": 3,
        "untracked": 1,
        "honeypots": 3,
        "over_gmail_clip": 0,
        "warnings": [],
    }
    assert capsys.readouterr().err == (
        "mailpixel: e1: 4 recipients: 2 tracked for opens (pixel), 3 for clicks (links), 1 untracked; "
        "honeypot in 3\n"
    )


def test_consent_column_named_by_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    recipients.write_text("user_id,tracking,pixel_ok\nu1,none,clicks\n", encoding="utf-8")
    assert (
        main([*INSTRUMENT, "--recipients", str(recipients), "--jsonl", "--consent-column", "pixel_ok"]) == 0
    )
    page = json.loads(capsys.readouterr().out)["html"]
    assert "/click?" in page and "/pixel?" not in page
    assert main([*INSTRUMENT, "--recipients", str(recipients), "--jsonl", "--consent-column", "opt"]) == 2
    assert capsys.readouterr().err == "mailpixel: the recipients CSV has no opt column (--consent-column)\n"


@pytest.mark.parametrize("value", ["yes", "", "al"])
def test_an_unknown_consent_value_names_its_row_before_anything_is_written(
    tmp_path, monkeypatch, capsys, value
):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    recipients.write_text(f"user_id,tracking\nu1,all\nu2,{value}\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main([*INSTRUMENT, "--recipients", str(recipients), "--out-dir", str(out)]) == 2
    assert not out.exists()
    assert capsys.readouterr().err == (
        f"mailpixel: {recipients}: row 2 (line 3): tracking {value!r} ({len(value)} characters) "
        "is not one of all, clicks, none\n"
    )


def test_instrument_rows_returns_the_counts():
    from mailpixel.ops.instrument_cli import InstrumentSummary, instrument_rows

    email = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET)
    written: list[tuple[int, str]] = []
    rows = [({"user_id": "a"}, "all"), ({"user_id": "b"}, "none"), ({"user_id": "c"}, "clicks")]
    summary = instrument_rows(email, rows, lambda n, row, page: written.append((n, row["user_id"])), "e1")
    assert summary == InstrumentSummary(
        email_id="e1", recipients=3, tracked_opens=1, tracked_clicks=2, untracked=1, honeypots=2
    )
    assert written == [(1, "a"), (2, "b"), (3, "c")]


# Pixel placement and Gmail's clipping (issue 17.8).
def test_pixel_at_the_top_goes_right_after_the_body_start_tag():
    email = Instrumenter(
        TEXT, email_id="e1", base_url=BASE, secret=SECRET, pixel_position="top", honeypot=False
    )
    out = email.render("u")
    pixel = pixel_img(email.pixel_url("u"))
    assert out.index(pixel) == out.index('<BODY style="margin:0">') + len('<BODY style="margin:0">')
    bottom = Instrumenter(TEXT, email_id="e1", base_url=BASE, secret=SECRET, honeypot=False).render("u")
    assert out.replace(pixel, "") == bottom.replace(pixel, "")


def test_pixel_at_the_top_without_a_body_goes_at_the_end_with_a_warning():
    email = Instrumenter(
        '<p><a href="https://x.example/">x</a></p>',
        email_id="e",
        base_url=BASE,
        secret=None,
        pixel_position="top",
    )
    assert email.render("u").endswith(pixel_img(email.pixel_url("u")))
    assert email.warnings == ["no <body> start tag: the pixel goes at the end"]


def test_cli_warns_per_recipient_over_gmails_clipping_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    big = tmp_path / "big.html"
    filler = "<p>" + "x" * 100 + "</p>\n"
    # Just under the limit before instrumenting: the pixel and the links push it over.
    body = '<a href="https://x.example/">x</a>'
    big.write_text(
        "<html><body>" + body + filler * (101_500 // len(filler)) + "</body></html>", encoding="utf-8"
    )
    recipients = tmp_path / "list.csv"
    recipients.write_text("user_id,tracking\nu1,all\nu2,none\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["instrument", "--html", str(big), "--email-id", "e1", "--base-url", BASE]
    assert main([*args, "--recipients", str(recipients), "--out-dir", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    size = (out / "000001.html").stat().st_size
    assert size > 102_000 > (out / "000002.html").stat().st_size
    assert err == [
        f"mailpixel: warning: row 1 (user_id 'u1' (2 characters)): {size:,} bytes, "
        "over Gmail's clipping size "
        "(102,000): Gmail clips it; the pixel at the bottom may never load (--pixel-position top)",
        "mailpixel: e1: 2 recipients: 1 tracked for opens (pixel), 1 for clicks (links), 1 untracked; "
        "honeypot in 1",
    ]
    assert json.loads((out / "summary.json").read_text())["over_gmail_clip"] == 1
    assert (
        main([*args, "--recipients", str(recipients), "--out-dir", str(out), "--pixel-position", "top"]) == 0
    )
    assert "never load" not in capsys.readouterr().err
    page = (out / "000001.html").read_text()
    assert page.index("/pixel?") < page.index("/click?")


def test_cli_no_honeypot(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", SECRET)
    recipients = tmp_path / "list.csv"
    recipients.write_text("user_id\nu1\n", encoding="utf-8")
    assert main([*INSTRUMENT, "--recipients", str(recipients), "--jsonl", "--no-honeypot"]) == 0
    page = json.loads(capsys.readouterr().out)["html"]
    assert "hp=1" not in page and page == Instrumenter(
        TEXT, email_id="e1", base_url=BASE, secret=SECRET, honeypot=False
    ).render("u1")


# `x=="'>"`: the standard reads an unquoted value `="'` and ends the tag at the first `>`;
# Python's tolerant parser takes `==` as one `=` and a quoted value, so it sees an href the
# browser never does. Where the two disagree on the tag's end, the link is left alone, with a
# warning (Chromium agrees: tests/e2e/test_instrument_browser.py).
SPLIT_TAG = '<a x=="\'>" href="https://good.example/">t</a>'


def test_a_tag_the_parser_and_browsers_end_differently_is_left_alone_with_a_warning():
    email = Instrumenter(SPLIT_TAG, email_id="e", base_url=BASE, secret=SECRET, honeypot=False)
    assert email.template.links == []
    assert email.warnings == ["line 1: <a> left alone: browsers may read this tag differently"]
    assert email.render("u") == SPLIT_TAG + pixel_img(email.pixel_url("u"))
