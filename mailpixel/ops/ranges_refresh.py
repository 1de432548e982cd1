"""`mailpixel ranges refresh`: download the published, machine-readable IP lists of the proxies
and scanners into `mailpixel/enrich/data/`, each with its source and date. An operator tool: the
functions only read the files it writes."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailpixel.enrich.classify.ranges import (
    DATA_DIR,
    PREFIX,
    Network,
    Place,
    RangeSet,
    format_range_file,
    parse_place,
    parse_range_file,
    shipped_ranges,
)

APPLE_EGRESS_URL = "https://mask-api.icloud.com/egress-ip-ranges.csv"
GOOGLE_URL = "https://www.gstatic.com/ipranges/goog.json"
GOOGLE_CLOUD_URL = "https://www.gstatic.com/ipranges/cloud.json"
MICROSOFT_URL = "https://endpoints.office.com/endpoints/worldwide?clientrequestid={uuid}"
APPLE_OWN = ipaddress.ip_network("17.0.0.0/8")


def _collapse(networks: Iterable[Network]) -> tuple[Network, ...]:
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return (*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6))


Located = tuple[tuple[Network, ...], dict[Network, Place]]


def parse_apple_egress_located(text: str) -> Located:
    """iCloud Private Relay egress CSV (RFC 8805 geofeed layout: `prefix,country,region,city,`
    a line), plus Apple's own /8; with the place Apple publishes for each prefix.

    Prefixes are merged only with neighbours of the same place, so every place survives.
    """
    by_place: dict[Place | None, list[Network]] = {None: [APPLE_OWN]}
    for row in csv.reader(io.StringIO(text)):
        if row and row[0].strip() and not row[0].startswith("#"):
            network = ipaddress.ip_network(row[0].strip(), strict=False)
            by_place.setdefault(parse_place(",".join(row[1:4])), []).append(network)
    if sum(len(group) for group in by_place.values()) == 1:
        raise ValueError("Apple egress list holds no prefixes")
    networks: list[Network] = []
    places: dict[Network, Place] = {}
    for place, group in by_place.items():
        for network in _collapse(group):
            networks.append(network)
            if place is not None:
                places[network] = place
    return tuple(networks), places


def parse_apple_egress(text: str) -> tuple[Network, ...]:
    return parse_apple_egress_located(text)[0]


def _google_prefixes(text: str) -> list[Network]:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("prefixes"), list):
        raise ValueError("not a Google ipranges document (no 'prefixes' list)")
    out: list[Network] = []
    for entry in data["prefixes"]:
        prefix = entry.get("ipv4Prefix") or entry.get("ipv6Prefix")
        if prefix:
            out.append(ipaddress.ip_network(prefix, strict=False))
    return out


def parse_google(goog_json: str, cloud_json: str) -> tuple[Network, ...]:
    """goog.json minus cloud.json: Google's own addresses, not its cloud customers'."""
    cloud = _google_prefixes(cloud_json)
    kept: list[Network] = []
    for net in _google_prefixes(goog_json):
        pieces: list[Network] = [net]
        for other in cloud:
            if other.version != net.version:
                continue
            next_pieces: list[Network] = []
            for piece in pieces:
                if piece.subnet_of(other):  # type: ignore[arg-type]
                    continue
                if other.subnet_of(piece):  # type: ignore[arg-type]
                    next_pieces.extend(piece.address_exclude(other))  # type: ignore[arg-type]
                else:
                    next_pieces.append(piece)
            pieces = next_pieces
        kept.extend(pieces)
    if not kept:
        raise ValueError("Google list minus cloud list is empty")
    return _collapse(kept)


def parse_microsoft(text: str) -> tuple[Network, ...]:
    """Microsoft 365 endpoints: Exchange Online entries on TCP 25 are the EOP (scanner) ranges."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("not a Microsoft 365 endpoints document (expected a list)")
    networks: list[Network] = []
    for entry in data:
        ports = str(entry.get("tcpPorts", "")).split(",")
        if entry.get("serviceArea") == "Exchange" and "25" in ports:
            networks.extend(ipaddress.ip_network(ip, strict=False) for ip in entry.get("ips", []))
    if not networks:
        raise ValueError("no Exchange Online TCP 25 ranges in the endpoints document")
    return _collapse(networks)


Fetch = Callable[[str], str]


def _http_get(url: str) -> str:
    import requests

    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response.text


def _unlocated(parse: Callable[..., tuple[Network, ...]]) -> Callable[..., Located]:
    return lambda *texts: (parse(*texts), {})


@dataclass(frozen=True)
class Source:
    owner: str
    urls: Sequence[str]
    parse: Callable[..., Located]  # the networks, and the place published for some of them


SOURCES = (
    Source("apple", (APPLE_EGRESS_URL,), parse_apple_egress_located),
    Source("google", (GOOGLE_URL, GOOGLE_CLOUD_URL), _unlocated(parse_google)),
    Source("microsoft", (MICROSOFT_URL,), _unlocated(parse_microsoft)),
)


def refresh(
    directory: Path = DATA_DIR, *, fetch: Fetch = _http_get, today: str | None = None, out: Any = None
) -> dict[str, Any]:
    """Download each machine-readable list, rewrite its file with the date; keep the manual ones.

    A source that fails to download or parse leaves its file untouched and is reported.
    """
    today = today or datetime.now(UTC).date().isoformat()
    result: dict[str, Any] = {"updated": {}, "kept": [], "failed": {}}
    for source in SOURCES:
        path = directory / f"{PREFIX}{source.owner}.txt"
        try:
            old = parse_range_file(path.read_text(encoding="utf-8"))
            urls = [u.format(uuid=uuid.uuid4()) for u in source.urls]
            networks, places = source.parse(*(fetch(u) for u in urls))
        except Exception as exc:  # noqa: BLE001 - one bad source must not stop the others
            result["failed"][source.owner] = f"{type(exc).__name__}: {exc}"
            continue
        header = {k: v for k, v in old.header.items() if k not in ("as_of", "note")}
        header["as_of"] = [today]
        header["note"] = [f"refreshed by `mailpixel ranges refresh` from {', '.join(source.urls)}"]
        path.write_text(
            format_range_file(RangeSet(old.owner, old.category, networks, header, places)), encoding="utf-8"
        )
        result["updated"][source.owner] = len(networks)
    refreshed = {s.owner for s in SOURCES}
    result["kept"] = sorted(
        p.name[len(PREFIX) : -4]
        for p in directory.glob(f"{PREFIX}*.txt")
        if p.name[len(PREFIX) : -4] not in refreshed
    )
    shipped_ranges.cache_clear()
    if out is not None:
        print(json.dumps(result, indent=2), file=out)
    return result
