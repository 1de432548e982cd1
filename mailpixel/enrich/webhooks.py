"""Webhook events from enrichment: the first human open of an email by a user, every human click.

They are produced here, after the verdict, never on the pixel's or the click's request path: the
stream handler calls `WebhookProducer.for_open` / `for_click` with the finished enrichment
before its write, and a failure reports the record for retry, so every event goes out at least
once (receivers dedupe on its id). In AWS events go to the webhook queue, which the `webhooks`
function delivers with retries and a dead-letter queue; locally (`make run`) they are POSTed
directly from the enrichment thread, with a few retries, and what still fails is kept in
`.data/webhooks/failed.jsonl`.

A human click's verdict can still change after it is written (a honeypot hit or a burst arriving
later revises it, `enrich/clicks.py`), so its webhook waits a settle window
(`MAILPIXEL_WEBHOOK_SETTLE_SECONDS`, 60 s) and goes out only if the click is still human then
(`model.webhooks.settled`): on the queue as the message's DelaySeconds, checked by the
`webhooks` function; locally by a timer here.
"""

from __future__ import annotations

import json
import threading
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
    DROP,
    EMAIL_SIGNED,
    SEND,
    click_payload,
    current_click,
    encode,
    first_open_payload,
    log_attempt,
    post,
    settled,
    signature_scope,
    stored_click_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

log = get_logger("enrich.webhooks")
Hook = Callable[[Mapping[str, Any], Mapping[str, Any]], None]


class Outbox(Protocol):
    def put(self, payload: Mapping[str, Any]) -> None: ...


# SQS delays a message by at most 15 minutes.
MAX_DELAY_SECONDS = 900
# Locally, how many more windows a settled click's webhook waits for an enrichment being retried.
MAX_WAITS = 5


class SqsOutbox:
    """The webhook queue (in AWS): the `webhooks` function delivers from it. A human click's
    message is delayed by the settle window; the function checks the click before sending."""

    def __init__(self, client: SQSClient, queue_url: str, settle_seconds: int = 0) -> None:
        self.client = client
        self.queue_url = queue_url
        self.settle_seconds = min(max(settle_seconds, 0), MAX_DELAY_SECONDS)

    def put(self, payload: Mapping[str, Any]) -> None:
        delay = self.settle_seconds if stored_click_key(payload) is not None else 0
        self.client.send_message(
            QueueUrl=self.queue_url, MessageBody=encode(payload).decode("utf-8"), DelaySeconds=delay
        )


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


class SettlingOutbox:
    """Local delivery of human clicks after their settle window: a timer per click re-reads it and
    hands the event to `inner` only if it is still human (other events go at once)."""

    def __init__(self, inner: Outbox, client: DynamoDBClient, table: str, seconds: float) -> None:
        self.inner, self.client, self.table, self.seconds = inner, client, table, seconds

    def put(self, payload: Mapping[str, Any]) -> None:
        if stored_click_key(payload) is None or self.seconds <= 0:
            self.inner.put(payload)
        else:
            self._later(payload, MAX_WAITS)

    def _later(self, payload: Mapping[str, Any], waits: int) -> None:
        timer = threading.Timer(self.seconds, self._due, (payload, waits))
        timer.daemon = True  # `make run` ends with Ctrl-C; an unsent event is logged, not kept
        timer.start()

    def _due(self, payload: Mapping[str, Any], waits: int) -> None:
        try:
            decision = settled(payload, current_click(self.client, self.table, payload))
            if decision == SEND:
                self.inner.put(payload)
            elif decision == DROP:
                log.info("webhook_dropped_revised", extra={"id": payload["id"]})
            elif waits > 0:
                self._later(payload, waits - 1)
            else:
                log.error("webhook_unsettled", extra={"id": payload["id"]})
        except Exception:  # noqa: BLE001 - a timer thread has no caller to report to
            log.exception("webhook_settle_failed", extra={"id": payload.get("id")})


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


def outbox_for(settings: Settings, ddb: DynamoDBClient | None = None) -> Outbox | None:
    """The queue when one is configured and MAILPIXEL_WEBHOOKS=on (AWS), else direct delivery
    when a URL and secret are (local; human clicks after their settle window, read back through
    `ddb`), else None: webhooks off."""
    if settings.webhook_queue_url:
        if settings.webhooks != "on":
            return None
        from mailpixel.aws import sqs_client

        return SqsOutbox(sqs_client(settings), settings.webhook_queue_url, settings.webhook_settle_seconds)
    if settings.webhook_url and settings.webhook_secret:
        direct = DirectOutbox(
            settings.webhook_url,
            settings.webhook_secret,
            Path(settings.data_dir) / "webhooks" / "failed.jsonl",
        )
        if settings.webhook_settle_seconds <= 0:
            return direct
        if ddb is None:
            from mailpixel.aws import dynamodb_client

            ddb = dynamodb_client(settings)
        return SettlingOutbox(direct, ddb, settings.clicks_table, settings.webhook_settle_seconds)
    return None


def webhooks_status(settings: Settings) -> str:
    """The `make run` banner's line: whether webhooks are on and where they go, so a sender
    debugging a receiver sees it at once."""
    outbox = outbox_for(settings)
    settle = ""
    if isinstance(outbox, SettlingOutbox):
        settle = f", human clicks after a {outbox.seconds:g} s settle window"
        outbox = outbox.inner
    if isinstance(outbox, DirectOutbox):
        return f"Webhooks: on, POSTed to {outbox.url}{settle} (undelivered ones kept in {outbox.failed})"
    if isinstance(outbox, SqsOutbox):
        return f"Webhooks: on, queued on {outbox.queue_url}"
    return "Webhooks: off (set MAILPIXEL_WEBHOOK_URL and MAILPIXEL_WEBHOOK_SECRET to send them)"


def webhook_hooks(settings: Settings, ddb: DynamoDBClient | None = None) -> tuple[Hook | None, Hook | None]:
    """(opens' hook, clicks' hook) for the stream handlers; (None, None) when webhooks are off."""
    outbox = outbox_for(settings, ddb)
    if outbox is None:
        return None, None
    if ddb is None and isinstance(outbox, SettlingOutbox):
        ddb = outbox.client
    if ddb is None:
        from mailpixel.aws import dynamodb_client

        ddb = dynamodb_client(settings)
    producer = WebhookProducer(outbox, ddb, settings)
    return producer.for_open, producer.for_click
