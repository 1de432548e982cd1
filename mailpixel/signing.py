"""Signed pixel URLs: nobody without the secret can make a URL that the pixel records.

The algorithm, small enough to write again in any language (docs/tracking/signing.md has Node and PHP):

1. Take every query parameter except `sig`, as decoded text (the values, not how a mail
   client happened to percent-encode them).
2. Encode each name and value as UTF-8, then percent-encode every byte outside the RFC 3986
   unreserved set `A-Z a-z 0-9 - . _ ~` as `%XX` with upper-case hex (a space is `%20`).
3. Sort the `name=value` pairs by encoded name, then encoded value, and join them with `&`.
4. HMAC-SHA256 of that ASCII string, keyed with the secret's UTF-8 bytes.
5. base64url of the 32-byte digest, without `=` padding, cut to its first 22 characters
   (132 bits). That is `sig`.

Each parameter is covered, so changing, adding or repeating one breaks the signature. `t` is
the time the URL was issued, in epoch seconds; it is covered like the others and lets the
pixel refuse URLs older than `MAILPIXEL_SIGNATURE_MAX_AGE_DAYS`. With a maximum age set, `t`
is required (an undated URL would never expire) and may be at most `MAX_CLOCK_SKEW` seconds in
the future (a `t` in milliseconds, or far ahead, would never expire either).

Pixel and click URLs share the scheme, and the route is bound by what is signed: a click URL
always signs `url` (its destination), a pixel URL never carries it. The pixel refuses a signed
query holding any click-only parameter (`url`, `scope`, `hp`) and `/click` one without `url`
(`route_matches`), so a click URL's query sent to `/pixel` records nothing and no signature
verifies on both routes, while every URL already issued stays valid: the signing steps above
are unchanged.

Signed IDs are the IDs stored: the URL makers refuse an ID that the pixel's cleaning would change
(`require_clean_id`, with `model.ids.cleaning_changes`, the rule the pixel stores by).

This module is on the pixel path: it imports only the standard library's hmac, hashlib,
base64 and urllib.parse (which Werkzeug has loaded already), the ID limits of
`mailpixel.model.events` and the ID cleaning of `mailpixel.model.ids` (which the pixel has
loaded already).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from urllib.parse import quote

from mailpixel.model.events import OpenEvent
from mailpixel.model.ids import id_problem

PIXEL_PATH = "/pixel"
SIG_PARAM = "sig"
TIME_PARAM = "t"
SIG_LENGTH = 22  # base64url characters: 132 bits of the 256-bit HMAC
UNRESERVED = "-._~"  # with ASCII letters and digits, which `quote` never encodes

OK = "ok"
SIG_MISSING = "sig_missing"
SIG_INVALID = "sig_invalid"
SIG_EXPIRED = "sig_expired"
T_INVALID = "t_invalid"
T_MISSING = "t_missing"
T_FUTURE = "t_future"
# How far ahead of the pixel's clock a signed `t` may be: senders' clocks drift a little.
MAX_CLOCK_SKEW = 300
NO_SECRETS = "no_secrets"
WRONG_ROUTE = "wrong_route"
# What `verify` answers after the HMAC matched: the URL is the sender's, only its `t` is past
# the rules. The pixel records nothing; `/click` still follows the link (and records nothing).
AUTHENTIC = (SIG_EXPIRED, T_MISSING, T_INVALID, T_FUTURE)

Params = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(params: Params) -> list[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    return [(str(name), str(value)) for name, value in items]


def _encode(text: str) -> str:
    # `errors="surrogatepass"` keeps a lone surrogate from raising; no sender can sign one anyway.
    return quote(text.encode("utf-8", errors="surrogatepass"), safe=UNRESERVED)


def canonical(params: Params) -> str:
    """The signed string: every parameter but `sig`, RFC 3986-encoded, sorted, joined by `&`."""
    encoded = sorted((_encode(name), _encode(value)) for name, value in _pairs(params) if name != SIG_PARAM)
    return "&".join(f"{name}={value}" for name, value in encoded)


def sign(params: Params, secret: str) -> str:
    """The `sig` value for these parameters (any `sig` among them is ignored)."""
    digest = hmac.new(secret.encode("utf-8"), canonical(params).encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")[:SIG_LENGTH]


def require_clean_id(name: str, value: str) -> None:
    """Refuse an ID the pixel or the click route would store as something else: cut (too long),
    trimmed, or stripped of control and format characters (`model.ids.cleaning_changes`, the
    very rule they store by). The URL would be signed for one ID and its opens and clicks
    stored under another."""
    problem = id_problem(value)
    if problem:
        raise ValueError(f"{name} {problem}")


def make_url(
    base_url: str,
    email_id: str,
    user_id: str,
    secret: str | None,
    t: int | None = None,
) -> str:
    """A pixel URL for one email and one recipient, signed with `secret`.

    `base_url` is where the service answers (`https://abc.execute-api.us-east-1.amazonaws.com`
    or `http://127.0.0.1:5000`); `/pixel` is added unless the URL already ends with it. With no
    secret the URL is unsigned, which only a pixel without signing secrets records. `t`, the
    issue time in epoch seconds, is included only when given.
    """
    for name, value in (("email_id", email_id), ("user_id", user_id)):
        require_clean_id(name, value)
    params: dict[str, str] = {"email_id": email_id, "user_id": user_id}
    if t is not None:
        params[TIME_PARAM] = str(int(t))
    endpoint = base_url.rstrip("/")
    if not endpoint.endswith(PIXEL_PATH):
        endpoint += PIXEL_PATH
    query = canonical(params)
    if secret:
        query += f"&{SIG_PARAM}={sign(params, secret)}"
    return f"{endpoint}?{query}"


def verify(
    params: Params,
    secrets: Sequence[str],
    *,
    max_age_seconds: int | None = None,
    now: float | None = None,
    route: str | None = None,
) -> tuple[bool, str]:
    """Check `sig` against every secret in constant time; returns (ok, reason).

    `route` is the path the request came to (`PIXEL_PATH` or `CLICK_PATH`); a signature made
    for the other route is refused (`wrong_route`, see "Routes" above). None checks the
    signature alone, for tools and tests that inspect a URL.

    Reasons: `ok`, `sig_missing`, `sig_invalid` (no secret matches, or the signature is cut
    short), `sig_expired` (a signed `t` older than `max_age_seconds`), and, when there is a
    maximum age to check, `t_missing` (no `t`), `t_invalid` (a `t` that is not whole seconds)
    and `t_future` (a `t` more than `MAX_CLOCK_SKEW` seconds ahead); `no_secrets`
    (nothing to verify with: the caller decides whether unsigned URLs are allowed).
    Every secret is tried even after a match, so timing says nothing about which one matched.
    """
    if not secrets:
        return False, NO_SECRETS
    pairs = _pairs(params)
    if route is not None and not route_matches(route, {name for name, _ in pairs}):
        return False, WRONG_ROUTE
    given = next((value for name, value in pairs if name == SIG_PARAM), "")
    if not given:
        return False, SIG_MISSING
    message = canonical(pairs).encode("ascii")
    given_bytes = given.encode("utf-8", errors="surrogatepass")
    matched = False
    for secret in secrets:
        digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=")[:SIG_LENGTH]
        matched |= hmac.compare_digest(expected, given_bytes)
    if not matched:
        return False, SIG_INVALID
    if max_age_seconds:
        issued = next((value for name, value in pairs if name == TIME_PARAM), None)
        if issued is None:
            return False, T_MISSING
        try:
            age = (time.time() if now is None else now) - int(issued)
        except ValueError:
            return False, T_INVALID
        if age > max_age_seconds:
            return False, SIG_EXPIRED
        if age < -MAX_CLOCK_SKEW:
            return False, T_FUTURE
    return True, OK


# Click URLs: the same scheme, with the destination as one more signed parameter (`url`).
# `/click?email_id=…&[scope=email&][t=…&]url=…&user_id=…&sig=…`: changing the destination, the
# email or the user breaks the signature, so the click route redirects only where the sender
# pointed (and a pixel URL, having no `url`, is no click URL).
CLICK_PATH = "/click"
URL_PARAM = "url"
USER_PARAM = "user_id"
SCOPE_PARAM = "scope"
# Email-scoped signatures cover the email and the link but not `user_id`, which an ESP's merge
# tag fills in per recipient after signing. Anyone holding such a URL can change the user id
# (never the destination), so clicks may be attributed to the wrong person: off by default.
EMAIL_SCOPE = "email"
# A honeypot link: one signed click URL per recipient that no person can see or reach
# (`instrument` adds it). `hp=1` is a signed parameter, so nobody can make a real link look like
# one; a request to it is a machine click (`honeypot`), and it marks the recipient's other clicks
# of the email within a short window as machine too.
HONEYPOT_PARAM = "hp"
HONEYPOT_VALUE = "1"


# Routes. A click signature always covers `url` (`ClickSigner` puts it in every click URL, and
# `/click` refuses a query without one); a pixel URL never carries it. So `url` is the route
# marker inside what is signed: the pixel refuses a signed query with any click-only parameter,
# and `/click` one without `url`. Neither can be removed or added without breaking the HMAC, so
# no signature verifies on both routes, and every URL already issued keeps working (a marker
# hashed into new click signatures would have broken every click URL already sent, or needed a
# legacy path with this same rule behind it).
CLICK_ONLY_PARAMS = frozenset((URL_PARAM, SCOPE_PARAM, HONEYPOT_PARAM))


def route_matches(route: str, names: set[str]) -> bool:
    """Whether a query with these parameter names may be verified for `route`."""
    if route == CLICK_PATH:
        return URL_PARAM in names
    return names.isdisjoint(CLICK_ONLY_PARAMS)


def click_endpoint(base_url: str) -> str:
    """`…/click` on the service at `base_url`, which may be the pixel URL (`…/pixel`)."""
    endpoint = base_url.rstrip("/")
    if endpoint.endswith(PIXEL_PATH):
        endpoint = endpoint[: -len(PIXEL_PATH)]
    return endpoint if endpoint.endswith(CLICK_PATH) else endpoint + CLICK_PATH


class ClickSigner:
    """Click URLs of one email, signed fast enough for 10,000 recipients x 50 links.

    The canonical string sorts by name, and `user_id` sorts after every other click
    parameter (`email_id`, `hp`, `scope`, `t`, `url`), so the canonical string of a click is the
    canonical string of its link's parameters followed by `&user_id=…`. The HMAC of that
    common part is computed once per link and copied per recipient: the same bytes `sign`
    would hash (the tests compare both), a fraction of the work.

    `t` is the issue time (epoch seconds) put in every URL, or None. `scoped` asks for
    email-scoped signatures: they cover every parameter but the user id (`email_id`,
    `scope=email`, `url`, `t`, `hp`), and the user id is appended outside them (for ESP merge tags).

    IDs the click route would cut or clean (`require_clean_id`) raise ValueError, as in
    `make_url`: the email id here, the user id in `url` (not the merge tag of email-scoped
    URLs, which is no ID until the ESP fills it in).
    """

    def __init__(self, base_url: str, email_id: str, secret: str | None, t: int | None, scoped: bool) -> None:
        require_clean_id("email_id", email_id)
        self.endpoint = click_endpoint(base_url)
        self.secret = secret
        self.email_scoped = scoped
        self._fixed: dict[str, str] = {"email_id": email_id}
        if t is not None:
            self._fixed[TIME_PARAM] = str(int(t))
        if scoped:
            self._fixed[SCOPE_PARAM] = EMAIL_SCOPE
        self._key = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256) if secret else None
        self._links: dict[tuple[str, bool], tuple[str, hmac.HMAC | None]] = {}
        # (user id, its checked and encoded `&user_id=…`): a recipient's links come one after
        # another, so the check and the percent-encoding run once per recipient, not per link.
        # One tuple, swapped whole, so threads sharing a signer never pair a user with another's.
        self._user: tuple[str, str] | None = None

    def _user_part(self, user_id: str) -> str:
        last = self._user
        if last is None or last[0] != user_id:
            require_clean_id("user_id", user_id)
            last = self._user = (user_id, f"&{USER_PARAM}={_encode(user_id)}")
        return last[1]

    def _link(self, destination: str, honeypot: bool) -> tuple[str, hmac.HMAC | None]:
        cached = self._links.get((destination, honeypot))
        if cached is None:
            params = {**self._fixed, URL_PARAM: destination}
            if honeypot:
                params[HONEYPOT_PARAM] = HONEYPOT_VALUE
            query = canonical(params)
            state = None
            if self._key is not None:
                state = self._key.copy()
                state.update(query.encode("ascii"))
            cached = self._links[(destination, honeypot)] = (query, state)
        return cached

    def url(self, destination: str, user_id: str, *, honeypot: bool = False) -> str:
        """The click URL of `destination` for `user_id`.

        Email-scoped: `user_id` is appended after `sig`, outside the signature, exactly as
        given: pass the ESP's merge tag (`{{user_id}}`, `*|UNIQID|*`, …), which the ESP fills in.
        With `honeypot=True` the URL also carries the signed `hp=1`: the hidden link no person
        can reach. It is one more signed parameter, so `sign` over the same parameters plus
        `hp=1` gives the same signature.
        """
        query, state = self._link(destination, honeypot)
        if self.email_scoped:
            if state is not None:
                query += f"&{SIG_PARAM}={_sig_of(state.copy())}"
            return f"{self.endpoint}?{query}&{USER_PARAM}={user_id}"
        user = self._user_part(user_id)
        if state is None:
            return f"{self.endpoint}?{query}{user}"
        state = state.copy()
        state.update(user.encode("ascii"))
        return f"{self.endpoint}?{query}{user}&{SIG_PARAM}={_sig_of(state)}"


def _sig_of(state: hmac.HMAC) -> str:
    return base64.urlsafe_b64encode(state.digest()).decode("ascii").rstrip("=")[:SIG_LENGTH]


def make_click_url(
    base_url: str,
    email_id: str,
    user_id: str,
    destination: str,
    secret: str | None,
    t: int | None = None,
) -> str:
    """One signed click URL: a click on it is recorded and redirected (302) to `destination`.

    Raises ValueError for an email or user id the click route would cut, as `make_url` does."""
    return ClickSigner(base_url, email_id, secret, t, scoped=False).url(destination, user_id)


def release(
    event: OpenEvent, secrets: Sequence[str], *, max_age_seconds: int | None = None
) -> tuple[OpenEvent | None, str]:
    """Verify an open that was quarantined unverified; returns (the open to store, reason).

    The open's own arrival time is the clock, so a URL that was valid when it was fetched is
    still valid when the secrets come back days later. An open that fails is not stored: it
    would have been refused had the secrets been there. One without `unverified` passes as is.
    """
    if event.unverified is None:
        return event, OK
    pairs = [(str(pair[0]), str(pair[1])) for pair in event.unverified if len(pair) == 2]
    opened = datetime.fromisoformat(event.opened_at.replace("Z", "+00:00")).timestamp()
    ok, why = verify(pairs, secrets, max_age_seconds=max_age_seconds, now=opened, route=PIXEL_PATH)
    if not ok:
        return None, why
    return replace(event, unverified=None, signed=True), OK
