"""Signed pixel URLs through the real handler: what it stores for each URL, and secrets from SSM."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from mailpixel.aws import _client
from mailpixel.config import ConfigError
from mailpixel.ops import cli
from mailpixel.ops.local.stack import free_port
from mailpixel.pixel.app import EXTENSION, create_app
from mailpixel.secrets import load_signing_secrets
from mailpixel.signing import make_url, sign
from tests.conftest import all_items, http_api_event
from tests.signed_urls import NEW, OLD, pairs_of, url_query


def replace_param(query: str, name: str, value: str) -> str:
    return "&".join(f"{name}={value}" if part.split("=")[0] == name else part for part in query.split("&"))


@contextmanager
def app_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the pixel function's loggers (`mailpixel.pixel.*`), whatever their handlers are."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("mailpixel.pixel")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def assert_gif(response: dict[str, Any]) -> None:
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "image/gif"
    assert base64.b64decode(response["body"]).startswith(b"GIF89a")


# The algorithm and its vectors (docs/tracking/signing.md quotes the first one).


# The real handler with secrets configured.


@pytest.fixture
def signing_env(monkeypatch):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", f"{NEW}, {OLD}")
    monkeypatch.setenv("MAILPIXEL_SIGNATURE_MAX_AGE_DAYS", "30")


@pytest.fixture
def signed_handler(signing_env, lambda_handler):
    return lambda_handler


def handler_metrics() -> dict[str, int]:
    import sys

    return sys.modules["handler"].get_app().extensions[EXTENSION].metrics.snapshot()  # type: ignore[no-any-return]


def test_signed_url_is_stored_with_signed_true(signed_handler, ddb, table):
    query = url_query(make_url("http://h", "e1", "u1", NEW, t=int(time.time())))
    assert_gif(signed_handler(http_api_event(query), None))
    (item,) = all_items(ddb, table)
    assert (item["email_id"], item["user_id"], item["signed"]) == ("e1", "u1", True)


def test_url_signed_with_the_old_secret_still_records(signed_handler, ddb, table):
    old = make_url("http://h", "e1", "u1", OLD, t=int(time.time()))
    assert_gif(signed_handler(http_api_event(url_query(old)), None))
    assert [i["signed"] for i in all_items(ddb, table)] == [True]


def test_with_a_maximum_age_an_undated_or_future_url_is_refused(signed_handler, ddb, table):
    """Issue 11, item 9: without `t`, or with `t` in milliseconds, a URL would never expire."""
    undated = make_url("http://h", "e1", "u1", NEW)
    millis = make_url("http://h", "e1", "u1", NEW, t=int(time.time() * 1000))
    for url in (undated, millis):
        assert_gif(signed_handler(http_api_event(url_query(url)), None))
    assert all_items(ddb, table) == []
    assert handler_metrics().get("pixel_t_missing") == 1 and handler_metrics().get("pixel_t_future") == 1


@pytest.mark.parametrize(
    ("name", "value"), [("email_id", "e2"), ("user_id", "u2"), ("t", "+1")], ids=["email", "user", "t"]
)
def test_tampered_parameter_gets_the_gif_and_stores_nothing(signed_handler, ddb, table, name, value):
    issued = int(time.time())
    query = url_query(make_url("http://h", "e1", "u1", NEW, t=issued))
    value = str(issued + 1) if value == "+1" else value
    with app_log() as records:
        assert_gif(signed_handler(http_api_event(replace_param(query, name, value)), None))
    assert all_items(ddb, table) == []
    assert handler_metrics().get("pixel_sig_invalid") == 1
    rejected = [r for r in records if r.getMessage() == "pixel_signature_rejected"]
    assert [r.reason for r in rejected] == ["sig_invalid"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda q, sig: q.replace(f"&sig={sig}", ""), "sig_missing"),
        (lambda q, sig: q.replace(sig, sig[:16]), "sig_invalid"),
        (lambda q, sig: q.replace(sig, sign(dict(pairs_of(q)), "someone-else")), "sig_invalid"),
    ],
    ids=["unsigned", "truncated", "wrong-key"],
)
def test_bad_signatures_get_the_gif_and_store_nothing(signed_handler, ddb, table, mangle, reason):
    query = url_query(make_url("http://h", "e1", "u1", NEW))
    sig = dict(pairs_of(query))["sig"]
    assert_gif(signed_handler(http_api_event(mangle(query, sig)), None))
    assert all_items(ddb, table) == []
    assert handler_metrics().get(f"pixel_{reason}") == 1


def test_expired_url_gets_the_gif_and_stores_nothing(signed_handler, ddb, table):
    query = url_query(make_url("http://h", "e1", "u1", NEW, t=int(time.time()) - 31 * 86_400))
    assert_gif(signed_handler(http_api_event(query), None))
    assert all_items(ddb, table) == []
    assert handler_metrics().get("pixel_sig_expired") == 1


def test_replayed_url_records_one_open_per_request(signed_handler, ddb, table):
    """A replayed URL is a real re-open as far as the pixel can tell: each request is an open.

    The signature proves who made the URL, not how often it is fetched; the same request
    retried by API Gateway (same request id) still writes once.
    """
    query = url_query(make_url("http://h", "e1", "u1", NEW, t=int(time.time())))
    for request_id in ("req-1", "req-2", "req-2"):
        assert_gif(signed_handler(http_api_event(query, request_id=request_id), None))
    items = all_items(ddb, table)
    assert sorted(i["request_id"] for i in items) == ["req-1", "req-2"]
    assert all(i["signed"] is True for i in items)


# No secrets: local development.


def test_without_secrets_unsigned_urls_are_stored_as_unsigned(monkeypatch, request, ddb, table):
    monkeypatch.delenv("MAILPIXEL_SIGNING_SECRETS", raising=False)
    with app_log() as records:
        handler = request.getfixturevalue("lambda_handler")
        assert_gif(handler(http_api_event("email_id=e1&user_id=u1"), None))  # builds the app
    assert [r.levelno for r in records if r.getMessage() == "signing_disabled"] == [logging.WARNING]
    assert [(i["email_id"], i["signed"]) for i in all_items(ddb, table)] == [("e1", False)]


def test_no_warning_when_secrets_are_configured(settings, table):
    with app_log() as records:
        create_app(settings.with_overrides(signing_secrets=(NEW,)))
    assert not [r for r in records if r.getMessage() == "signing_disabled"]


# `mailpixel url`.


def test_cli_url_works_against_the_app_unchanged(settings, table, ddb, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", f"{NEW},{OLD}")
    monkeypatch.setenv("MAILPIXEL_BASE_URL", "http://127.0.0.1:5000")
    assert cli.main(["url", "--email-id", "news/1", "--user-id", "reader 7"]) == 0
    out = capsys.readouterr()
    url, img = out.out.splitlines()
    assert out.err == ""
    assert url.startswith("http://127.0.0.1:5000/pixel?email_id=news%2F1&user_id=reader%207&sig=")
    assert img == (
        f'<img src="{url.replace("&", "&amp;")}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;" />'
    )
    client = create_app(settings.with_overrides(signing_secrets=(NEW, OLD))).test_client()
    parts = urlsplit(url)
    assert client.get(f"{parts.path}?{parts.query}").status_code == 200
    assert [(i["email_id"], i["user_id"], i["signed"]) for i in all_items(ddb, table)] == [
        ("news/1", "reader 7", True)
    ]


# Secrets from SSM Parameter Store, against a fake SSM endpoint on 127.0.0.1.


class FakeSsm(BaseHTTPRequestHandler):
    parameters: dict[str, str] = {}
    requests: list[dict[str, Any]] = []
    # Answer ThrottlingException, as SSM does above about 40 GetParameter a second.
    throttling = False

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"target": self.headers["X-Amz-Target"], **body})
        payload: dict[str, Any]
        if self.throttling:
            status, payload = 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        elif body["Name"] in self.parameters:
            status = 200
            payload = {
                "Parameter": {
                    "Name": body["Name"],
                    "Type": "SecureString",
                    "Value": self.parameters[body["Name"]],
                }
            }
        else:
            status, payload = 400, {"__type": "ParameterNotFound", "message": body["Name"]}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_ssm(settings):
    FakeSsm.parameters = {
        "/mailpixel/test/signing-secrets": f" {NEW} ,{OLD},",
        "/mailpixel/test/empty": " , ",
    }
    FakeSsm.requests = []
    server = HTTPServer(("127.0.0.1", free_port()), FakeSsm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield _client("ssm", settings, endpoint_url=f"http://127.0.0.1:{server.server_port}")
    server.shutdown()
    server.server_close()


def test_secrets_from_ssm_parameter(settings, fake_ssm):
    named = settings.with_overrides(signing_secrets_parameter="/mailpixel/test/signing-secrets")
    assert load_signing_secrets(named, fake_ssm) == (NEW, OLD)
    assert FakeSsm.requests == [
        {
            "target": "AmazonSSM.GetParameter",
            "Name": "/mailpixel/test/signing-secrets",
            "WithDecryption": True,
        }
    ]


def test_missing_or_empty_ssm_parameter_fails_loudly(settings, fake_ssm):
    with pytest.raises(ConfigError, match="holds no signing secret"):
        load_signing_secrets(
            settings.with_overrides(signing_secrets_parameter="/mailpixel/test/empty"), fake_ssm
        )
    with pytest.raises(ClientError, match="ParameterNotFound"):
        load_signing_secrets(settings.with_overrides(signing_secrets_parameter="/nope"), fake_ssm)
    with pytest.raises(ConfigError, match="not set"):
        load_signing_secrets(settings, fake_ssm)


@pytest.fixture
def ssm_env(fake_ssm, monkeypatch):
    """Point botocore's own SSM endpoint setting at the fake server, as create_app reads it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", fake_ssm.meta.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


def test_app_reads_secrets_from_ssm_at_start(settings, table, ddb, ssm_env):

    app = create_app(settings.with_overrides(signing_secrets_parameter="/mailpixel/test/signing-secrets"))
    client = app.test_client()
    assert client.get("/pixel?email_id=e&user_id=u").status_code == 200
    assert all_items(ddb, table) == []  # unsigned: refused, since secrets were loaded
    client.get(make_url("http://x", email_id="e", user_id="u", secret=OLD).split("http://x", 1)[1])
    assert [i["signed"] for i in all_items(ddb, table)] == [True]


def test_unreadable_parameter_keeps_the_pixel_answering_and_fails_closed(
    settings, table, ddb, ssm_env, caplog
):
    """Answered, never stored as it is: quarantined until the secrets load (issue 11)."""
    with caplog.at_level(logging.ERROR, logger="mailpixel"):
        app = create_app(settings.with_overrides(signing_secrets_parameter="/nope"))
    assert any(r.getMessage() == "signing_secrets_unavailable" for r in caplog.records)
    response = app.test_client().get("/pixel?email_id=e&user_id=u")
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert all_items(ddb, table) == []
    kept = (Path(settings.data_dir) / "fallback" / "pending.jsonl").read_text().splitlines()
    assert [json.loads(line)["unverified"] for line in kept] == [[["email_id", "e"], ["user_id", "u"]]]
