"""Webhook events: their JSON payload, the signature of a delivery, and one HTTP POST.

Shared by the producers (enrichment puts events on the webhook queue), the `webhooks` function
(delivers them) and `mailpixel webhooks test`.

Signature, for receivers in any language (docs/tracking/webhooks.md has Python and Node.js):
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
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

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


# What a well-formed header field holds: ASCII digits (at most 12: `int()` would accept
# Unicode digits such as "²" or "١", and refuses very long ones) and 64 lower-case hex digits.
_T_FIELD = re.compile(r"[0-9]{1,12}")
_V1_FIELD = re.compile(r"[0-9a-f]{64}")


def verify(secret: str, header: str, body: bytes, *, now: float | None = None) -> bool:
    """What a receiver does: the signature matches and `t` is within 5 minutes of now. Any
    malformed header (not a string, odd characters, a missing or repeated field) is False,
    never an exception: the header is whatever the sender of the request chose."""
    if not isinstance(header, str) or not isinstance(body, bytes):
        return False
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, sep, value = part.partition("=")
        if not sep or name in fields:
            return False
        fields[name] = value
    t, v1 = fields.get("t", ""), fields.get("v1", "")
    if not (_T_FIELD.fullmatch(t) and _V1_FIELD.fullmatch(v1)):
        return False
    if abs((time.time() if now is None else now) - int(t)) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(
        signature(secret, int(t), body).encode("ascii"), f"t={t},v1={v1}".encode("ascii")
    )


# How an event's `user_id` was established, in every payload (`signature_scope`):
USER_SIGNED = "user"  # the signature covers the user id: it is the one the sender put in the URL
EMAIL_SIGNED = "email"  # an email-scoped link: the signature does not cover it, anyone could set it
UNSIGNED = "unsigned"  # signing off, or not known to be signed: nothing vouches for it


def signature_scope(event: Mapping[str, Any]) -> str:
    """What vouches for the event's user id. Only a stored `signed: true` proves a signature
    (events from before signing, and unverified ones, are "unsigned")."""
    if event.get("signed") is not True:
        return UNSIGNED
    return EMAIL_SIGNED if event.get("signature_scope") == EMAIL_SIGNED else USER_SIGNED


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
        "signature_scope": signature_scope(event),
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
        "signature_scope": signature_scope(event),
        "time": event.get("opened_at"),
        "client": enrichment.get("client"),
        "geo": enrichment.get("geo"),
        "verdict": _verdict(enrichment, "machine_open"),
    }


# After its settle window (docs/tracking/webhooks.md), a human click's webhook is sent only if the
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


@dataclass(frozen=True)
class Delivery:
    """The outcome of one POST: the receiver's status, or why there was none (`error`)."""

    status: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        """Only a 2xx: a 3xx is a failure too (RFC 9110 lets a client follow a redirect of a
        POST as a GET without body, so "delivered" after one would be an event lost)."""
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> int | str:
        """For logs and `webhooks test`: the status, else the error."""
        return self.status if self.status is not None else str(self.error)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook POST never follows a redirect: the 3xx comes back as the answer. Following
    would send the signed event to a host the sender never configured, or as a bodiless GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# Built once: an opener holds no connection, only its handler chain.
_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, secret: str, body: bytes, event_id: str, *, timeout: float = 5.0) -> Delivery:
    """POST one signed delivery. Never raises: a refused connection, a timeout, an answer that
    is not HTTP (`BadStatusLine`), a reset, a malformed URL are each a failed `Delivery`, which
    callers retry as they retry an error status."""
    if not url.lower().startswith(("https://", "http://")):
        return Delivery(error="the webhook URL must be http(s)")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
        EVENT_ID_HEADER: event_id,
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Delivery(status=int(response.status))
    except urllib.error.HTTPError as exc:  # any status urllib calls an error, 3xx included
        exc.close()
        return Delivery(status=int(exc.code))
    except Exception as exc:  # noqa: BLE001 - every other failure is a failed delivery, retried
        return Delivery(error=repr(exc))


def log_attempt(log: logging.Logger, event_id: str, delivery: Delivery, attempt: int, **fields: Any) -> None:
    """One JSON line per attempt, whatever its outcome, so a receiver's owner sees every try: a
    success after retries (`attempt` > 1) as much as a failure. One vocabulary for the
    `webhooks` function and the local outbox."""
    extra = {"id": event_id, "attempt": attempt, "status": delivery.describe(), **fields}
    if delivery.delivered:
        log.info("webhook_delivered", extra=extra)
    else:
        log.warning("webhook_attempt_failed", extra=extra)
