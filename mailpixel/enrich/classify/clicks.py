"""Was a click a person following a link, or a machine (a mail security gateway's link scanner,
a bot) fetching it? Link scanners (Microsoft Safe Links, Mimecast, Proofpoint, Barracuda, …)
follow every link of a message on delivery, so their clicks must not count as engagement.

The rules run in order; the first that matches decides (`ClickVerdict.rule`). Each verdict
carries its `evidence`: the rule, the UA token that matched, the owner of the address's range,
and the seconds between the URL's signed issue time `t` and the click. Opens' verdicts are in
`machine.py`; the UA patterns and ranges are shared with them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailpixel.enrich.classify.machine import BOT, BOT_UA, SCANNER_UA, SECURITY_SCANNER
from mailpixel.enrich.classify.ranges import IpRanges
from mailpixel.enrich.classify.user_agents import is_bare

# People open, read and then click; scanners fetch within seconds of delivery. The URL's `t`
# is when it was made, at or before sending, so a click this soon after `t` came sooner still
# after delivery. A person waiting for a sign-in or confirmation email can be quick, so the
# bar is low, and the seconds are kept as evidence for stricter readings.
FAST_CLICK_SECONDS = 5
HEAD_REQUEST = "head_request"
TOO_FAST = "too_fast"


@dataclass(frozen=True)
class ClickVerdict:
    machine_click: bool
    machine_reason: str | None = None
    rule: str = "human"
    evidence: dict[str, Any] = field(default_factory=dict)


def seconds_since_issue(issued_t: Any, at_epoch: float | None) -> int | None:
    """Whole seconds from the URL's issue time `t` to the request; None when either is unknown."""
    if at_epoch is None or isinstance(issued_t, bool) or not isinstance(issued_t, int | float):
        return None
    return int(at_epoch - issued_t)


def _token(pattern: re.Pattern[str], ua: str) -> str | None:
    match = pattern.search(ua)
    return match.group(0).lower() if match else None


def classify_click(
    user_agent: str | None,
    ip: str | None,
    client: Mapping[str, Any],
    ranges: IpRanges,
    *,
    method: str = "GET",
    seconds: int | None = None,
) -> ClickVerdict:
    """Decide from the method, the UA, the full address, the parsed client and the seconds since
    the URL's issue time (None when the URL had no `t`)."""
    ua = (user_agent or "").strip()
    owner = ranges.owner(ip)
    # How far the range alone can be trusted (`ranges.CERTAINTIES`), kept beside its owner.
    evidence: dict[str, Any] = {
        "range_owner": owner,
        "range_certainty": ranges.doubt(owner),
        "seconds_since_issue": seconds,
    }

    def verdict(machine: bool, reason: str | None, rule: str, token: str | None = None) -> ClickVerdict:
        found = {"rule": rule, "ua_token": token, **evidence}
        return ClickVerdict(machine, reason, rule, {k: v for k, v in found.items() if v is not None})

    scanner_token = _token(SCANNER_UA, ua)
    if scanner_token:
        return verdict(True, SECURITY_SCANNER, "scanner_user_agent", scanner_token)
    if owner and ranges.category(owner) == "scanner":
        return verdict(True, SECURITY_SCANNER, f"scanner_range:{owner}")
    if method.upper() == "HEAD":
        return verdict(True, SECURITY_SCANNER, HEAD_REQUEST)
    if seconds is not None and 0 <= seconds < FAST_CLICK_SECONDS:
        return verdict(True, SECURITY_SCANNER, TOO_FAST)
    if not ua:
        return verdict(True, BOT, "empty_user_agent")
    bot_token = _token(BOT_UA, ua) or ("spider" if client.get("device") == "Spider" else None)
    if bot_token:
        return verdict(True, BOT, "bot_user_agent", bot_token)
    if is_bare(ua):
        return verdict(True, BOT, "bare_user_agent", ua.lower())
    return verdict(False, None, "human")
