"""Webhook events: their JSON payload, the signature of a delivery, and one HTTP POST.

Shared by the producers (enrichment puts events on the webhook queue), the `webhooks` function
(delivers them) and `mailpixel webhooks test`.

Signature, for receivers in any language (README "Webhooks" has Python and Node.js):
header `Mailpixel-Signature: t=<unix seconds>,v1=<hex>` where
`hex = HMAC-SHA256(key = the secret's UTF-8 bytes, message = "<t>." + the raw request body)`.
Check it in constant time and refuse a `t` more than 5 minutes away from now (replays). Every
delivery of one event carries the same `id` (also in the `Mailpixel-Event-Id` header): deliveries
are at least once, so receivers drop ids they have seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from mailpixel.model.keys import click_key

SIGNATURE_HEADER = "Mailpixel-Signature"
EVENT_ID_HEADER = "Mailpixel-Event-Id"
TOLERANCE_SECONDS = 300
FIRST_HUMAN_OPEN = "first_human_open"
HUMAN_CLICK = "human_click"
USER_AGENT = "mailpixel-webhooks/1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Mailpixel-Signature` header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None) -> bool:
    """What a receiver does: the signature matches and `t` is within 5 minutes of now."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")


def _verdict(enriched: Mapping[str, Any], machine_field: str) -> dict[str, Any]:
    return {
        "machine": bool(enriched.get(machine_field)),
        "reason": enriched.get("machine_reason"),
        "proxy": enriched.get("proxy"),
        "evidence": enriched.get("evidence") or {"rule": enriched.get("rule")},
    }


def click_payload(event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> dict[str, Any]:
    """A human click. Its id is the click's (API Gateway's request id): the same on every delivery."""
    return {
        "id": f"click_{event['request_id']}",
        "type": HUMAN_CLICK,
        "email_id": event["email_id"],
        "user_id": event.get("user_id"),
        "time": event.get("clicked_at"),
        "url": event.get("url"),
        "client": enrichment.get("client"),
        "geo": enrichment.get("geo"),
        "verdict": _verdict(enrichment, "machine_click"),
    }


def first_open_payload(event: Mapping[str, Any], enrichment: Mapping[str, Any]) -> dict[str, Any]:
    """The first human open of an email by a user. Its id is derived from the email and the user,
    so two opens racing to be first produce one id, which receivers dedupe."""
    key = hashlib.sha256(f"{event['email_id']}\0{event.get('user_id')}".encode()).hexdigest()[:32]
    return {
        "id": f"open_{key}",
        "type": FIRST_HUMAN_OPEN,
        "email_id": event["email_id"],
        "user_id": event.get("user_id"),
        "time": event.get("opened_at"),
        "client": enrichment.get("client"),
        "geo": enrichment.get("geo"),
        "verdict": _verdict(enrichment, "machine_open"),
    }


# After its settle window (README "Settle window"), a human click's webhook is sent only if the
# click, as stored now, is still a person's: the sequence rules may have revised it meanwhile.
SEND, DROP, WAIT = "send", "drop", "wait"


def stored_click_key(payload: Mapping[str, Any]) -> dict[str, dict[str, str]] | None:
    """The clicks table's key of a human click's payload (its id is `click_<request id>`, its time
    the click's), or None for any other event."""
    event_id = str(payload.get("id") or "")
    if payload.get("type") != HUMAN_CLICK or not event_id.startswith("click_") or not payload.get("time"):
        return None
    request_id = event_id.removeprefix("click_")
    return {
        "email_id": {"S": str(payload["email_id"])},
        "click_key": {"S": click_key(str(payload["time"]), request_id)},
    }


def settled(payload: Mapping[str, Any], stored: Mapping[str, Any] | None) -> str:
    """SEND, DROP or WAIT for an event whose settle window has passed, given its click as stored
    now (plain values; None: not found). Events other than clicks are sent."""
    if stored_click_key(payload) is None:
        return SEND
    if stored is None:
        return DROP  # erased meanwhile
    if not stored.get("enriched_at"):
        return WAIT  # its enrichment is being retried: the verdict is not known yet
    return DROP if stored.get("machine_click") else SEND


def current_click(client: Any, table: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The click of a human click's payload as stored now (a consistent read), or None."""
    key = stored_click_key(payload)
    if key is None:
        return None
    from mailpixel.ddb.codec import plain_item

    item = client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    return plain_item(item) if item else None


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode("utf-8")


def post(url: str, secret: str, body: bytes, event_id: str, *, timeout: float = 5.0) -> int:
    """POST one signed delivery; returns the HTTP status (raises on a network failure)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
        EVENT_ID_HEADER: event_id,
    }
    if not url.lower().startswith(("https://", "http://")):
        raise ValueError("the webhook URL must be http(s)")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  # nosec B310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
