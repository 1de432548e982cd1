"""Webhook events from enrichment: the first human open of an email by a user, every human click.

They are produced here, after the verdict, never on the pixel's or the click's request path: the
stream handler calls `WebhookProducer.for_open` / `for_click` with the finished enrichment
before its write, and a failure reports the record for retry, so every event goes out at least
once (receivers dedupe on its id). In AWS events go to the webhook queue, which the `webhooks`
function delivers with retries and a dead-letter queue; locally (`make run`) they are POSTed
directly from the enrichment thread, with a few retries, and what still fails is kept in
`.data/webhooks/failed.jsonl`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mailpixel.config import Settings
from mailpixel.ddb.batch import batch_get
from mailpixel.ddb.update import update
from mailpixel.files import open_private
from mailpixel.logs import get_logger
from mailpixel.model.keys import email_pk, meta_key, webhook_open_sk
from mailpixel.model.webhooks import (
    EMAIL_SIGNED,
    click_payload,
    encode,
    first_open_payload,
    log_attempt,
    post,
    signature_scope,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

log = get_logger("enrich.webhooks")
Hook = Callable[[Mapping[str, Any], Mapping[str, Any]], None]


class Outbox(Protocol):
    def put(self, payload: Mapping[str, Any]) -> None: ...


class SqsOutbox:
    """The webhook queue (in AWS): the `webhooks` function delivers from it."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def put(self, payload: Mapping[str, Any]) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=encode(payload).decode("utf-8"))


class DirectOutbox:
    """Local delivery: POST now, retry a few times, keep what still fails in a file."""

    def __init__(
        self, url: str, secret: str, failed: Path, delays: tuple[float, ...] = (0.5, 1.0, 2.0)
    ) -> None:
        self.url, self.secret, self.failed, self.delays = url, secret, failed, delays

    def put(self, payload: Mapping[str, Any]) -> None:
        """Never raises for the receiver's sake (`post` turns every failure into a result): a
        bad receiver must not fail the click's or open's enrichment and counting."""
        body, event_id = encode(payload), str(payload["id"])
        for attempt, delay in enumerate((*self.delays, None), start=1):
            delivery = post(self.url, self.secret, body, event_id)
            log_attempt(log, event_id, delivery, attempt)
            if delivery.delivered:
                return
            if delay is not None:
                time.sleep(delay)
        # User ids and locations: readable by their owner only, as the other local data files.
        with open_private(self.failed) as fh:
            fh.write(json.dumps(payload, default=str) + "\n")
        log.error("webhook_undelivered", extra={"id": payload["id"], "kept_in": str(self.failed)})


class WebhookProducer:
    """Decides which enriched events are webhook events and hands them to the outbox."""

    def __init__(self, outbox: Outbox, ddb: DynamoDBClient, settings: Settings) -> None:
        self.outbox = outbox
        self.ddb = ddb
        self.settings = settings

    def for_click(self, event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> None:
        """Every human click; a click on an email-scoped link only with
        MAILPIXEL_WEBHOOK_SCOPED_CLICKS=on, as its user id may be anyone's."""
        if enrichment.get("machine_click"):
            return
        if signature_scope(event) == EMAIL_SIGNED and self.settings.webhook_scoped_clicks != "on":
            return
        self.outbox.put(click_payload(event, enrichment))

    def for_open(self, event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> None:
        """The first human open per email and user. A marker in the meta table, written after
        the event is out, keeps later opens from sending again; opens racing to be first may
        each send, with the same id."""
        user_id = event.get("user_id")
        if enrichment.get("machine_open") or not user_id:
            return
        key = meta_key(email_pk(str(event["email_id"])), webhook_open_sk(str(user_id)))
        if any(True for _ in batch_get(self.ddb, self.settings.meta_table, [key], consistent=True)):
            return
        self.outbox.put(first_open_payload(event, enrichment))
        expires = int(time.time()) + self.settings.retention_seconds
        self.ddb.update_item(
            **update(self.settings.meta_table, key, sets={"expires_at": {"N": str(expires)}})
        )


def outbox_for(settings: Settings) -> Outbox | None:
    """The queue when one is configured and MAILPIXEL_WEBHOOKS=on (AWS), else direct delivery
    when a URL and secret are (local), else None: webhooks off."""
    if settings.webhook_queue_url:
        if settings.webhooks != "on":
            return None
        from mailpixel.aws import sqs_client

        return SqsOutbox(sqs_client(settings), settings.webhook_queue_url)
    if settings.webhook_url and settings.webhook_secret:
        return DirectOutbox(
            settings.webhook_url,
            settings.webhook_secret,
            Path(settings.data_dir) / "webhooks" / "failed.jsonl",
        )
    return None


def webhooks_status(settings: Settings) -> str:
    """The `make run` banner's line: whether webhooks are on and where they go, so a sender
    debugging a receiver sees it at once."""
    outbox = outbox_for(settings)
    if isinstance(outbox, DirectOutbox):
        return f"Webhooks: on, POSTed to {outbox.url} (undelivered ones kept in {outbox.failed})"
    if isinstance(outbox, SqsOutbox):
        return f"Webhooks: on, queued on {outbox.queue_url}"
    return "Webhooks: off (set MAILPIXEL_WEBHOOK_URL and MAILPIXEL_WEBHOOK_SECRET to send them)"


def webhook_hooks(settings: Settings, ddb: DynamoDBClient | None = None) -> tuple[Hook | None, Hook | None]:
    """(opens' hook, clicks' hook) for the stream handlers; (None, None) when webhooks are off."""
    outbox = outbox_for(settings)
    if outbox is None:
        return None, None
    if ddb is None:
        from mailpixel.aws import dynamodb_client

        ddb = dynamodb_client(settings)
    producer = WebhookProducer(outbox, ddb, settings)
    return producer.for_open, producer.for_click
