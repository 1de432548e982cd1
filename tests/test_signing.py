"""Signed pixel URLs: the algorithm, its test vectors, and what the real handler stores for each URL."""

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

from mailpixel import cli
from mailpixel.app import EXTENSION, create_app
from mailpixel.aws import _client
from mailpixel.config import ConfigError
from mailpixel.local import free_port
from mailpixel.secrets import load_signing_secrets
from mailpixel.signing import SIG_LENGTH, canonical, make_url, sign, verify
from mailpixel.validation import query_params
from tests.conftest import all_items, http_api_event

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "signing_vectors.json").read_text())["vectors"]
NEW, OLD = "new-secret-2026", "old-secret-2025"
NOW = 1_795_528_140  # the fixture event's arrival time, in seconds


def url_query(url: str) -> str:
    return urlsplit(url).query


def pairs_of(query: str) -> list[tuple[str, str]]:
    """Decode the way the pixel does, so these checks see what the handler sees."""
    return [(name, value) for name, values in query_params(query.encode()).items() for value in values]


def replace_param(query: str, name: str, value: str) -> str:
    return "&".join(f"{name}={value}" if part.split("=")[0] == name else part for part in query.split("&"))


@contextmanager
def app_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the `mailpixel.app` logger, whatever its handlers and propagation are."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("mailpixel.app")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def assert_gif(response: dict[str, Any]) -> None:
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "image/gif"
    assert base64.b64decode(response["body"]).startswith(b"GIF89a")


# The algorithm and its vectors (the README quotes the first one).


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
    assert verify(undated, [NEW], max_age_seconds=30 * day, now=NOW) == (True, "ok")
    assert verify(bad_t, [NEW], max_age_seconds=30 * day, now=NOW) == (False, "t_invalid")


def test_make_url_without_secret_is_unsigned_and_keeps_pixel_suffix():
    assert make_url("http://h:5000/", "e1", "u1", None) == "http://h:5000/pixel?email_id=e1&user_id=u1"
    assert make_url("https://x/prod/pixel", "e1", "u1", None) == "https://x/prod/pixel?email_id=e1&user_id=u1"


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

    return sys.modules["handler"].app.extensions[EXTENSION].metrics.snapshot()  # type: ignore[no-any-return]


def test_signed_url_is_stored_with_signed_true(signed_handler, ddb, table):
    query = url_query(make_url("http://h", "e1", "u1", NEW, t=int(time.time())))
    assert_gif(signed_handler(http_api_event(query), None))
    (item,) = all_items(ddb, table)
    assert (item["email_id"], item["user_id"], item["signed"]) == ("e1", "u1", True)


def test_url_signed_with_the_old_secret_still_records(signed_handler, ddb, table):
    assert_gif(signed_handler(http_api_event(url_query(make_url("http://h", "e1", "u1", OLD))), None))
    assert [i["signed"] for i in all_items(ddb, table)] == [True]


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
    query = url_query(make_url("http://h", "e1", "u1", NEW))
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


# Secrets from SSM Parameter Store, against a fake SSM endpoint on 127.0.0.1.


class FakeSsm(BaseHTTPRequestHandler):
    parameters: dict[str, str] = {}
    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"target": self.headers["X-Amz-Target"], **body})
        if body["Name"] in self.parameters:
            status = 200
            payload: dict[str, Any] = {
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


def test_unreadable_parameter_keeps_the_pixel_answering_unsigned(settings, table, ddb, ssm_env, caplog):

    with caplog.at_level(logging.ERROR, logger="mailpixel"):
        app = create_app(settings.with_overrides(signing_secrets_parameter="/nope"))
    assert any(r.getMessage() == "signing_secrets_unavailable" for r in caplog.records)
    response = app.test_client().get("/pixel?email_id=e&user_id=u")
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert [i["signed"] for i in all_items(ddb, table)] == [False]
