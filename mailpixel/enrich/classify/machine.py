"""Was an open a person reading, or a machine fetching? And through whose proxy?

The rules run in order; the first that matches decides. Each has a name (`Verdict.rule`) and
keeps what it matched (`ua_token`, `range_owner`): enrichment stores them on the event as
`evidence`, so a sender can see why an open was called a machine's.
docs/enrichment/machine-opens.md lists the rules with their sources;
`tests/fixtures/ua_corpus.json` measures them (`make bench`, 7).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailpixel.enrich.classify.ranges import IpRanges
from mailpixel.enrich.classify.user_agents import is_bare, proxy_token

APPLE_MPP = "apple_mpp"
SECURITY_SCANNER = "security_scanner"
BOT = "bot"

# Tokens that link/attachment scanners of mail security gateways and URL-safety services put in
# their user agents.
SCANNER_UA = re.compile(
    r"barracuda|mimecast|proofpoint|pphosted|urldefense|symantec|messagelabs|trend ?micro|"
    r"forcepoint|websense|sophos|ironport|cisco[- ]?(?:esa|secure ?email)|fireeye|trellix|avanan|"
    r"check ?point|zscaler|bitdefender|safe ?links|microsoft office existence discovery|"
    r"cloudmark|spamtitan|hornet ?security|vade ?secure|libraesva|ironscales|abnormal ?security|"
    r"kaspersky|virustotal|google-safety",
    re.IGNORECASE,
)

# Crawlers, link previews, monitors, HTTP libraries, headless browsers and Google's document and
# script fetchers: no person behind them.
BOT_UA = re.compile(
    r"bot\b|bot/|crawler|crawl|spider|slurp|headless|phantomjs|puppeteer|playwright|selenium|"
    r"curl/|wget/|python-requests|python-urllib|aiohttp|httpx|go-http-client|java/|okhttp|"
    r"libwww-perl|axios/|node-fetch|undici|scrapy|facebookexternalhit|bingpreview|preview|"
    r"monitor|uptime|pingdom|datadog|lighthouse|embedly|feedfetcher|prefetch|"
    r"google-apps-script|googleapps script|googledocs|google-http-java-client|googleother|"
    r"apache-httpclient|httpie/|postmanruntime|mechanize/|whatsapp/|slack-imgproxy|iframely|"
    r"linkexpander|urlscanner|valimail",
    re.IGNORECASE,
)

# Gmail's proxy's UA says Windows XP and Firefox 11 whatever the reader runs.
GOOGLE_PROXY_SIGNATURE = re.compile(r"Windows NT 5\.1; rv:11\.0\) Gecko Firefox/11\.0")

# Gmail's prefetch and content-sampling fetchers: Edge 12.246's UA with a second `Mozilla/5.0`
# or `Gmail-content-sampling` after it, which no Edge ever sent (Bird/SparkPost, GMass).
GMAIL_PREFETCH = re.compile(r"Edge/12\.246 (?:Mozilla/5\.0|Gmail-content-sampling)\s*$")


@dataclass(frozen=True)
class Verdict:
    machine_open: bool
    machine_reason: str | None = None
    proxy: str | None = None
    rule: str = "human"
    ua_token: str | None = None  # what in the UA decided, if anything did
    range_owner: str | None = None  # whose published range holds the address, if any
    range_certainty: str | None = None  # set when that range is weaker evidence (`IpRanges.doubt`)

    def evidence(self) -> dict[str, str]:
        """The `evidence` map stored on the event: the rule, and what matched (absent: nothing)."""
        found = {
            "rule": self.rule,
            "ua_token": self.ua_token,
            "range_owner": self.range_owner,
            "range_certainty": self.range_certainty,
        }
        return {key: value for key, value in found.items() if value is not None}


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(0) if match else None


def classify(user_agent: str | None, ip: str | None, client: Mapping[str, Any], ranges: IpRanges) -> Verdict:
    """Decide from the UA, the full IP (pending_ip or ip) and the parsed client.

    Only the open itself is known here (no delivery time), so "fetched within seconds of
    delivery" cannot be tested; scanners are recognised by their UA tokens and published ranges.
    """
    ua = (user_agent or "").strip()
    owner = ranges.owner(ip)
    category = ranges.category(owner)
    name = client.get("name")
    proxied = proxy_token(ua)

    def verdict(
        machine: bool, reason: str | None, proxy: str | None, rule: str, token: str | None = None
    ) -> Verdict:
        return Verdict(machine, reason, proxy, rule, token, owner, ranges.doubt(owner))

    if owner == "apple" and (is_bare(ua) or name == "Apple Mail"):
        return verdict(True, APPLE_MPP, "apple", "apple_mpp", ua if is_bare(ua) and ua else None)
    if proxied and proxied[0] == "Gmail":
        return verdict(False, None, "gmail", "gmail_proxy", proxied[1])
    if proxied and proxied[0] == "Yahoo Mail":
        return verdict(False, None, "yahoo", "yahoo_proxy", proxied[1])
    if token := _first(GMAIL_PREFETCH, ua):
        return verdict(True, BOT, "gmail", "gmail_prefetch", token)
    if token := _first(SCANNER_UA, ua):
        return verdict(True, SECURITY_SCANNER, None, "scanner_user_agent", token)
    if category == "scanner":
        return verdict(True, SECURITY_SCANNER, None, f"scanner_range:{owner}")
    if not ua:
        return verdict(True, BOT, None, "empty_user_agent")
    if token := _first(BOT_UA, ua):
        return verdict(True, BOT, None, "bot_user_agent", token)
    if client.get("device") == "Spider":
        return verdict(True, BOT, None, "bot_user_agent", "uap-core device Spider")
    if is_bare(ua):
        return verdict(True, BOT, None, "bare_user_agent", ua)
    if owner == "google" and (token := _first(GOOGLE_PROXY_SIGNATURE, ua)):
        return verdict(False, None, "gmail", "gmail_proxy_range", token)
    if owner == "apple":
        return verdict(False, None, "apple", "apple_relay")
    return verdict(False, None, None, "human")


def named_client(client: Mapping[str, Any], verdict: Verdict) -> dict[str, Any]:
    """The client as the verdict reveals it: an MPP prefetch is Apple Mail's, and anything
    fetched for Gmail (its token-less proxy UA, its prefetcher) is Gmail's, whatever the UA's
    fake browser part says; the OS and device of a proxy's UA are the proxy's, not the reader's."""
    if verdict.machine_reason == APPLE_MPP and client.get("name") == "Other":
        return {**client, "name": "Apple Mail"}
    if verdict.proxy == "gmail" and client.get("name") != "Gmail":
        return {**client, "name": "Gmail", "version": None, "os": None, "device": None}
    return dict(client)
