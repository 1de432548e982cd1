"""User agent → `client` = {name, version, os, device}, with mail clients named as such.

`ua-parser` (uap-core's regexes, with its Rust accelerator when installed) does the general
parsing; a list of mail-client rules runs first, because a mail client's UA usually looks like
the WebView it renders with and uap-core does not name most of them. Each rule's evidence is in
docs/enrichment/mail-clients.md; the corpus `tests/fixtures/ua_corpus.json` holds a real UA for each.
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
    """A mail client recognised by a token in its UA; `version` is the regex group `v`, if any."""

    name: str
    pattern: re.Pattern[str]
    proxy_ua: bool = False  # the UA is an image proxy's: its OS and browser parts are fake


def _rule(name: str, pattern: str, *, proxy_ua: bool = False, flags: int = 0) -> MailRule:
    return MailRule(name, re.compile(pattern, flags), proxy_ua)


MAIL_RULES: tuple[MailRule, ...] = (
    # Mailbox providers' image proxies: the UA is the proxy's, not the reader's.
    _rule("Gmail", r"GoogleImageProxy|via ggpht\.com", proxy_ua=True, flags=re.IGNORECASE),
    _rule("Yahoo Mail", r"YahooMailProxy", proxy_ua=True, flags=re.IGNORECASE),
    _rule("Rambler Mail", r"RamblerMail/(?P<v>[\d.]+) \(incompatible; ImageProxy", proxy_ua=True),
    _rule("Seznam Email", r"SeznamEmailProxy/(?P<v>[\d.]+)", proxy_ua=True),
    _rule("ukr.net Mail", r"via secureurl\.fwdcdn\.com - mail\.ukr\.net proxy", proxy_ua=True),
    # Desktop and mobile apps, by their own token.
    _rule("Outlook", r"Outlook-(?:iOS|Android)/[\w.]+ \((?P<v>[\d.]+)\)|Outlook-(?:iOS|Android)"),
    _rule("Outlook", r"Microsoft Outlook (?P<v>\d+(?:\.\d+)*)|Microsoft Outlook"),
    _rule("Outlook", r"MacOutlook/(?P<v>[\d.]+)|^Outlook/(?P<cfv>[\d.]+) CFNetwork/"),
    _rule("Windows Live Mail", r"^Outlook-Express/(?P<v>[\d.]+)"),
    _rule("Thunderbird", r"(?:Thunderbird|Icedove)/(?P<v>[\d.]+\w*)"),
    _rule("Yahoo! JAPAN Mail", r"jp\.co\.yahoo\.ymail/(?P<v>[\d.]+)"),
    _rule(
        "Yahoo Mail",
        r"YahooMobileMail/(?P<v>[\d.]+)|com\.yahoo\.mobile\.client\.android\.mail|"
        r"YahooMobile/[\d.]+ \(mail; |^Yahoo(?:%20| )Mail/",
    ),
    _rule("Gmail", r"com\.google\.android\.gm\b|\bGmail/(?P<v>[\d.]+)|^Android-(?:Gmail|Mail)/"),
    _rule("Windows Mail", r"WindowsMail/(?P<v>[\d.]+)|Windows NT 10\.0;.*WebView/3\.0"),
    _rule("eM Client", r"eM ?Client/(?P<v>[\d.]+)"),
    _rule("Postbox", r"Postbox[/ ](?P<v>[\d.]+\w*)"),
    _rule("Evolution", r"Evolution/(?P<v>[\d.]+)"),
    _rule("Airmail", r"Airmail/(?P<v>[\d.]+)|Airmail"),
    _rule("KMail", r"\bkmail2?/(?P<v>[\d.]+)"),
    _rule("Mailbird", r"Mailbird/(?P<v>[\d.]+)"),
    _rule("Mailspring", r"Mailspring/(?P<v>[\d.]+)"),
    _rule("BlueMail", r"BlueMail/(?P<v>[\d.]+)"),
    _rule("Foxmail", r"Foxmail/(?P<v>[\d.]+)"),
    _rule("Mail Master", r"MailMaster(?:PC|_Android_Mobile)?/(?P<v>[\d.]+)"),
    _rule("The Bat!", r"^The Bat! (?P<v>[\d.]+)"),
    _rule("Lotus Notes", r"Lotus-Notes/(?P<v>[\d.]+)"),
    _rule("MailBar", r"^MailBar/(?P<v>[\d.]+)"),
    _rule("Sparrow", r"\bSparrow/(?P<v>[\d.]+)"),
    _rule("Spark", r"^Spark/(?P<v>[\d.]+) CFNetwork/"),
    _rule("Superhuman", r"^Superhuman\b"),
    _rule("NAVER Mail", r"NaverMailApp/(?P<v>[\d.]+)"),
    _rule("Daum Mail", r"DaumMail/(?P<v>[\d.]+)"),
    _rule("MailApp", r"\bmailapp/(?P<v>[\d.]+)"),
    _rule("Mail for Exchange", r"MailforExchange"),
    # Apple Mail's own networking (CFNetwork) and Exchange client: `Mail/<build>`.
    _rule("Apple Mail", r"(?:^|[\s;])Mail/(?P<v>[\d.]+)"),
)

# iOS/iPadOS Mail renders in a WKWebView and sends the system WebKit UA without a `Safari/` or
# `Version/` token; in-app browsers add their own token (FBAN, GSA, CriOS, ...), Mail adds none.
IOS_MAIL = re.compile(r"\((?:iPhone|iPad|iPod)[^)]*\) AppleWebKit/[\d.]+ \(KHTML, like Gecko\) Mobile/\w+$")

# uap-core's name for any iOS WebView. Only the bare system UA is Apple Mail (IOS_MAIL above);
# with another app's token after it, it is that app's web view, whose owner is not known here.
UA_FAMILY_NAMES = {"Mobile Safari UI/WKWebView": "iOS WebView"}


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


def mail_rule(user_agent: str) -> tuple[MailRule, re.Match[str]] | None:
    """The first mail-client rule whose token is in the UA, with the match (the evidence)."""
    for rule in MAIL_RULES:
        match = rule.pattern.search(user_agent)
        if match:
            return rule, match
    return None


@lru_cache(maxsize=4096)
def _parse(user_agent: str) -> tuple[tuple[str, Any], ...]:
    result = ua_parser.parse(user_agent)
    ua, os_, device = result.user_agent, result.os, result.device
    name = ua.family if ua else None
    version = _version(ua) if ua else None
    os_text = _join(os_.family, _version(os_)) if os_ else None
    device_text = device.family if device and device.family != "Other" else None
    found = mail_rule(user_agent)
    if found:
        rule, match = found
        name = rule.name
        groups = {k: v for k, v in match.groupdict().items() if v}
        version = next(iter(groups.values()), None)
        if rule.proxy_ua:
            os_text = device_text = None
    elif IOS_MAIL.search(user_agent.strip()):
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


def proxy_token(user_agent: str | None) -> tuple[str, str] | None:
    """(client name, matched text) when the UA is a mailbox provider's image proxy's."""
    found = mail_rule((user_agent or "").strip())
    if found is None or not found[0].proxy_ua:
        return None
    return found[0].name, found[1].group(0)


def is_bare(user_agent: str | None) -> bool:
    """An empty or bare `Mozilla/5.0` user agent."""
    return not (user_agent or "").strip() or bool(BARE_MOZILLA.match(user_agent or ""))
