"""`/click`: record a click on a signed link, then redirect (302) to the link's destination.

The destination is a signed parameter of the click URL (`signing.ClickSigner`), so this route
redirects only where the sender pointed: a forged, tampered or unsigned click (when signing is
on) gets a plain page, never a redirect. A signed destination must still be an absolute
http(s) URL with a host, no credentials, no white space, control characters or backslashes
(`destination_problem`), so even a sender's mistake never becomes a `javascript:` or
scheme-relative redirect. The click is recorded exactly like an open: one conditional write
through the pixel's recorder (idempotent on API Gateway's request id, the fallback when the
store fails); the redirect never waits on anything else.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.datastructures import Headers

from mailpixel.logs import get_logger
from mailpixel.model.clicks import build_click_event
from mailpixel.pixel.privacy import stored_ip
from mailpixel.pixel.record import request_facts
from mailpixel.pixel.validation import MAX_USER_AGENT_LENGTH, clean_text, parse_pixel_params, query_params
from mailpixel.signing import (
    CLICK_PATH,
    EMAIL_SCOPE,
    HONEYPOT_PARAM,
    HONEYPOT_VALUE,
    OK,
    SCOPE_PARAM,
    SIG_EXPIRED,
    URL_PARAM,
    USER_PARAM,
    verify,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from mailpixel.pixel.record import Components

log = get_logger("pixel.click")

# Longest destination followed: browsers and API Gateway take more, but no real link is longer.
MAX_DESTINATION_LENGTH = 4096
ALLOWED_SCHEMES = ("http://", "https://")
REFUSED_BODY = "This link is not valid.\n"
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def destination_problem(url: str) -> str | None:
    """Why `url` may not be redirected to, or None when it may.

    Accepted: `http://` or `https://` (any case) followed by a host, with no user info, no
    character a browser would strip or reinterpret (white space, controls, format characters,
    backslashes) anywhere. Percent-escapes are left as they are: the browser gets exactly the
    signed text, and `%2F%2F` in a path is a path, not a host.
    """
    if not url:
        return "empty"
    if len(url) > MAX_DESTINATION_LENGTH:
        return "too_long"
    if not url.lower().startswith(ALLOWED_SCHEMES):
        return "scheme"
    if "\\" in url:
        return "backslash"
    if not url.isprintable() or any(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in url):
        return "whitespace_or_control"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "unparsable"
    if "@" in parts.netloc:
        return "userinfo"
    if not host or host.startswith("."):
        return "no_host"
    if "%" in host:  # browsers disagree on escaped hosts: the one a person reads may not be it
        return "host_escape"
    return None


@dataclass(frozen=True)
class CheckedClick:
    """A click whose destination may be followed; `record` is False for expired signatures."""

    destination: str
    record: bool
    signed: bool
    scope: str | None


def check_click(parts: Components, query: dict[str, list[str]]) -> CheckedClick | str:
    """The click to follow, or the reason for refusing it."""
    destinations = query.get(URL_PARAM) or []
    if len(destinations) != 1:
        return "url_missing" if not destinations else "url_repeated"
    destination = destinations[0]
    scopes = query.get(SCOPE_PARAM) or []
    scope = scopes[0] if scopes else None
    if scope not in (None, EMAIL_SCOPE):
        return "scope_invalid"
    secrets = parts.keys.current()
    if secrets is None:
        # Signing is configured but its secrets are not loaded (SSM failing): the destination
        # cannot be verified, and an unverified redirect would be an open one.
        return "secrets_unavailable"
    record = True
    if secrets:
        pairs = [
            (name, value)
            for name, values in query.items()
            for value in values
            if not (scope == EMAIL_SCOPE and name == USER_PARAM)
        ]
        ok, why = verify(pairs, secrets, max_age_seconds=parts.settings.signature_max_age_seconds)
        if not ok and why != SIG_EXPIRED:
            return why
        # An expired signature is still the sender's: follow the link, but record nothing,
        # as the pixel records nothing for an expired URL.
        record = why == OK
    elif not parts.settings.is_local:
        # No secret in AWS (the SSM parameter could not be read): an unsigned click would be an
        # open redirect on a public endpoint.
        return "no_secrets"
    problem = destination_problem(destination)
    if problem:
        return f"destination_{problem}"
    return CheckedClick(destination, record, bool(secrets), scope)


def record_click(parts: Components, query: dict[str, list[str]], checked: CheckedClick) -> None:
    params = parse_pixel_params(query)
    if not params.recordable:
        parts.metrics.count("click_not_recorded", reason="missing:email_id")
        return
    user_agent = clean_text(
        request.headers.get("User-Agent", ""), MAX_USER_AGENT_LENGTH, "user_agent", params.reasons
    )
    facts = request_facts(user_agent)
    event = build_click_event(
        email_id=params.email_id,
        user_id=params.user_id,
        url=checked.destination,
        method=request.method,
        facts=facts,
        retention_seconds=parts.settings.retention_seconds,
        stored_ip=stored_ip(facts.ip, parts.settings.ip_storage),
        signed=checked.signed,
        signature_scope=checked.scope,
        issued_t=params.issued_t,
        # `hp` is covered by the signature (check_click verified it), so nobody can mark a real
        # link as a honeypot, nor strip the mark from one without breaking the signature.
        honeypot=query.get(HONEYPOT_PARAM) == [HONEYPOT_VALUE],
    )
    parts.recorder.record(event)


class ExactRedirect(Response):
    """A response whose `Location` goes out as given. Werkzeug rewrites every Location through
    `iri_to_uri`, which also lower-cases the scheme; an ASCII destination is sent untouched, and
    only a non-ASCII one (which an HTTP header cannot carry) takes Werkzeug's form (UTF-8
    percent-escapes, the host in IDNA)."""

    exact_location: str = ""

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> Headers:
        headers = super().get_wsgi_headers(environ)
        if self.exact_location.isascii():
            headers["Location"] = self.exact_location
        return headers


def redirect_to(destination: str) -> Response:
    """302 to the signed destination. `no-referrer` keeps the click URL, with its user id and
    signature, from reaching the destination's logs."""
    response = ExactRedirect(status=302)
    response.headers.update(NO_STORE)
    response.headers["Location"] = destination
    response.exact_location = destination
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def refused() -> Response:
    return Response(REFUSED_BODY, status=400, mimetype="text/plain", headers=NO_STORE)


def register_click_route(app: Flask, parts: Components) -> None:
    """Adds `GET`/`HEAD /click` to the pixel app. HEAD is recorded too (with its method): link
    scanners use it, and enrichment tells them apart from people by it."""

    @app.route(CLICK_PATH, methods=["GET", "HEAD"])
    def click() -> Response:
        query = query_params(request.query_string)
        checked = check_click(parts, query)
        if isinstance(checked, str):
            log.warning("click_refused", extra={"reason": checked})
            parts.metrics.count("click_refused", reason=checked)
            return refused()
        if checked.record:
            try:
                record_click(parts, query, checked)
            except Exception:  # noqa: BLE001 - the reader still gets where the link points
                log.exception("click_error")
                parts.metrics.count("click_error")
        else:
            parts.metrics.count("click_sig_expired")
        return redirect_to(checked.destination)
