"""Deliver webhook events from the SQS webhook queue (Lambda, partial batch failures).

A delivery succeeds on any 2xx. Anything else (an error status, a redirect, a timeout, a
refused connection, an answer that is not HTTP: `model.webhooks.post`) reports the message as
failed and pushes its next attempt back exponentially with
`ChangeMessageVisibility`: 30 s, 1, 2, 4 … minutes, capped at 2 hours, so the 20 receives the
queue allows (`maxReceiveCount` in serverless.yml) span about a day; then SQS moves the message
to the dead-letter queue (kept 14 days). Every delivery of a message carries the same event id.

A batch has a deadline below the function's timeout (`batch_deadline`, from the Lambda
context's remaining time): a message whose POST could not finish before it is not started, and
goes back to the queue alone as a partial batch failure, so a slow receiver never times the
whole batch out and never gets the batch's delivered events again.

A human click's message arrives after its settle window (the DelaySeconds enrichment gave it)
and is sent only if the click is still human now (`model.webhooks.settled`): one revised by a
later honeypot hit or burst is dropped, one whose enrichment is still being retried waits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings
from mailpixel.logs import get_logger
from mailpixel.model.webhooks import DROP, WAIT, Delivery, log_attempt, post, settled

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = get_logger("webhooks.handler")
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 7200
Target = tuple[str, str]  # (URL, secret)
# A human click's payload → the click as stored now (`model.webhooks.current_click`).
Lookup = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]
# Kept free before Lambda's timeout: the response, the visibility changes and the logs.
SAFETY_SECONDS = 2.0
# A POST is at least three socket operations (connect, send, the answer), each bounded by the
# socket timeout: one is started only if three of them still fit before the deadline, with at
# least this long each (less would fail a receiver that is merely slow).
SOCKET_OPS = 3
MIN_SOCKET_TIMEOUT = 1.0


def batch_deadline(context: Any, safety: float = SAFETY_SECONDS) -> float | None:
    """The `time.monotonic()` by which the batch must be done: the Lambda context's remaining
    time less a margin; None without a context (the CLI, a test calling the handler bare)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + int(remaining()) / 1000 - safety


def retry_delay(receive_count: int, first: int = FIRST_RETRY_SECONDS) -> int:
    """Seconds before the next attempt after the `receive_count`-th failed one."""
    return int(min(first * 2 ** max(receive_count - 1, 0), MAX_RETRY_SECONDS))


def load_target(settings: Settings) -> Target | None:
    """The URL and secret: from the environment, else the SecureString "URL,SECRET" in SSM."""
    if settings.webhook_url and settings.webhook_secret:
        return settings.webhook_url, settings.webhook_secret
    if settings.webhook_parameter:
        from mailpixel.secrets import load_secret_list

        values = load_secret_list(
            settings, settings.webhook_parameter, variable="MAILPIXEL_WEBHOOK_PARAMETER", what="URL,SECRET"
        )
        if len(values) == 2:
            return values[0], values[1]
        log.error("webhook_parameter_malformed", extra={"parameter": settings.webhook_parameter})
    return None


def deliver_records(
    records: Iterable[Mapping[str, Any]],
    target: Target | None,
    sqs: SQSClient,
    queue_url: str,
    *,
    timeout: float = 5.0,
    first_retry_seconds: int = FIRST_RETRY_SECONDS,
    deadline: float | None = None,
    lookup: Lookup | None = None,
) -> dict[str, list[dict[str, str]]]:
    """POST each record's event; the partial batch response lists the messages to keep: those
    that failed (pushed back with backoff) and those not sent before `deadline` (left as they
    are: visible again after the queue's visibility timeout, without a failed attempt's delay)."""
    failures = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        body = str(record.get("body", ""))
        try:
            payload = json.loads(body)
            event_id = str(payload["id"])
        except (ValueError, KeyError, TypeError):
            log.error("webhook_unreadable", extra={"message_id": message_id})
            failures.append(message_id)  # kept: it ends in the dead-letter queue, not lost
            continue
        socket_timeout = timeout
        if deadline is not None:
            socket_timeout = min(timeout, (deadline - time.monotonic()) / SOCKET_OPS)
            if socket_timeout < MIN_SOCKET_TIMEOUT:
                log.warning("webhook_deferred", extra={"id": event_id, "reason": "batch deadline"})
                failures.append(message_id)
                continue
        attempt = int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
        decision = None
        if lookup is not None:
            try:
                decision = settled(payload, lookup(payload))
            except Exception as exc:  # noqa: BLE001 - retried like a failed delivery
                decision = WAIT
                log.warning("webhook_settle_check_failed", extra={"id": event_id, "error": repr(exc)})
        if decision == DROP:
            log.info("webhook_dropped_revised", extra={"id": event_id})
            continue
        if decision == WAIT:
            delivery = Delivery(error="not_settled")
        elif target is None:
            delivery = Delivery(error="not_configured")
        else:
            delivery = post(target[0], target[1], body.encode("utf-8"), event_id, timeout=socket_timeout)
        if delivery.delivered:
            log_attempt(log, event_id, delivery, attempt)
            continue
        delay = retry_delay(attempt, first_retry_seconds)
        log_attempt(log, event_id, delivery, attempt, delay=delay)
        failures.append(message_id)
        try:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=str(record.get("receiptHandle")), VisibilityTimeout=delay
            )
        except Exception as exc:  # noqa: BLE001 - then the queue's own visibility timeout applies
            log.warning("webhook_backoff_failed", extra={"id": event_id, "error": repr(exc)})
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}
