"""Was an open a person reading, or a machine fetching? And through whose proxy?

The rules run in order; the first that matches decides. Each has a name (`Verdict.rule`), so
logs and tests can say which rule fired; the README lists them with their sources.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailpixel.enrich.classify.ranges import IpRanges
from mailpixel.enrich.classify.user_agents import is_bare

APPLE_MPP = "apple_mpp"
SECURITY_SCANNER = "security_scanner"
BOT = "bot"

# Tokens that link/attachment scanners of mail security gateways put in their user agents.
SCANNER_UA = re.compile(
    r"barracuda|mimecast|proofpoint|pphosted|urldefense|symantec|messagelabs|trend ?micro|"
    r"forcepoint|websense|sophos|ironport|cisco[- ]?(?:esa|secure ?email)|fireeye|trellix|avanan|"
    r"check ?point|zscaler|bitdefender|safe ?links|microsoft office existence discovery|"
    r"cloudmark|spamtitan|hornet ?security|vade ?secure|libraesva|ironscales|abnormal ?security",
    re.IGNORECASE,
)

# Crawlers, monitors, HTTP libraries and headless browsers: no person behind them.
BOT_UA = re.compile(
    r"bot\b|bot/|crawler|crawl|spider|slurp|headless|phantomjs|puppeteer|playwright|selenium|"
    r"curl/|wget/|python-requests|python-urllib|aiohttp|httpx|go-http-client|java/|okhttp|"
    r"libwww-perl|axios/|node-fetch|undici|scrapy|facebookexternalhit|bingpreview|preview|"
    r"monitor|uptime|pingdom|datadog|lighthouse|embedly|feedfetcher",
    re.IGNORECASE,
)

# Gmail's proxy's UA says Windows XP and Firefox 11 whatever the reader runs.
GOOGLE_PROXY_SIGNATURE = re.compile(r"Windows NT 5\.1; rv:11\.0\) Gecko Firefox/11\.0")


@dataclass(frozen=True)
class Verdict:
    machine_open: bool
    machine_reason: str | None = None
    proxy: str | None = None
    rule: str = "human"


def classify(user_agent: str | None, ip: str | None, client: Mapping[str, Any], ranges: IpRanges) -> Verdict:
    """Decide from the UA, the full IP (pending_ip or ip) and the parsed client.

    Only the open itself is known here (no delivery time), so "fetched within seconds of
    delivery" cannot be tested; scanners are recognised by their UA tokens and published ranges.
    """
    ua = (user_agent or "").strip()
    owner = ranges.owner(ip)
    category = ranges.category(owner)
    name = client.get("name")

    if owner == "apple" and (is_bare(ua) or name == "Apple Mail"):
        return Verdict(True, APPLE_MPP, "apple", "apple_mpp")
    if name == "Gmail" and ("GoogleImageProxy" in ua or "ggpht.com" in ua):
        return Verdict(False, None, "gmail", "gmail_proxy")
    if "YahooMailProxy" in ua:
        return Verdict(False, None, "yahoo", "yahoo_proxy")
    if SCANNER_UA.search(ua):
        return Verdict(True, SECURITY_SCANNER, None, "scanner_user_agent")
    if category == "scanner":
        return Verdict(True, SECURITY_SCANNER, None, f"scanner_range:{owner}")
    if not ua:
        return Verdict(True, BOT, None, "empty_user_agent")
    if client.get("device") == "Spider" or BOT_UA.search(ua):
        return Verdict(True, BOT, None, "bot_user_agent")
    if is_bare(ua):
        return Verdict(True, BOT, None, "bare_user_agent")
    if owner == "google" and GOOGLE_PROXY_SIGNATURE.search(ua):
        return Verdict(False, None, "gmail", "gmail_proxy_range")
    if owner == "apple":
        return Verdict(False, None, "apple", "apple_relay")
    return Verdict(False)
