"""Follow-ups to the hardening issue, against DynamoDB Local and the real app: with
MAILPIXEL_SIGNATURE_MAX_AGE_DAYS set, what `mailpixel instrument` writes and the URL `make run`
prints are recorded (they carry `t`)."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import urlsplit

from mailpixel.config import Settings
from mailpixel.ops import cli
from mailpixel.pixel.app import create_app
from tests.conftest import FIXTURES, all_items
from tests.signed_urls import NEW

BASE = "https://px.example.com"
MAX_AGE_DAYS = 30


def expiring(settings: Settings) -> Settings:
    return settings.with_overrides(signing_secrets=(NEW,), signature_max_age_days=MAX_AGE_DAYS)


def fetch(app_settings: Settings, url: str) -> int:
    parts = urlsplit(url)
    response = create_app(app_settings).test_client().get(f"{parts.path}?{parts.query}")
    return int(response.status_code)


def test_instrumented_email_is_recorded_when_urls_expire(settings, ddb, table, tmp_path, monkeypatch, capsys):
    """Without `t`, every URL `instrument` wrote was refused (`t_missing`) once a maximum age was set."""
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", NEW)
    monkeypatch.setenv("MAILPIXEL_SIGNATURE_MAX_AGE_DAYS", str(MAX_AGE_DAYS))
    recipients = tmp_path / "list.csv"
    recipients.write_text("user_id\nreader-1\n", encoding="utf-8")
    args = ["instrument", "--html", str(FIXTURES / "email.html"), "--email-id", "e1", "--base-url", BASE]
    assert cli.main([*args, "--recipients", str(recipients), "--jsonl"]) == 0
    page = json.loads(capsys.readouterr().out)["html"]
    (pixel,) = [html.unescape(u) for u in re.findall(r'<img src="([^"]*/pixel\?[^"]*)"', page)]
    click = html.unescape(re.findall(r'href="(https://px\.example\.com/click\?[^"]*)"', page)[0])
    app_settings = expiring(settings)
    assert fetch(app_settings, pixel) == 200
    assert fetch(app_settings, click) == 302
    (opened,) = all_items(ddb, settings.table)
    (clicked,) = all_items(ddb, settings.clicks_table)
    assert opened["user_id"] == clicked["user_id"] == "reader-1"
    assert opened["signed"] is True and clicked["signed"] is True


def test_make_run_banner_url_is_recorded_when_urls_expire(settings, ddb, table):
    from mailpixel.ops.local.stack import sample_pixel_url

    app_settings = expiring(settings)
    url = sample_pixel_url(app_settings, "http://127.0.0.1:5000")
    assert fetch(app_settings, url) == 200
    (opened,) = all_items(ddb, settings.table)
    assert opened["email_id"] == "e1" and opened["signed"] is True and opened["issued_t"] > 0
    # Without a maximum age the banner's URL stays as it was: undated.
    assert "&t=" not in sample_pixel_url(settings.with_overrides(signing_secrets=(NEW,)), "http://x")
