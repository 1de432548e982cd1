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
