"""Where an open that came through a mailbox provider's proxy is placed, without a lookup.

A geolocation provider asked about a proxy's address answers where the proxy is, not where the
reader is, and each answer costs a request. So:
- Apple (Mail Privacy Protection, iCloud Private Relay): Apple publishes, per egress prefix, the
  country, region and city the relay stands for ("the relay IP address ... represents the
  client's coarse city-level location", developer.apple.com, "Prepare your network or web server
  for iCloud Private Relay"); the refreshed ranges file carries them, and they are used as is.
  An Apple address with no published place (Apple's own 17.0.0.0/8) is Apple's data centre.
- Gmail and Yahoo: the address is the proxy's data centre; nothing about the reader is learned.

`geo.source` says which: `proxy:apple via apple_egress`, or `proxy:<name> not_looked_up`.
"""

from __future__ import annotations

from typing import Any

from mailpixel.enrich.classify.ranges import Place
from mailpixel.enrich.geo.providers import empty_geo

SOURCE_APPLE_EGRESS = "proxy:apple via apple_egress"
PROXIES = frozenset({"apple", "gmail", "yahoo"})


def not_looked_up(proxy: str) -> str:
    return f"proxy:{proxy} not_looked_up"


def proxy_geo(proxy: str | None, place: Place | None) -> dict[str, Any] | None:
    """The open's `geo` when the proxy decides it; None when the provider should be asked."""
    if proxy == "apple" and place is not None:
        country, region, city = place
        return {
            **empty_geo(SOURCE_APPLE_EGRESS),
            "country": country or None,
            "region": region or None,
            "city": city or None,
        }
    if proxy in PROXIES:
        return empty_geo(not_looked_up(proxy))
    return None
