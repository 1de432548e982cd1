"""Issue 11, item 1: signing fails closed. A burst of cold starts against an SSM that throttles
(as the real one does above about 40 GetParameter a second) records nothing unverified in the
table: every open is answered and quarantined, SSM is retried with backoff (not per request),
and the quarantine is verified once the secrets load, by `mailpixel replay` and by drain."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mailpixel.drain.handler import drain_records
from mailpixel.enrich.handler import build_handler
from mailpixel.model.events import OpenEvent
from mailpixel.ops import cli
from mailpixel.ops.local.stack import free_port
from mailpixel.ops.redrive import reenrich
from mailpixel.pixel.app import create_app
from mailpixel.secrets import UNAVAILABLE, SigningKeys
from mailpixel.signing import make_url
from tests.conftest import all_items, target_args
from tests.integration.test_signing_pixel import FakeSsm
from tests.signed_urls import NEW, OLD, url_query

PARAMETER = "/mailpixel/test/signing-secrets"
COLD_STARTS = 6


@pytest.fixture
def throttling_ssm(monkeypatch):
    """The fake SSM of test_signing_pixel, throttling every GetParameter until told otherwise."""
    FakeSsm.parameters, FakeSsm.requests, FakeSsm.throttling = {PARAMETER: NEW}, [], True
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), FakeSsm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    yield FakeSsm
    FakeSsm.throttling = False
    server.shutdown()
    server.server_close()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def path_of(url: str) -> str:
    return "/pixel?" + url_query(url)


def quarantined(settings) -> list[dict[str, Any]]:
    path = Path(settings.data_dir) / "fallback" / "pending.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_cold_start_burst_against_throttled_ssm_records_nothing_unverified(
    settings, table, ddb, throttling_ssm, capsys
):
    configured = settings.with_overrides(signing_secrets_parameter=PARAMETER)
    signed = [make_url("http://h", f"e{n}", f"u{n}", NEW, t=int(time.time())) for n in range(COLD_STARTS)]
    forged = make_url("http://h", "forged", "victim", OLD)  # a secret the pixel does not hold
    unsigned = make_url("http://h", "forged", "victim", None)
    records = Records()
    logging.getLogger("mailpixel").addHandler(records)
    try:
        # A burst of cold starts, all at once, all throttled.
        apps: list[Any] = [None] * COLD_STARTS

        def cold_start(n: int) -> None:
            apps[n] = create_app(configured)

        threads = [threading.Thread(target=cold_start, args=(n,)) for n in range(COLD_STARTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clients = [app.test_client() for app in apps]
        calls_at_start = len(throttling_ssm.requests)
        for n, client in enumerate(clients):
            for url in (signed[n], forged, unsigned):
                response = client.get(path_of(url))
                assert response.status_code == 200 and response.mimetype == "image/gif"
        # Every open answered, none in the counted table: all kept aside, with what verifies them.
        assert all_items(ddb, table) == []
        kept = quarantined(settings)
        assert len(kept) == 3 * COLD_STARTS
        assert all(event["unverified"] and "signed" not in event for event in kept)
        # Later requests retry SSM after a backoff, not on every request.
        before = len(throttling_ssm.requests)
        for _ in range(20):
            clients[0].get(path_of(signed[0]))
        assert len(throttling_ssm.requests) - before <= 3 * 2  # at most two attempts, of 3 tries each
        assert UNAVAILABLE in records.messages
        metrics = apps[0].extensions["mailpixel"].metrics.snapshot()
        assert metrics[UNAVAILABLE] >= 1 and metrics["open_quarantined"] == 23
        assert calls_at_start >= COLD_STARTS  # each cold start tried

        # SSM recovers: after the backoff the next request loads the secrets and verifies.
        throttling_ssm.throttling = False
        time.sleep(1.1)
        clients[1].get(path_of(make_url("http://h", "after", "u1", NEW, t=int(time.time()))))
        clients[1].get(path_of(forged))
        assert [(i["email_id"], i["signed"]) for i in all_items(ddb, table)] == [("after", True)]
    finally:
        logging.getLogger("mailpixel").removeHandler(records)

    # The quarantine is verified by `mailpixel replay`: signed ones stored, forged ones dropped.
    capsys.readouterr()
    env_settings = ["--endpoint-url", settings.endpoint_url or "", "--table", settings.table]
    assert (
        cli.main(
            ["replay", "--file", str(Path(settings.data_dir) / "fallback" / "pending.jsonl"), *env_settings]
        )
        == 1
    )
    assert json.loads(capsys.readouterr().out)["unverified"] == 3 * COLD_STARTS + 20  # no secrets yet: kept
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MAILPIXEL_SIGNING_SECRETS", NEW)
        assert (
            cli.main(
                [
                    "replay",
                    "--file",
                    str(Path(settings.data_dir) / "fallback" / "pending.jsonl"),
                    *env_settings,
                ]
            )
            == 0
        )
    summary = json.loads(capsys.readouterr().out)
    # Each fetch is an open: the 20 repeated ones too (each its own request id).
    assert summary["stored"] == COLD_STARTS + 20 and summary["rejected"] == 2 * COLD_STARTS
    assert summary["unverified"] == 0 and quarantined(settings) == []
    items = all_items(ddb, table)
    assert {i["email_id"] for i in items} == {f"e{n}" for n in range(COLD_STARTS)} | {"after"}
    assert all(i["signed"] is True and "unverified" not in i for i in items)

    # The aggregates count exactly the verified opens.
    result = reenrich(ddb, settings.table, build_handler(settings, ddb=ddb, provider=None))
    assert result["failed"] == 0
    capsys.readouterr()
    opens = 0
    for email in [f"e{n}" for n in range(COLD_STARTS)] + ["after", "forged"]:
        assert cli.main(["stats", "--email-id", email, "--format", "json", *target_args(settings)]) == 0
        opens += json.loads(capsys.readouterr().out)["opens"]
    assert opens == COLD_STARTS + 20 + 1


def quarantined_open(url: str, request_id: str) -> OpenEvent:
    from mailpixel.signing import TIME_PARAM  # noqa: F401 - the parameters are the URL's own
    from tests.signed_urls import pairs_of

    return OpenEvent(
        email_id="e1",
        user_id="u1",
        opened_at=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        request_id=request_id,
        expires_at=2_000_000_000,
        unverified=[list(pair) for pair in pairs_of(url_query(url))],
    )


def test_drain_never_writes_an_unverified_open(settings, table, ddb, store):
    good = quarantined_open(make_url("http://h", "e1", "u1", NEW), "good")
    bad = quarantined_open(make_url("http://h", "e1", "u1", OLD), "bad")
    messages = [{"messageId": event.request_id, "body": json.dumps(event.to_json())} for event in (good, bad)]
    # No secrets in the drain function either (its SSM read failed): both wait in the queue.
    waiting = SigningKeys(settings.with_overrides(signing_secrets_parameter="/nope"), client=lambda: None)
    waiting._next_attempt = time.monotonic() + 3600  # still backing off
    assert drain_records(messages, store, waiting)["batchItemFailures"] == [
        {"itemIdentifier": "good"},
        {"itemIdentifier": "bad"},
    ]
    assert drain_records(messages, store)["batchItemFailures"] != []  # no keys at all: same
    assert all_items(ddb, table) == []
    # With the secrets: the good one is stored as signed, the forged one dropped (not retried).
    keys = SigningKeys(settings.with_overrides(signing_secrets=(NEW,)))
    assert drain_records(messages, store, keys)["batchItemFailures"] == []
    assert [(i["request_id"], i["signed"]) for i in all_items(ddb, table)] == [("good", True)]


def test_the_drain_function_counts_secrets_it_cannot_load(throttling_ssm, settings, monkeypatch):
    """The alarm-ready metric is the drain function's too, not only the pixel's: its keys are
    built with metrics by `handler._drain_keys`, the deployed entry."""
    import handler

    monkeypatch.setattr(handler, "settings", settings.with_overrides(signing_secrets_parameter=PARAMETER))
    handler._drain_keys.cache_clear()
    try:
        keys = handler._drain_keys()
        assert keys.current() is None  # SSM throttles
        assert keys._metrics is not None and keys._metrics.snapshot()[UNAVAILABLE] == 1
    finally:
        handler._drain_keys.cache_clear()
