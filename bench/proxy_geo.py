"""(8) Geolocation requests per 1,000 opens on a campaign-like mix, before and after proxy-aware
geolocation: half the opens through Apple (Mail Privacy Protection prefetches and relayed
readers), a third through Gmail's image proxy, the rest ordinary readers on ISP addresses.

Both passes run the real `enrichment_for` over the same opens, in Lambda-sized batches, through
the real `Geolocator` (memory cache, empty at the start of each pass) in front of a counting
in-process provider that batches like ipinfo (up to 1000 addresses a request):
- before: every open's address is offered to the geolocator, as the handler did before issue 13;
- after: only the addresses the handler now looks up (`address_to_look_up`): proxied opens are placed
  by Apple's published egress list, or not looked up at all.

The relay prefixes are lines of Apple's published egress list as quoted publicly (see
docs/enrichment/geolocation.md), loaded through `mailpixel ranges refresh`'s own parser.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from typing import Any

from bench.accuracy import load_corpus
from bench.enrichment import BATCH_SIZE, public_ips
from bench.stats import ratio
from mailpixel.enrich.classify.ranges import IpRanges, RangeSet, shipped_ranges
from mailpixel.enrich.geo.locator import Geolocator
from mailpixel.enrich.handler import Pending, address_to_look_up, enrichment_for
from mailpixel.ops.ranges_refresh import parse_apple_egress_located

# Verbatim lines of https://mask-api.icloud.com/egress-ip-ranges.csv as quoted in public code
# (an OpenCTI connector's comment, nlink-jp/icloud-relay-lookup's tests, a test fixture).
APPLE_EGRESS_SAMPLE = (
    "172.224.226.0/27,GB,GB-EN,London,\n"
    "172.224.226.32/31,GB,GB-SC,Aberdeen,\n"
    "172.224.226.34/31,GB,GB-EN,Oxford,\n"
    "172.224.226.36/31,GB,GB-EN,Luton,\n"
    "172.224.226.38/31,GB,GB-NI,Belfast,\n"
    "172.224.226.40/31,GB,GB-SC,Dundee,\n"
    "172.224.226.42/31,GB,GB-EN,Brighton,\n"
    "172.224.226.58/31,GB,GB-EN,Egg Buckland,\n"
    "104.28.30.0/26,JP,JP-13,,\n"
    "146.75.253.246/31,US,US-MA,BOSTON,\n"
    "2a02:26f7:b000:4000::/64,US,US-AK,Anchorage,\n"
)
GMAIL_PROXY_NETWORK = ipaddress.ip_network("66.249.80.0/20")  # in ranges-google.txt (66.249.64.0/19)


class CountingProvider:
    """Answers every address with a fixed place and counts what it was asked."""

    name = "counting"
    max_batch = 1000  # ipinfo's /batch

    def __init__(self) -> None:
        self.requests = 0
        self.addresses = 0

    def lookup(self, ips: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.requests += 1
        self.addresses += len(ips)
        return {ip: {"country": "US"} for ip in ips}


def relay_ranges() -> IpRanges:
    """The shipped ranges with Apple's file as a refresh would write it (with its places)."""
    networks, places = parse_apple_egress_located(APPLE_EGRESS_SAMPLE)
    shipped = shipped_ranges().sets
    apple = RangeSet("apple", "proxy", networks, shipped["apple"].header, places)
    return IpRanges([*(s for owner, s in shipped.items() if owner != "apple"), apple])


def _host(network: ipaddress.IPv4Network | ipaddress.IPv6Network, rng: random.Random) -> str:
    return str(network.network_address + rng.randrange(min(network.num_addresses, 1 << 16)))


def campaign(total: int, seed: int = 13) -> list[tuple[str, str]]:
    """(ip, user_agent) per open: 1/2 Apple, 1/3 Gmail, 1/6 readers; UAs from the real corpus."""
    rng = random.Random(seed)  # noqa: S311 - test data
    cases = load_corpus()["cases"]

    def uas(category: str, family: str | None = None) -> list[str]:
        return [
            c["ua"]
            for c in cases
            if c["category"] == category and family in (None, c["expected"]["client_family"])
        ]

    mpp, relayed = ["Mozilla/5.0"], uas("webmail_browser", "Safari")
    gmail, readers = uas("image_proxy", "Gmail"), uas("mail_client_desktop") + uas("mail_client_mobile")
    relay_nets = list(parse_apple_egress_located(APPLE_EGRESS_SAMPLE)[1])
    isp = public_ips(total, rng)
    opens: list[tuple[str, str]] = []
    for n in range(total):
        share = n % 6
        if share < 3:  # Apple: 2 of 3 prefetches, 1 of 3 readers on Private Relay
            ua = rng.choice(mpp if share < 2 else relayed)
            opens.append((_host(rng.choice(relay_nets), rng), ua))
        elif share < 5:
            opens.append((_host(GMAIL_PROXY_NETWORK, rng), rng.choice(gmail)))
        else:
            opens.append((isp[n], rng.choice(readers)))
    rng.shuffle(opens)
    return opens


def _pass(opens: list[tuple[str, str]], ranges: IpRanges, *, proxy_aware: bool) -> dict[str, Any]:
    provider = CountingProvider()
    geolocator = Geolocator(provider)
    placed = 0
    for start in range(0, len(opens), BATCH_SIZE):
        pending = []
        for n, (address, ua) in enumerate(opens[start : start + BATCH_SIZE]):
            enrichment, lookup_ip = enrichment_for({"user_agent": ua, "ip": address}, ranges)
            pending.append(Pending(str(n), {}, enrichment, lookup_ip))
        if proxy_aware:
            geolocator.locate(wanted for p in pending if (wanted := address_to_look_up(p)))
            placed += sum(1 for p in pending if p.enrichment.get("geo", {}).get("country"))
        else:
            geolocator.locate(every for p in pending if (every := p.lookup_ip))
    return {
        "provider_requests": provider.requests,
        "addresses_sent": provider.addresses,
        "placed_from_apple_egress": placed,
    }


def run(total: int = 1000) -> dict[str, Any]:
    opens = campaign(total)
    ranges = relay_ranges()
    before = _pass(opens, ranges, proxy_aware=False)
    after = _pass(opens, ranges, proxy_aware=True)
    per_1000 = {
        name: {
            "requests_per_1000_opens": ratio(p["provider_requests"] * 1000, total),
            "addresses_per_1000_opens": ratio(p["addresses_sent"] * 1000, total),
        }
        for name, p in (("before", before), ("after", after))
    }
    return {
        "opens": total,
        "distinct_ips": len({ip for ip, _ in opens}),
        "batch_size": BATCH_SIZE,
        "mix": {"apple": "1/2", "gmail": "1/3", "readers": "1/6"},
        "before": before,
        "after": after,
        "per_1000": per_1000,
    }


def report(result: dict[str, Any]) -> str:
    from bench.stats import table

    rows = [
        [
            name,
            result[name]["provider_requests"],
            result["per_1000"][name]["requests_per_1000_opens"],
            result[name]["addresses_sent"],
            result["per_1000"][name]["addresses_per_1000_opens"],
        ]
        for name in ("before", "after")
    ]
    return (
        table(
            f"11. Geolocation on a campaign-like mix: {result['opens']} opens (1/2 Apple, 1/3 Gmail, "
            f"1/6 readers), {result['distinct_ips']} addresses, batches of {result['batch_size']}, "
            "provider batching up to 1000 addresses a request",
            ["pass", "provider requests", "per 1000 opens", "addresses looked up", "per 1000 opens"],
            rows,
        )
        + f"Apple relay opens placed from Apple's published egress list: "
        f"{result['after']['placed_from_apple_egress']}\n"
    )
