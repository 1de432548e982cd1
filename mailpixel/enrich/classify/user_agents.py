"""User agent → `client` = {name, version, os, device}, with mail clients named as such.

`ua-parser` (uap-core's regexes, with its Rust accelerator when installed) does the general
parsing; a short list of mail-client rules runs first, because a mail client's UA usually looks
like the WebView it renders with and uap-core does not name most of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import ua_parser

# A bare `Mozilla/5.0`: what Apple Mail Privacy Protection's prefetch sends, and no real
# browser or mail client ever does.
BARE_MOZILLA = re.compile(r"^\s*Mozilla/5\.0\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class MailRule:
    """A mail client recognised by a token in its UA; `version` is a regex group, if any."""

    name: str
    pattern: re.Pattern[str]
    proxy_ua: bool = False  # the UA is an image proxy's: its OS and browser parts are fake


MAIL_RULES: tuple[MailRule, ...] = (
    MailRule("Gmail", re.compile(r"GoogleImageProxy|via ggpht\.com"), proxy_ua=True),
    MailRule("Yahoo Mail", re.compile(r"YahooMailProxy"), proxy_ua=True),
    MailRule(
        "Outlook", re.compile(r"Outlook-(?:iOS|Android)/[\w.]+ \((?P<v>[\d.]+)\)|Outlook-(?:iOS|Android)")
    ),
    MailRule("Outlook", re.compile(r"Microsoft Outlook (?P<v>\d+(?:\.\d+)*)|Microsoft Outlook")),
    MailRule("Thunderbird", re.compile(r"Thunderbird/(?P<v>[\d.]+\w*)")),
    MailRule(
        "Yahoo Mail", re.compile(r"YahooMobileMail/(?P<v>[\d.]+)|com\.yahoo\.mobile\.client\.android\.mail")
    ),
    MailRule("Gmail", re.compile(r"com\.google\.android\.gm\b|\bGmail/(?P<v>[\d.]+)")),
    MailRule("Windows Mail", re.compile(r"Windows NT 10\.0;.*WebView/3\.0")),
    MailRule("eM Client", re.compile(r"eM Client/(?P<v>[\d.]+)")),
    MailRule("Postbox", re.compile(r"Postbox/(?P<v>[\d.]+)")),
    MailRule("Evolution", re.compile(r"Evolution/(?P<v>[\d.]+)")),
    MailRule("Airmail", re.compile(r"Airmail/(?P<v>[\d.]+)|Airmail")),
)

# iOS/iPadOS Mail renders in a WKWebView and sends the system WebKit UA without a `Safari/` or
# `Version/` token; in-app browsers add their own token (FBAN, GSA, CriOS, ...), Mail adds none.
IOS_MAIL = re.compile(r"\((?:iPhone|iPad|iPod)[^)]*\) AppleWebKit/[\d.]+ \(KHTML, like Gecko\) Mobile/\w+$")

UA_FAMILY_NAMES = {"Mobile Safari UI/WKWebView": "Apple Mail"}


def _join(*parts: Any) -> str | None:
    text = " ".join(str(p) for p in parts if p not in (None, ""))
    return text or None


def _version(obj: Any) -> str | None:
    parts = [obj.major, obj.minor, obj.patch]
    out: list[str] = []
    for part in parts:
        if part in (None, ""):
            break
        out.append(str(part))
    return ".".join(out) or None


@lru_cache(maxsize=4096)
def _parse(user_agent: str) -> tuple[tuple[str, Any], ...]:
    result = ua_parser.parse(user_agent)
    ua, os_, device = result.user_agent, result.os, result.device
    name = ua.family if ua else None
    version = _version(ua) if ua else None
    os_text = _join(os_.family, _version(os_)) if os_ else None
    device_text = device.family if device and device.family != "Other" else None
    for rule in MAIL_RULES:
        match = rule.pattern.search(user_agent)
        if match:
            name = rule.name
            version = match.groupdict().get("v") if match.groupdict().get("v") else None
            if rule.proxy_ua:
                os_text = device_text = None
            break
    else:
        if IOS_MAIL.search(user_agent.strip()):
            name, version = "Apple Mail", None
        elif name in UA_FAMILY_NAMES:
            name = UA_FAMILY_NAMES[name]
    if not name or name == "Other":
        name = "Other"
    return (("name", name), ("version", version), ("os", os_text), ("device", device_text))


def parse_client(user_agent: str | None) -> dict[str, Any]:
    """`client` for a UA: {name, version, os, device}; `name` is "Other" when nothing is known.

    Cached per UA string: opens repeat the same few hundred UAs, so a warm instance parses each once.
    """
    return dict(_parse((user_agent or "").strip()))


def is_bare(user_agent: str | None) -> bool:
    """An empty or bare `Mozilla/5.0` user agent."""
    return not (user_agent or "").strip() or bool(BARE_MOZILLA.match(user_agent or ""))
