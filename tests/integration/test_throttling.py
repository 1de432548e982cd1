"""A hot partition throttles the pixel's writes: every answered open still ends in the table
exactly once, through the fallback queue and the drain function, and the drain writes back
at its own capped pace instead of a second stampede.

DynamoDB Local never throttles, so a fault-injecting proxy on 127.0.0.1 stands in front of
it (`tests/throttling_proxy.py`) and answers a share of PutItem calls with DynamoDB's
throttling error. The opens go through the real `handler.pixel` (API Gateway events), SQS is
moto's server on loopback, the drain is the real `handler.drain`.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mailpixel.config import Settings
from tests.conftest import all_items, http_api_event
from tests.integration.test_fallback_queue import lambda_sqs_event, queue, sqs_endpoint  # noqa: F401
from tests.pixel_asserts import assert_lambda_pixel
from tests.throttling_proxy import ThrottlingProxy

OPENS = 80
SHARE = 0.6  # of PutItem calls refused while the campaign lasts
AFTER_SHARE = 0.2  # refused while the fallback drains, after the peak
DRAIN_BATCH = 10  # serverless.yml's batchSize for the drain
MAX_ATTEMPTS = 5  # the drain client's botocore attempts per write


@pytest.fixture
def proxy(dynamodb_local: Any) -> Iterator[ThrottlingProxy]:
    server = ThrottlingProxy(dynamodb_local.endpoint_url, share=SHARE).start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, proxy: ThrottlingProxy) -> Settings:
    """This test's tables, reached through the throttling proxy."""
    return settings.with_overrides(endpoint_url=proxy.url)


@pytest.fixture
def campaign_env(queue, sqs_endpoint, monkeypatch) -> None:  # noqa: F811
    """The deployed pixel's fallback: the queue (read by handler.py at import)."""
    monkeypatch.setenv("MAILPIXEL_FALLBACK_QUEUE_URL", queue[1])
    monkeypatch.setenv("SQS_ENDPOINT_URL", sqs_endpoint)
    monkeypatch.setenv("MAILPIXEL_WRITE_BUDGET", "0.5")


@pytest.fixture
def gateway(campaign_env: None, lambda_handler: Any) -> Any:
    return lambda_handler


def receive(client: Any, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=DRAIN_BATCH, VisibilityTimeout=0
    ).get("Messages", [])
    return found


def test_throttled_opens_end_in_the_table_exactly_once(settings, table, ddb, queue, proxy, gateway):  # noqa: F811
    client, url = queue

    def open_pixel(n: int) -> dict[str, Any]:
        event = http_api_event({"email_id": "campaign", "user_id": f"u{n}"}, request_id=f"req-{n:04d}")
        answer: dict[str, Any] = gateway(event, None)
        return answer

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(open_pixel, range(OPENS)))
    for answer in answers:
        assert_lambda_pixel(answer)
    in_table = len(all_items(ddb, table))
    assert proxy.refused["PutItem"] > 0 and in_table < OPENS, "the proxy throttled nothing"

    # The drain, as Lambda runs it at maximumConcurrency: one batch at a time, with throttling
    # still going on; what it reports stays in the queue and comes back on a later receive.
    proxy.share = AFTER_SHARE
    handler_module = sys.modules["handler"]
    before = proxy.forwarded["PutItem"] + proxy.refused["PutItem"]
    drained = reported = 0
    for _ in range(200):
        messages = receive(client, url)
        if not messages:
            break
        failures = {
            f["itemIdentifier"]
            for f in handler_module.drain(lambda_sqs_event(messages), None)["batchItemFailures"]
        }
        for message in messages:
            if message["MessageId"] in failures:
                reported += 1
            else:
                client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                drained += 1
    assert receive(client, url) == []
    # Every open missing from the table was in the queue (a timed-out write that DynamoDB did
    # make is in both: the drain's conditional put stores it once).
    assert drained >= OPENS - in_table

    items = all_items(ddb, table)
    assert Counter(i["request_id"] for i in items) == Counter(f"req-{n:04d}" for n in range(OPENS))
    # No second stampede: at most the client's attempts per message the drain handled.
    drain_calls = proxy.forwarded["PutItem"] + proxy.refused["PutItem"] - before
    assert drain_calls <= MAX_ATTEMPTS * (drained + reported)
