"""One pixel request → one open event, handed to the recorder: validation, signature check,
privacy, event. Never raises for anything a client sent; every repair and refusal is logged and
counted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import request

from mailpixel.config import Settings
from mailpixel.logs import Metrics, get_logger
from mailpixel.model.events import RequestFacts, build_open_event
from mailpixel.pixel.privacy import stored_ip
from mailpixel.pixel.signing import verify
from mailpixel.pixel.validation import MAX_USER_AGENT_LENGTH, clean_text, parse_pixel_params, query_params

if TYPE_CHECKING:
    from mailpixel.ddb.store import EventStore
    from mailpixel.pixel.recorder import OpenRecorder

log = get_logger("pixel.record")


@dataclass
class Components:
    """What the pixel's routes use, built once per process (per Lambda cold start)."""

    settings: Settings
    store: EventStore
    recorder: OpenRecorder
    metrics: Metrics


def request_facts(user_agent: str) -> RequestFacts:
    """The current request's id, arrival time and peer address (opens and clicks alike)."""
    return RequestFacts.from_lambda_event(
        request.environ.get("serverless.event"), ip=request.remote_addr or "", user_agent=user_agent
    )


def record_open(parts: Components) -> None:
    """Record the open of the current Flask request, or log and count why not."""
    query = query_params(request.query_string)
    params = parse_pixel_params(query)
    user_agent = clean_text(
        request.headers.get("User-Agent", ""), MAX_USER_AGENT_LENGTH, "user_agent", params.reasons
    )
    if params.reasons:
        log.info(
            "pixel_params_repaired", extra={"reasons": params.reasons, "query": request.query_string[:512]}
        )
        for reason in params.reasons:
            parts.metrics.count("pixel_param_issue", reason=reason)
    if not params.recordable:
        parts.metrics.count("pixel_not_recorded", reason="missing:email_id")
        return
    secrets = parts.settings.signing_secrets
    if secrets:
        pairs = [(name, value) for name, values in query.items() for value in values]
        max_age = parts.settings.signature_max_age_days * 86_400 or None
        ok, why = verify(pairs, secrets, max_age_seconds=max_age)
        if not ok:
            log.warning("pixel_signature_rejected", extra={"reason": why, "email_id": params.email_id})
            parts.metrics.count(f"pixel_{why}", reason=why)
            return
    facts = request_facts(user_agent)
    event = build_open_event(
        email_id=params.email_id,
        user_id=params.user_id,
        facts=facts,
        retention_seconds=parts.settings.retention_seconds,
        stored_ip=stored_ip(facts.ip, parts.settings.ip_storage),
        signed=bool(secrets),
    )
    parts.recorder.record(event)
