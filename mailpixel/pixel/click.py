"""`/click`: record a click on a signed link, then redirect (302) to the link's destination.

The destination is a signed parameter of the click URL (`signing.ClickSigner`), so this route
redirects only where the sender pointed: a forged, tampered or unsigned click (when signing is
on) gets a plain page, never a redirect. The `Location` sent is computed from the signed text
(`location_for`) and checked as a browser will read it: an absolute http(s) URL with a host a
browser parses to the same host, no credentials, no white space, control characters or
backslashes, so even a sender's mistake never becomes a `javascript:` or scheme-relative
redirect, nor a 500. Any destination that check refuses gets the same 400 as a forged one
(`instrument` leaves such links untracked, through `destination_problem`).

The click is recorded exactly like an open: one conditional write
through the pixel's recorder (idempotent on API Gateway's request id, the fallback when the
store fails); the redirect never waits on anything else.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from flask import Flask, Response, request
from werkzeug.datastructures import Headers

from mailpixel.logs import get_logger
from mailpixel.model.clicks import build_click_event
from mailpixel.model.ids import clean_text
from mailpixel.pixel.privacy import stored_ip
from mailpixel.pixel.record import request_facts
from mailpixel.pixel.validation import MAX_USER_AGENT_LENGTH, parse_pixel_params, query_params
from mailpixel.signing import (
    AUTHENTIC,
    CLICK_PATH,
    EMAIL_SCOPE,
    HONEYPOT_PARAM,
    HONEYPOT_VALUE,
    OK,
    SCOPE_PARAM,
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
MAX_PORT = 65535
MAX_LABEL_LENGTH = 63  # octets, in DNS and in UTS #46
MAX_HOST_LENGTH = 253
ASCII_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
# WHATWG "ends in a number": such a host is parsed as IPv4, in decimal, octal or hex parts.
ENDS_IN_A_NUMBER = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # decimal, no leading zero
IPV4 = re.compile(rf"(?:{OCTET}\.){{3}}{OCTET}")


class RefusedDestination(ValueError):
    """A destination that is never redirected to; the message is the reason, for logs."""


def destination_problem(url: str) -> str | None:
    """Why `url` may not be redirected to, or None when it may (`location_for` says more)."""
    try:
        location_for(url)
    except RefusedDestination as refused:
        return str(refused)
    return None


def location_for(url: str) -> str:
    """The exact `Location` header sent for the signed destination `url`; raises
    RefusedDestination when it may not be followed.

    The check runs on what is sent, not on the signed text, with the rules a browser (the WHATWG
    URL standard) applies to it, and refuses where a browser would fail, repair or reinterpret:
    - `http://` or `https://` (any case), then a host: no user info, no white space, controls,
      format characters or backslashes anywhere (browsers strip them, or read a backslash as `/`);
    - the host is ASCII letters, digits, `-`, `_` and dots; a non-ASCII host is converted by
      UTS #46 / IDNA 2008 (`idna`, what browsers use), and refused when that fails or maps a
      character to anything outside that set (NFKC turns a fullwidth backslash or percent sign
      into the ASCII one);
      no empty label (`good.com..`, one final dot is the DNS root), labels at most 63 octets,
      the name at most 253; `xn--` labels must be valid Punycode;
    - a host ending in a number is an IPv4 address to browsers (`0x7f.1`, `127.1`): only the
      plain dotted form is accepted, as written; `[…]` must be an IPv6 address, without zone;
    - a port is 0-65535 in ASCII digits (or empty, as browsers allow);
    - the rest (path, query, fragment) goes out as signed, its non-ASCII characters as UTF-8
      percent-escapes (what a browser sends for them; an HTTP header is ASCII).
    """
    if not url:
        raise RefusedDestination("empty")
    if len(url) > MAX_DESTINATION_LENGTH:
        raise RefusedDestination("too_long")
    if not url.lower().startswith(ALLOWED_SCHEMES):
        raise RefusedDestination("scheme")
    if "\\" in url:
        raise RefusedDestination("backslash")
    if not url.isprintable() or any(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in url):
        raise RefusedDestination("whitespace_or_control")
    scheme, rest = url.split("://", 1)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        raise RefusedDestination("userinfo")
    host, port = _split_port(authority)
    if port and not (port.isascii() and port.isdigit() and int(port) <= MAX_PORT):
        raise RefusedDestination("port")
    location = f"{scheme}://{_checked_host(host)}{':' + port if port else ''}"
    return location + (tail if tail.isascii() else quote(tail, safe=ASCII_PRINTABLE))


def _split_port(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        close = authority.find("]")
        after = authority[close + 1 :] if close > 0 else "-"
        if after and not after.startswith(":"):
            raise RefusedDestination("no_host")
        return authority[: close + 1], after[1:] if after else None
    host, colon, port = authority.partition(":")
    return host, port if colon else None


def _checked_host(host: str) -> str:
    """The host as sent (ASCII), or RefusedDestination."""
    if not host or host.startswith("."):
        raise RefusedDestination("no_host")
    if "%" in host:  # browsers disagree on escaped hosts: the one a person reads may not be it
        raise RefusedDestination("host_escape")
    if host.startswith("["):
        import ipaddress  # only for IPv6 literals, rare: kept off the cold start

        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise RefusedDestination("host_ipv6") from None
        return host
    if not host.isascii():
        import idna  # requests' dependency; loaded only for the rare non-ASCII host

        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise RefusedDestination("host_idna") from None
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > MAX_HOST_LENGTH or not all(0 < len(label) <= MAX_LABEL_LENGTH for label in labels):
        raise RefusedDestination("host_length")
    if not HOST_NAME.fullmatch(name):
        raise RefusedDestination("host_character")
    if ENDS_IN_A_NUMBER.fullmatch(labels[-1]) and not IPV4.fullmatch(name):
        raise RefusedDestination("host_number")
    if any(label[:4].lower() == "xn--" for label in labels):
        import idna

        try:  # browsers refuse an A-label that is not valid Punycode of a valid U-label
            idna.decode(name)
        except (idna.IDNAError, UnicodeError):
            raise RefusedDestination("host_punycode") from None
    return host


@dataclass(frozen=True)
class CheckedClick:
    """A click whose destination may be followed; `record` is False for expired signatures."""

    destination: str
    location: str  # what `Location` says: `location_for(destination)`
    signature: str  # `verify`'s reason: OK, or one of AUTHENTIC (the sender's, not recorded)
    signed: bool
    scope: str | None

    @property
    def record(self) -> bool:
        return self.signature == OK


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
    why = OK
    if secrets:
        pairs = [
            (name, value)
            for name, values in query.items()
            for value in values
            if not (scope == EMAIL_SCOPE and name == USER_PARAM)
        ]
        ok, why = verify(
            pairs, secrets, max_age_seconds=parts.settings.signature_max_age_seconds, route=CLICK_PATH
        )
        if not ok and why not in AUTHENTIC:
            return why
        # The HMAC matched, only `t` is past the rules (expired, missing, ahead of our clock,
        # in milliseconds): the destination is still the sender's, so follow the link, but
        # record nothing, as the pixel records nothing for such a URL.
    elif not parts.settings.is_local:
        # No secret in AWS (the SSM parameter could not be read): an unsigned click would be an
        # open redirect on a public endpoint.
        return "no_secrets"
    try:
        location = location_for(destination)
    except RefusedDestination as problem:
        return f"destination_{problem}"
    return CheckedClick(destination, location, why, bool(secrets), scope)


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
    """A response whose `Location` goes out as given (`location_for`, already ASCII and
    checked). Werkzeug rewrites every Location through `iri_to_uri`, which lower-cases the
    scheme and, for a non-ASCII host, applies IDNA 2003 (NFKC): not the text that was checked."""

    exact_location: str = ""

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> Headers:
        headers = super().get_wsgi_headers(environ)
        headers["Location"] = self.exact_location
        return headers


def redirect_to(location: str) -> Response:
    """302 to `location` (`location_for` of the signed destination). `no-referrer` keeps the
    click URL, with its user id and signature, from reaching the destination's logs."""
    response = ExactRedirect(status=302)
    response.headers.update(NO_STORE)
    response.headers["Location"] = location
    response.exact_location = location
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
            log.warning("click_not_recorded", extra={"reason": checked.signature})
            parts.metrics.count(f"click_{checked.signature}", reason=checked.signature)
        return redirect_to(checked.location)
