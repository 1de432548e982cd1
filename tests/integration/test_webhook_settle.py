"""The settle window: a human click's webhook waits, and is not sent when the click is revised to
machine within the window (a honeypot hit arriving in a later batch). Real receiver on loopback,
the real /click, the clicks' stream through the local poller, DynamoDB Local; in AWS's shape,
a real SQS queue (moto's server) with the message's DelaySeconds and the delivery function's
re-check."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from mailpixel.config import Settings
from mailpixel.enrich.clicks import build_click_handler
from mailpixel.enrich.webhooks import webhook_hooks
from mailpixel.model.webhooks import current_click
from mailpixel.ops.local.stream_poller import StreamPoller
from mailpixel.pixel.app import create_app
from mailpixel.signing import ClickSigner
from mailpixel.webhooks.handler import deliver_records
from tests.integration.test_fallback_queue import sqs_endpoint  # noqa: F401 - the moto server fixture
from tests.integration.test_webhooks import (  # noqa: F401 - fixtures
    CHROME,
    SECRET,
    Receiver,
    queues,
    receive,
    receiver,
)
from tests.signed_urls import NEW

BASE = "https://px.example.com"


def click(settings, user: str, link: str, *, honeypot: bool = False) -> None:
    """A click through the real /click on a signed link; a honeypot link carries the signed hp=1."""
    url = ClickSigner(BASE, "e1", NEW, None, scoped=False).url(
        f"https://shop.example.com/{link}", user, honeypot=honeypot
    )
    app = create_app(settings.with_overrides(signing_secrets=(NEW,)))
    response = app.test_client().get(url.removeprefix(BASE), headers={"User-Agent": CHROME})
    assert response.status_code == 302


def delivered_users(wait: float) -> list[str]:
    time.sleep(wait)
    return sorted(json.loads(r["body"])["user_id"] for r in Receiver.received)


@pytest.mark.parametrize("settle", [5, 0], ids=["settle-5s", "no-settle-window"])
def test_no_webhook_for_a_click_revised_within_the_settle_window(settings, ddb, table, receiver, settle):  # noqa: F811
    local = settings.with_overrides(
        webhook_url=receiver, webhook_secret=SECRET, webhook_settle_seconds=settle
    )
    handler = build_click_handler(local, ddb=ddb, provider=None, before_write=webhook_hooks(local, ddb)[1])
    poller = StreamPoller(local, handler, ddb=ddb, table=local.clicks_table, retry_delay=0.01)
    # A gateway's first click looks like a person's on its own; a person clicks too.
    click(local, "scanned", "sale")
    click(local, "person", "sale")
    poller.wait_idle()
    enriched = time.monotonic()
    # The gateway's honeypot hit arrives in a later batch, within the window, and revises it.
    click(local, "scanned", "hidden", honeypot=True)
    poller.wait_idle()
    stored = {(c["user_id"], c.get("honeypot", False)): c for c in _clicks(ddb, local)}
    first = stored[("scanned", False)]
    assert first["machine_click"] is True and first["evidence"]["rule"] == "honeypot"
    assert first["verdict_version"] == 1

    if settle:
        assert time.monotonic() - enriched < settle  # revised within the window
        assert delivered_users(settle + 1.5) == ["person"]
    else:
        # Without the window the automation fires for the scanner's click before it is revised:
        # what the window exists to prevent.
        assert delivered_users(0.5) == ["person", "scanned"]


def _clicks(ddb: Any, settings: Settings) -> list[dict[str, Any]]:
    from tests.conftest import all_items

    return all_items(ddb, settings.clicks_table)


def test_the_queue_delays_click_webhooks_and_the_delivery_function_drops_revised_ones(
    settings,
    ddb,
    table,
    queues,  # noqa: F811
    receiver,  # noqa: F811
    sqs_endpoint,  # noqa: F811
):
    client, url, _ = queues
    hooked = settings.with_overrides(
        webhook_queue_url=url, webhooks="on", sqs_endpoint_url=sqs_endpoint, webhook_settle_seconds=2
    )
    handler = build_click_handler(hooked, ddb=ddb, provider=None, before_write=webhook_hooks(hooked, ddb)[1])
    poller = StreamPoller(hooked, handler, ddb=ddb, table=hooked.clicks_table, retry_delay=0.01)
    click(hooked, "scanned", "sale")
    click(hooked, "person", "sale")
    poller.wait_idle()
    assert receive(client, url) == []  # both messages wait out their settle window on the queue
    click(hooked, "scanned", "hidden", honeypot=True)
    poller.wait_idle()
    time.sleep(2.5)

    records = receive(client, url)
    assert len(records) == 2
    lookup = lambda payload: current_click(ddb, hooked.clicks_table, payload)  # noqa: E731
    result = deliver_records(records, (receiver, SECRET), client, url, first_retry_seconds=0, lookup=lookup)
    assert result == {"batchItemFailures": []}  # the revised one is done with, not retried
    assert [json.loads(r["body"])["user_id"] for r in Receiver.received] == ["person"]


def test_a_click_still_being_enriched_waits_on_the_queue(settings, ddb, table, queues, receiver):  # noqa: F811
    client, url, _ = queues
    click(settings, "u1", "sale")  # stored, not enriched: no poller runs
    (stored,) = _clicks(ddb, settings)
    payload = {
        "id": f"click_{stored['request_id']}",
        "type": "human_click",
        "email_id": "e1",
        "time": stored["clicked_at"],
    }
    client.send_message(QueueUrl=url, MessageBody=json.dumps(payload))
    records = receive(client, url)
    lookup = lambda p: current_click(ddb, settings.clicks_table, p)  # noqa: E731
    result = deliver_records(records, (receiver, SECRET), client, url, first_retry_seconds=0, lookup=lookup)
    assert result["batchItemFailures"] == [{"itemIdentifier": records[0]["messageId"]}]
    assert Receiver.received == []
