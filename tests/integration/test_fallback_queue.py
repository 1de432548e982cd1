"""The AWS fallback path: pixel → SQS (when DynamoDB fails) → drain function → table.

SQS is moto's standalone server on 127.0.0.1: a real HTTP endpoint that boto3 talks to over
a socket, as DynamoDB Local is for DynamoDB. Nothing in boto3 is patched.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mailpixel.aws import sqs_client
from mailpixel.config import Settings
from mailpixel.drain.handler import drain_records
from mailpixel.ops.cli import main
from mailpixel.ops.local.stack import free_port
from mailpixel.pixel.app import create_app
from tests.conftest import all_items
from tests.pixel_asserts import assert_gif_bytes


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def queue(settings: Settings, sqs_endpoint: str, request: pytest.FixtureRequest) -> tuple[Any, str]:
    client = sqs_client(settings.with_overrides(sqs_endpoint_url=sqs_endpoint))
    url = client.create_queue(
        QueueName=f"fallback-{request.node.name[:40].replace('[', '-').replace(']', '')}"
    )["QueueUrl"]
    return client, url


def receive_all(client: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        batch = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not batch:
            return messages
        messages += batch


def lambda_sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
    }


def test_failed_write_goes_to_the_queue_and_the_drain_stores_it(
    settings, table, ddb, queue, sqs_endpoint, lambda_handler
):
    client, url = queue
    broken = settings.with_overrides(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        write_budget_seconds=0.3,
        fallback_queue_url=url,
        sqs_endpoint_url=sqs_endpoint,
    )
    pixel_client = create_app(broken).test_client()
    for n in range(3):
        response = pixel_client.get(f"/pixel?email_id=q{n}&user_id=u")
        assert response.status_code == 200
        assert_gif_bytes(response.data)
    assert all_items(ddb, table) == []
    messages = receive_all(client, url)
    assert len(messages) == 3

    handler_module = sys.modules["handler"]
    result = handler_module.drain(lambda_sqs_event(messages), None)
    assert result == {"batchItemFailures": []}
    assert sorted(i["email_id"] for i in all_items(ddb, table)) == ["q0", "q1", "q2"]

    # SQS delivers at least once: the same batch again changes nothing.
    assert handler_module.drain(lambda_sqs_event(messages), None) == {"batchItemFailures": []}
    assert len(all_items(ddb, table)) == 3


def test_poison_message_is_reported_alone(store, ddb, table):
    good = {"email_id": "g", "opened_at": "2026-11-24T00:00:00.000Z", "request_id": "r", "expires_at": 1}
    records = [
        {"messageId": "m1", "body": json.dumps(good)},
        {"messageId": "m2", "body": "{not json"},
        {"messageId": "m3", "body": json.dumps({"email_id": "x"})},
    ]
    assert drain_records(records, store) == {
        "batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]
    }
    assert [i["email_id"] for i in all_items(ddb, table)] == ["g"]


def test_replay_drains_a_dead_letter_queue(settings, table, ddb, queue, sqs_endpoint, capsys, monkeypatch):
    client, url = queue
    for n in range(12):
        body = {
            "email_id": "dlq",
            "opened_at": f"2026-11-24T00:00:{n:02d}.000Z",
            "request_id": f"r{n}",
            "expires_at": 1,
        }
        client.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    client.send_message(QueueUrl=url, MessageBody="garbage")
    monkeypatch.setenv("SQS_ENDPOINT_URL", sqs_endpoint)
    code = main(
        ["replay", "--queue-url", url, "--endpoint-url", settings.endpoint_url, "--table", settings.table]
    )
    result = json.loads(capsys.readouterr().out)
    assert (code, result["stored"], result["unreadable"]) == (0, 12, 1)
    assert len(all_items(ddb, table)) == 12
