"""Was a click a person following a link, or a machine (a mail security gateway's link scanner,
a bot) fetching it? Link scanners (Microsoft Safe Links, Mimecast, Proofpoint, Barracuda, …)
follow every link of a message on delivery, so their clicks must not count as engagement.

The per-click rules (`classify_click`) run in order; the first that matches decides
(`ClickVerdict.rule`). Each verdict carries its `evidence`: the rule, the UA token that matched,
the owner of the address's range, and the seconds between the URL's signed issue time `t` and
the click. Opens' verdicts are in `machine.py`; the UA patterns and ranges are shared with them.

The sequence rules (`sequence_verdicts`) look at one recipient's clicks of one email together:
a scanner with a browser user agent from an unlisted cloud address looks like a person click by
click, but it follows every link at once, the hidden honeypot included. They can only turn a
human click into a machine one; enrichment applies them after each batch (`enrich/clicks.py`),
so a click counted human can be revised when the rest of its sequence arrives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailpixel.enrich.classify.machine import BOT, BOT_UA, SCANNER_UA, SECURITY_SCANNER
from mailpixel.enrich.classify.ranges import IpRanges
from mailpixel.enrich.classify.user_agents import is_bare

# People open, read and then click; scanners fetch within seconds of delivery. The URL's `t`
# is when it was made, at or before sending, so a click this soon after `t` came sooner still
# after delivery. A person waiting for a sign-in or confirmation email can be quick, so the
# bar is low, and the seconds are kept as evidence for stricter readings.
# Public reports put scanners' fetches tens of seconds to minutes after delivery, overlapping
# people's quickest clicks, so no higher bar would catch them without flagging people: the
# sequence rules below catch them instead (docs/enrichment/click-verdicts.md).
FAST_CLICK_SECONDS = 5
HEAD_REQUEST = "head_request"
TOO_FAST = "too_fast"
HONEYPOT = "honeypot"
BURST = "burst"
MULTI_SOURCE = "multi_source"


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
    honeypot: bool = False,
) -> ClickVerdict:
    """Decide from the method, the UA, the full address, the parsed client, the seconds since
    the URL's issue time (None when the URL had no `t`) and whether the link was a honeypot."""
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

    if honeypot:  # a link no person can see or reach: whatever followed it was no person
        return verdict(True, SECURITY_SCANNER, HONEYPOT)
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


@dataclass(frozen=True)
class SequenceRules:
    """The sequence rules' thresholds (`Settings.click_*`, with their defaults)."""

    burst_links: int
    burst_seconds: float
    multi_source_seconds: float
    honeypot_window_seconds: float

    @property
    def reach(self) -> float:
        """How far (seconds) before or after a click another click can change its verdict."""
        return max(self.burst_seconds, self.multi_source_seconds, self.honeypot_window_seconds)


@dataclass(frozen=True)
class SequenceClick:
    """What the sequence rules read of one stored click of one recipient and one email."""

    key: str  # click_key
    at: float  # epoch seconds
    url: str
    ip: str | None = None
    honeypot: bool = False


def sequence_verdicts(clicks: Sequence[SequenceClick], rules: SequenceRules) -> dict[str, dict[str, Any]]:
    """The evidence of every click the sequence rules make a machine's, by click key.

    `clicks` are one recipient's clicks of one email (any order). In order of strength:
    - `honeypot`: within `honeypot_window_seconds` of a honeypot click (the evidence names it);
    - `multi_source`: the same link clicked from another address within `multi_source_seconds`;
    - `burst`: one of `burst_links` or more distinct links clicked within `burst_seconds`.
    An open is never an input: an open and a click from one address is what a person's desktop
    client does, not a sign of a machine.
    """
    ordered = sorted(clicks, key=lambda c: (c.at, c.key))
    found: dict[str, dict[str, Any]] = {}

    def mark(click: SequenceClick, evidence: dict[str, Any]) -> None:
        found.setdefault(click.key, evidence)

    traps = [c for c in ordered if c.honeypot]
    for click in ordered:
        near = [
            t for t in traps if t.key != click.key and abs(t.at - click.at) <= rules.honeypot_window_seconds
        ]
        if near and not click.honeypot:
            trap = min(near, key=lambda t: abs(t.at - click.at))
            mark(
                click,
                {
                    "rule": HONEYPOT,
                    "honeypot_click": trap.key,
                    "seconds_from_honeypot": round(click.at - trap.at, 3),
                },
            )
    for i, first in enumerate(ordered):
        for other in ordered[i + 1 :]:
            if other.at - first.at > rules.multi_source_seconds:
                break
            if other.url == first.url and first.ip and other.ip and other.ip != first.ip:
                for click, twin in ((first, other), (other, first)):
                    mark(click, {"rule": MULTI_SOURCE, "other_click": twin.key, "addresses": 2})
    for i, first in enumerate(ordered):
        window = [c for c in ordered[i:] if c.at - first.at <= rules.burst_seconds]
        links = {c.url for c in window}
        if len(links) >= rules.burst_links:
            for click in window:
                mark(
                    click,
                    {
                        "rule": BURST,
                        "links": len(links),
                        "within_seconds": rules.burst_seconds,
                        "first_click": first.key,
                    },
                )
    return found
