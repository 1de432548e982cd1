"""One pixel request → one open event, handed to the recorder: validation, signature check,
privacy, event. Never raises for anything a client sent; every repair and refusal is logged and
counted."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from flask import request

from mailpixel.config import Settings
from mailpixel.logs import Metrics, get_logger
from mailpixel.model.events import RequestFacts, build_open_event
from mailpixel.model.ids import clean_text
from mailpixel.pixel.privacy import stored_ip
from mailpixel.pixel.validation import MAX_USER_AGENT_LENGTH, parse_pixel_params, query_params
from mailpixel.signing import PIXEL_PATH, verify

if TYPE_CHECKING:
    from mailpixel.ddb.store import EventStore
    from mailpixel.pixel.recorder import OpenRecorder
    from mailpixel.secrets import SigningKeys

log = get_logger("pixel.record")


@dataclass
class Components:
    """What the pixel's routes use, built once per process (per Lambda cold start)."""

    settings: Settings
    store: EventStore
    recorder: OpenRecorder
    metrics: Metrics
    keys: SigningKeys


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
        # Reasons and parameter names only: the values hold the user id and the signature.
        names = sorted(query)[:16]
        log.info("pixel_params_repaired", extra={"reasons": params.reasons, "params": names})
        for reason in params.reasons:
            parts.metrics.count("pixel_param_issue", reason=reason)
    if not params.recordable:
        parts.metrics.count("pixel_not_recorded", reason="missing:email_id")
        return
    pairs = [(name, value) for name, values in query.items() for value in values]
    secrets = parts.keys.current()
    if secrets:
        ok, why = verify(
            pairs, secrets, max_age_seconds=parts.settings.signature_max_age_seconds, route=PIXEL_PATH
        )
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
        issued_t=params.issued_t,
    )
    if secrets is None:
        # Signing is configured but its secrets are not loaded: neither verified nor refusable.
        # Kept aside with what verifies it later, never in the table that is counted.
        parts.recorder.quarantine(replace(event, signed=None, unverified=[list(pair) for pair in pairs]))
        return
    parts.recorder.record(event)
