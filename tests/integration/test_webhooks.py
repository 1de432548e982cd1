"""Webhooks end to end on loopback: enrichment puts events on a real SQS queue (moto's server),
the delivery handler POSTs them to a receiver on 127.0.0.1 that fails on purpose, retries,
dead-letters, and every delivery of one event carries its id and a valid signature."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mailpixel.aws import sqs_client
from mailpixel.config import Settings
from mailpixel.enrich.clicks import build_click_handler
from mailpixel.enrich.handler import build_handler
from mailpixel.enrich.webhooks import webhook_hooks
from mailpixel.model.events import RequestFacts, build_open_event
from mailpixel.model.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from mailpixel.ops.cli import main
from mailpixel.ops.local.stack import free_port
from mailpixel.ops.local.stream_poller import StreamPoller
from mailpixel.pixel.app import create_app
from mailpixel.signing import make_click_url
from mailpixel.webhooks.handler import deliver_records
from tests.integration.test_fallback_queue import sqs_endpoint  # noqa: F401 - the moto server fixture
from tests.signed_urls import NEW

SECRET = "hook-secret"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"


class Receiver(BaseHTTPRequestHandler):
    """The sender's endpoint: answers the scripted statuses in turn (then 200), keeps every request
    (a GET too: what a followed redirect would turn a delivery into). A scripted (status, URL)
    answers a redirect to URL."""

    script: list[int | tuple[int, str]] = []
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append(
            {"headers": dict(self.headers), "body": body, "method": self.command, "path": self.path}
        )
        answer = type(self).script.pop(0) if type(self).script else 200
        status, location = answer if isinstance(answer, tuple) else (answer, None)
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.script, Receiver.received = [], []
    http = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}/hook"
    http.shutdown()
    http.server_close()
    thread.join(timeout=10)


@pytest.fixture
def queues(settings: Settings, sqs_endpoint: str, request: pytest.FixtureRequest) -> tuple[Any, str, str]:  # noqa: F811
    client = sqs_client(settings.with_overrides(sqs_endpoint_url=sqs_endpoint))
    name = f"hooks-{request.node.name[:30]}-{time.monotonic_ns()}"
    dlq = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = client.create_queue(
        QueueName=name,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})},
    )["QueueUrl"]
    return client, url, dlq


@pytest.fixture
def hooked(settings: Settings, queues: tuple[Any, str, str], sqs_endpoint: str) -> Settings:  # noqa: F811
    # No settle window here: these tests are about delivery and its retries (see the settle tests).
    return settings.with_overrides(
        webhook_queue_url=queues[1], webhooks="on", sqs_endpoint_url=sqs_endpoint, webhook_settle_seconds=0
    )


def receive(client: Any, url: str) -> list[dict[str, Any]]:
    """One receive, as Lambda's SQS poller makes it, in the shape of the records Lambda passes."""
    messages = client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["ApproximateReceiveCount"]
    ).get("Messages", [])
    return [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
        }
        for m in messages
    ]


def lambda_poll(client: Any, url: str, target: tuple[str, str]) -> tuple[int, int]:
    """Deliver one receive; delete what succeeded, as Lambda does. (received, failed)."""
    records = receive(client, url)
    result = deliver_records(records, target, client, url, first_retry_seconds=0)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    for record in records:
        if record["messageId"] not in failed:
            client.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])
    return len(records), len(failed)


def click(settings: Settings, user: str, method: str = "GET") -> None:
    app = create_app(settings.with_overrides(signing_secrets=(NEW,)))
    url = make_click_url("https://px.example.com", "e1", user, "https://shop.example.com/", NEW, t=1)
    response = app.test_client().open(
        url.removeprefix("https://px.example.com"), method=method, headers={"User-Agent": CHROME}
    )
    assert response.status_code == 302


def test_human_click_is_queued_then_delivered_signed_through_failures(hooked, ddb, table, queues, receiver):
    client, url, _ = queues
    click(hooked, "person")
    click(hooked, "scanner", method="HEAD")
    handler = build_click_handler(hooked, ddb=ddb, provider=None, before_write=webhook_hooks(hooked, ddb)[1])
    StreamPoller(hooked, handler, ddb=ddb, table=hooked.clicks_table).wait_idle()

    Receiver.script = [500, 503]  # the receiver fails twice, then accepts
    polls = [lambda_poll(client, url, (receiver, SECRET)) for _ in range(4)]
    assert polls == [(1, 1), (1, 1), (1, 0), (0, 0)]
    ids = {r["headers"][EVENT_ID_HEADER] for r in Receiver.received}
    assert len(Receiver.received) == 3 and len(ids) == 1  # three deliveries, one event id: dedupe by it
    for request in Receiver.received:
        assert verify(SECRET, request["headers"][SIGNATURE_HEADER], request["body"])
    event = json.loads(Receiver.received[-1]["body"])
    assert event["type"] == "human_click" and event["user_id"] == "person" and event["id"] in ids
    assert event["signature_scope"] == "user"  # a signed, user-scoped link
    assert event["verdict"]["machine"] is False and event["client"]["name"] == "Chrome"
    assert event["url"] == "https://shop.example.com/"


def test_a_receiver_that_keeps_failing_sends_the_event_to_the_dead_letter_queue(queues, receiver):
    client, url, dlq = queues
    client.send_message(QueueUrl=url, MessageBody=json.dumps({"id": "click_x", "type": "human_click"}))
    Receiver.script = [500] * 10
    for _ in range(5):
        lambda_poll(client, url, (receiver, SECRET))
    assert len(Receiver.received) == 3  # maxReceiveCount
    (dead,) = client.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages", [])
    assert json.loads(dead["Body"])["id"] == "click_x"


def test_an_unreachable_receiver_is_retried_like_a_failing_one(queues):
    client, url, _ = queues
    client.send_message(QueueUrl=url, MessageBody=json.dumps({"id": "click_y"}))
    nowhere = (f"http://127.0.0.1:{free_port()}/hook", SECRET)
    assert lambda_poll(client, url, nowhere) == (1, 1)
    assert lambda_poll(client, url, nowhere) == (1, 1)  # visible again at once: first_retry_seconds=0


def test_first_human_open_is_queued_once_per_user(hooked, ddb, table, store, queues):
    client, url, _ = queues
    now = int(time.time() * 1000)
    for n, (user, ua) in enumerate([("u1", CHROME), ("u1", CHROME), ("u2", "python-requests/2.32")]):
        facts = RequestFacts(request_id=f"open-{n}", epoch_ms=now + n, ip="81.2.69.142", user_agent=ua)
        event = build_open_event(
            email_id="e1", user_id=user, facts=facts, retention_seconds=86_400, stored_ip="81.2.69.142"
        )
        assert store.put_event(event)
    handler = build_handler(hooked, ddb=ddb, provider=None, before_write=webhook_hooks(hooked, ddb)[0])
    StreamPoller(hooked, handler, ddb=ddb).wait_idle()
    bodies = [json.loads(r["body"]) for r in receive(client, url)]
    assert [(b["type"], b["user_id"], b["signature_scope"]) for b in bodies] == [
        ("first_human_open", "u1", "unsigned")  # stored without `signed`: nothing vouches for u1
    ]


def test_webhooks_test_command_sends_a_signed_sample(receiver, capsys):
    assert main(["webhooks", "test", "--url", receiver, "--secret", SECRET]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["delivered"] is True and result["status"] == 200
    (request,) = Receiver.received
    assert verify(SECRET, request["headers"][SIGNATURE_HEADER], request["body"])
    assert json.loads(request["body"])["test"] is True
    Receiver.script = [500]
    assert main(["webhooks", "test", "--url", receiver, "--secret", SECRET]) == 1


def test_local_direct_delivery_retries_then_keeps_what_fails(settings, receiver, tmp_path):
    from mailpixel.enrich.webhooks import DirectOutbox, outbox_for

    local = settings.with_overrides(webhook_url=receiver, webhook_secret=SECRET, webhook_settle_seconds=0)
    outbox = outbox_for(local)
    assert isinstance(outbox, DirectOutbox)
    outbox.delays = (0.0, 0.0, 0.0)
    Receiver.script = [500]
    outbox.put({"id": "click_local", "type": "human_click"})
    assert [r["headers"][EVENT_ID_HEADER] for r in Receiver.received] == ["click_local"] * 2
    Receiver.script = [500] * 4
    outbox.put({"id": "click_lost", "type": "human_click"})
    kept = [json.loads(line) for line in outbox.failed.read_text().splitlines()]
    assert [k["id"] for k in kept] == ["click_lost"]
    # With a queue configured but webhooks not turned on (AWS default), nothing is sent.
    assert outbox_for(settings.with_overrides(webhook_queue_url="https://sqs.example/q")) is None


def test_undelivered_webhooks_are_kept_for_their_owner_only(settings, monkeypatch):
    """The file holds user ids and locations: 0600 in a 0700 folder, whatever the umask, as the
    other local data files."""
    import os

    from mailpixel.enrich.webhooks import DirectOutbox, outbox_for

    local = settings.with_overrides(
        webhook_url=f"http://127.0.0.1:{free_port()}/hook", webhook_secret=SECRET, webhook_settle_seconds=0
    )
    outbox = outbox_for(local)
    assert isinstance(outbox, DirectOutbox)
    outbox.delays = ()
    previous = os.umask(0o022)
    try:
        outbox.put({"id": "click_kept", "type": "human_click", "user_id": "u1", "geo": {"city": "Paris"}})
    finally:
        os.umask(previous)
    failed = outbox.failed
    assert json.loads(failed.read_text())["user_id"] == "u1"
    assert failed.stat().st_mode & 0o777 == 0o600
    assert failed.parent.stat().st_mode & 0o777 == 0o700
