"""Webhook deliveries against real receivers on 127.0.0.1 that misbehave: redirects (never
followed, a failed delivery), answers that are not HTTP (a failed delivery, never a failed
enrichment), a slow receiver (the batch deadline: delivered events are not sent again, the
unsent ones go back alone), every attempt logged; and which clicks may become webhooks."""

from __future__ import annotations

import contextlib
import importlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from mailpixel.config import Settings
from mailpixel.enrich.clicks import build_click_handler
from mailpixel.enrich.webhooks import DirectOutbox, WebhookProducer, webhook_hooks, webhooks_status
from mailpixel.model.webhooks import EVENT_ID_HEADER, click_payload, post
from mailpixel.ops.local.stream_poller import StreamPoller
from mailpixel.pixel.app import create_app
from mailpixel.signing import ClickSigner, make_click_url
from mailpixel.webhooks.handler import deliver_records
from tests.app_logs import app_log_to
from tests.integration.test_fallback_queue import sqs_endpoint  # noqa: F401 - the moto server fixture
from tests.integration.test_webhooks import CHROME, SECRET, Receiver, queues, receive, receiver  # noqa: F401
from tests.loopback import LoopbackServer
from tests.signed_urls import NEW

REDIRECTS = [301, 302, 303, 307, 308]
BODY = b'{"id":"click_r","type":"human_click"}'


class Garbage:
    """A TCP server that is not HTTP: it answers each connection with `answer` and closes, or
    resets the connection (`answer` None). Counts the connections."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer, self.connections = answer, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.recv(65536)
                if self.answer is None:  # RST instead of FIN: "connection reset by peer"
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    conn.sendall(self.answer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self.sock.close()
        self.thread.join(timeout=5)


GARBAGE = {
    "bad_status_line": b"garbage\r\n\r\n",
    "not_http_at_all": b"\x00\xff" * 20,
    "empty_answer": b"",
    "reset": None,
    "bad_status_code": b"HTTP/1.1 abc OK\r\n\r\n",
}


@pytest.fixture(params=sorted(GARBAGE))
def garbage(request: pytest.FixtureRequest) -> Iterator[Garbage]:
    server = Garbage(GARBAGE[request.param])
    yield server
    server.close()


def redirect(hook: str, code: int) -> None:
    """The receiver at `hook` answers its next three deliveries with `code`, to its /elsewhere."""
    Receiver.script = [(code, hook.replace("/hook", "/elsewhere"))] * 3


def only_hook_was_reached() -> bool:
    return all((r["method"], r["path"]) == ("POST", "/hook") for r in Receiver.received)


@pytest.mark.parametrize("code", REDIRECTS)
def test_a_redirect_is_a_failed_delivery_and_never_followed(receiver, code, tmp_path):  # noqa: F811
    redirect(receiver, code)
    delivery = post(receiver, SECRET, BODY, "click_r")
    assert delivery.status == code and not delivery.delivered
    # The local outbox: retried, then kept as undelivered.
    outbox = DirectOutbox(receiver, SECRET, tmp_path / "failed.jsonl", delays=(0.0,))
    outbox.put(json.loads(BODY))
    assert [json.loads(line)["id"] for line in outbox.failed.read_text().splitlines()] == ["click_r"]
    assert len(Receiver.received) == 3 and only_hook_was_reached()  # nothing reached the Location


def test_the_webhooks_function_retries_a_redirected_delivery(receiver, queues):  # noqa: F811
    client, url, _ = queues
    client.send_message(QueueUrl=url, MessageBody=BODY.decode())
    records = receive(client, url)
    redirect(receiver, 302)
    result = deliver_records(records, (receiver, SECRET), client, url, first_retry_seconds=0)
    assert result["batchItemFailures"] == [{"itemIdentifier": records[0]["messageId"]}]
    assert len(Receiver.received) == 1 and only_hook_was_reached()


def test_an_answer_that_is_not_http_is_a_failed_delivery(garbage, tmp_path):
    delivery = post(garbage.url, SECRET, BODY, "click_r", timeout=2)
    assert not delivery.delivered and delivery.status is None and delivery.error
    outbox = DirectOutbox(garbage.url, SECRET, tmp_path / "failed.jsonl", delays=(0.0, 0.0))
    outbox.put(json.loads(BODY))  # does not raise
    assert garbage.connections == 1 + 3  # the probe, then the outbox's three attempts
    assert [json.loads(line)["id"] for line in outbox.failed.read_text().splitlines()] == ["click_r"]


def click(settings: Settings, url: str) -> None:
    app = create_app(settings.with_overrides(signing_secrets=(NEW,)))
    response = app.test_client().get(
        url.removeprefix("https://px.example.com"), headers={"User-Agent": CHROME}
    )
    assert response.status_code == 302


def test_a_garbage_answering_receiver_never_fails_the_clicks_enrichment(settings, ddb, table):
    """The local stack's outbox posting to a receiver that answers garbage: the click is enriched
    and counted once, posted once per retry of the outbox, and kept in the webhooks' file, not
    in the click failures."""
    server = Garbage(b"garbage\r\n\r\n")
    try:
        # No settle window: this is about the receiver's answers (test_webhook_settle.py has the window).
        local = settings.with_overrides(
            webhook_url=server.url, webhook_secret=SECRET, signing_secrets=(NEW,), webhook_settle_seconds=0
        )
        click(local, make_click_url("https://px.example.com", "e1", "erin", "https://shop.example.com/", NEW))
        handler = build_click_handler(
            local, ddb=ddb, provider=None, before_write=webhook_hooks(local, ddb)[1]
        )
        failures = Path(local.data_dir) / "enrich" / "click-failures.jsonl"
        StreamPoller(local, handler, ddb=ddb, table=local.clicks_table, failure_log=failures).wait_idle(30)
    finally:
        server.close()
    (item,) = ddb.scan(TableName=local.clicks_table)["Items"]
    assert "enriched_at" in item and not failures.exists()
    assert server.connections == 4  # one put: the first try and its three retries, once
    kept = (Path(local.data_dir) / "webhooks" / "failed.jsonl").read_text().splitlines()
    assert [json.loads(line)["user_id"] for line in kept] == ["erin"]


def test_every_attempt_is_logged_success_after_retries_included(receiver, tmp_path):  # noqa: F811
    Receiver.script = [500, 503]
    outbox = DirectOutbox(receiver, SECRET, tmp_path / "failed.jsonl", delays=(0.0, 0.0, 0.0))
    with app_log_to(tmp_path / "log.jsonl") as log_file:
        outbox.put({"id": "click_late", "type": "human_click"})
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    attempts = [(x["message"], x["attempt"], x["status"]) for x in lines if x.get("id") == "click_late"]
    assert attempts == [
        ("webhook_attempt_failed", 1, 500),
        ("webhook_attempt_failed", 2, 503),
        ("webhook_delivered", 3, 200),
    ]
    assert not outbox.failed.exists()


def test_the_functions_log_says_when_a_retried_delivery_succeeds(receiver, queues, tmp_path):  # noqa: F811
    client, url, _ = queues
    client.send_message(QueueUrl=url, MessageBody=BODY.decode())
    Receiver.script = [500]
    with app_log_to(tmp_path / "log.jsonl") as log_file:
        for _ in range(2):
            records = receive(client, url)
            result = deliver_records(records, (receiver, SECRET), client, url, first_retry_seconds=0)
            if not result["batchItemFailures"]:
                client.delete_message(QueueUrl=url, ReceiptHandle=records[0]["receiptHandle"])
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(x["message"], x["attempt"], x["status"]) for x in lines if x.get("id") == "click_r"] == [
        ("webhook_attempt_failed", 1, 500),
        ("webhook_delivered", 2, 200),
    ]


def test_the_banner_says_whether_webhooks_are_on_and_where_they_go(settings):
    assert webhooks_status(settings).startswith("Webhooks: off")
    local = settings.with_overrides(webhook_url="http://127.0.0.1:9000/hook", webhook_secret=SECRET)
    assert webhooks_status(local).startswith("Webhooks: on, POSTed to http://127.0.0.1:9000/hook")
    assert "human clicks after a 60 s settle window" in webhooks_status(local)


class Slow(BaseHTTPRequestHandler):
    """A receiver that takes `seconds` to answer each delivery, and keeps the ids it answered."""

    seconds = 1.0
    answered: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(type(self).seconds)
        type(self).answered.append(self.headers[EVENT_ID_HEADER])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LambdaContext:
    """The one method of Lambda's context the handler reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.end = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self.end - time.monotonic()) * 1000)


def test_a_slow_receiver_gets_what_fits_before_the_deadline_and_the_rest_goes_back(
    queues,  # noqa: F811
    sqs_endpoint,  # noqa: F811
    lambda_handler,
    monkeypatch,
):
    """The deployed entry (`handler.webhooks`) with 7 s left in the invocation, a batch of 8 for
    a receiver taking 1 s each: the batch deadline (2 s before the end) leaves room for 2 or 3
    (a POST starts only with 3 s ahead of it); the rest is reported, each message alone."""
    client, url, _ = queues
    for n in range(8):
        client.send_message(QueueUrl=url, MessageBody=json.dumps({"id": f"click_{n}"}))
    records = receive(client, url) + receive(client, url)
    assert len(records) == 8
    Slow.seconds, Slow.answered = 1.0, []
    server = LoopbackServer(Slow).start()
    try:
        monkeypatch.setenv("MAILPIXEL_WEBHOOK_URL", f"{server.url}/hook")
        monkeypatch.setenv("MAILPIXEL_WEBHOOK_SECRET", SECRET)
        monkeypatch.setenv("MAILPIXEL_WEBHOOK_QUEUE_URL", url)
        monkeypatch.setenv("SQS_ENDPOINT_URL", sqs_endpoint)
        module = importlib.reload(sys.modules["handler"])  # a cold start with this environment
        context = LambdaContext(7000)
        result = module.webhooks({"Records": records}, context)
        left_ms = context.get_remaining_time_in_millis()
    finally:
        server.stop()
    assert left_ms > 1000  # done before the function's timeout, with most of the margin to spare
    reported = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    by_id = {json.loads(r["body"])["id"]: r["messageId"] for r in records}
    delivered = {by_id[event_id] for event_id in Slow.answered}
    assert 2 <= len(delivered) <= 3 and not delivered & reported  # what arrived is not sent again
    assert reported == set(by_id.values()) - delivered  # the rest goes back, each message alone


def scoped_click(user: str) -> str:
    """An email-scoped link with `user` where the ESP's merge tag would put a recipient's id."""
    return ClickSigner("https://px.example.com", "e1", NEW, None, scoped=True).url(
        "https://shop.example.com/", user
    )


class Collect:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def put(self, payload: Any) -> None:
        self.payloads.append(dict(payload))


@pytest.mark.parametrize("scoped_on", [False, True])
def test_scoped_clicks_say_so_and_are_off_unless_turned_on(settings, ddb, table, scoped_on):
    signed = settings.with_overrides(
        signing_secrets=(NEW,), webhook_scoped_clicks="on" if scoped_on else "off"
    )
    click(signed, make_click_url("https://px.example.com", "e1", "alice", "https://shop.example.com/", NEW))
    click(signed, scoped_click("mallory-forged"))
    outbox = Collect()
    producer = WebhookProducer(outbox, ddb, signed)
    handler = build_click_handler(signed, ddb=ddb, provider=None, before_write=producer.for_click)
    StreamPoller(signed, handler, ddb=ddb, table=signed.clicks_table).wait_idle()
    got = sorted((p["user_id"], p["signature_scope"]) for p in outbox.payloads)
    expected = [("alice", "user"), ("mallory-forged", "email")] if scoped_on else [("alice", "user")]
    assert got == expected


def test_unsigned_clicks_say_nothing_vouches_for_their_user():
    event = {"request_id": "r", "email_id": "e1", "user_id": "u", "signed": False}
    assert click_payload(event, {})["signature_scope"] == "unsigned"
    assert click_payload({**event, "signed": True}, {})["signature_scope"] == "user"
    assert (
        click_payload({**event, "signed": True, "signature_scope": "email"}, {})["signature_scope"] == "email"
    )
    assert (
        click_payload({k: v for k, v in event.items() if k != "signed"}, {})["signature_scope"] == "unsigned"
    )
