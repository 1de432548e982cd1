"""Published IP ranges of image proxies and mail security scanners, shipped as data files.

Each `mailpixel/enrich/data/ranges-<owner>.txt` holds one network a line under a header of
`# key: value` lines (owner, category, certainty, source, as_of). `certainty` says how much a
match alone tells: `published` (the default: the owner publishes these networks for the
machines in question) or `probable` (the owner's networks, but its list is not one of those
machines, or real people can be behind them too, as with Proofpoint's and Mimecast's isolation
products); a click's evidence records it as `range_certainty`. A network may be followed, after a space,
by the place its owner publishes for it as `country,region,city` (CSV; Apple's iCloud Private
Relay egress list gives one per prefix): `IpRanges.place` answers it. `mailpixel ranges refresh`
(`mailpixel/ops/ranges_refresh.py`) rewrites the files whose owner publishes a machine-readable
list; the others are kept as shipped.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from mailpixel.model.ip import parse_ip

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
PREFIX = "ranges-"
PUBLISHED = "published"
PROBABLE = "probable"
CERTAINTIES = (PUBLISHED, PROBABLE)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (country, region, city) as the owner publishes them; any may be "".
Place = tuple[str, str, str]


@dataclass(frozen=True)
class RangeSet:
    """The networks of one owner and where they came from."""

    owner: str
    category: str
    networks: tuple[Network, ...]
    header: dict[str, list[str]] = field(default_factory=dict)
    places: Mapping[Network, Place] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return " ".join(self.header.get("source", []))

    @property
    def as_of(self) -> str:
        return (self.header.get("as_of") or [""])[0]

    @property
    def certainty(self) -> str:
        return (self.header.get("certainty") or [PUBLISHED])[0]


def parse_range_file(text: str) -> RangeSet:
    """Read a ranges file; unknown header keys are kept, bad lines raise ValueError with the line."""
    header: dict[str, list[str]] = {}
    networks: list[Network] = []
    places: dict[Network, Place] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                header.setdefault(key.strip(), []).append(value.strip())
            continue
        first, _, rest = line.partition(" ")
        try:
            network = ipaddress.ip_network(first, strict=False)
        except ValueError:
            raise ValueError(f"line {number}: not a network: {line!r}") from None
        networks.append(network)
        place = parse_place(rest)
        if place is not None:
            places[network] = place
    owner = (header.get("owner") or [""])[0]
    if not owner:
        raise ValueError("missing '# owner:' header")
    return RangeSet(owner, (header.get("category") or ["proxy"])[0], tuple(networks), header, places)


def parse_place(text: str) -> Place | None:
    """`country,region,city` (CSV, missing fields empty) → a Place; None when all are empty."""
    text = text.strip()
    # Plain `a,b,c` (every line Apple writes) splits as is; quoted fields go through csv.
    row = (next(csv.reader([text]), []) if '"' in text else text.split(",")) if text else []
    country, region, city = ([cell.strip() for cell in row] + ["", "", ""])[:3]
    return (country, region, city) if country or region or city else None


def format_place(place: Place) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(place)
    return out.getvalue()


def format_range_file(ranges: RangeSet) -> str:
    lines = [f"# {key}: {value}" for key, values in ranges.header.items() for value in values]
    for net in ranges.networks:
        place = ranges.places.get(net)
        lines.append(f"{net} {format_place(place)}" if place else str(net))
    return "\n".join(lines) + "\n"


class IpRanges:
    """Longest-prefix lookup of an address among every owner's networks.

    One dict per (version, prefix length): a lookup is a few dozen dict probes whatever the size
    of the lists, and the refreshed Apple egress list (hundreds of thousands of prefixes) fits.
    """

    def __init__(self, sets: Iterable[RangeSet]) -> None:
        self.sets = {s.owner: s for s in sets}
        self._tables: dict[tuple[int, int], dict[int, str]] = {}
        self._places: dict[tuple[int, int, int], Place] = {}
        for s in self.sets.values():
            for net in s.networks:
                self._tables.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = s.owner
            for net, place in s.places.items():
                self._places[(net.version, net.prefixlen, int(net.network_address))] = place
        self._lengths = {
            version: sorted((p for v, p in self._tables if v == version), reverse=True) for version in (4, 6)
        }

    @classmethod
    def load(cls, directory: Path = DATA_DIR) -> IpRanges:
        return cls(
            parse_range_file(p.read_text(encoding="utf-8")) for p in sorted(directory.glob(f"{PREFIX}*.txt"))
        )

    def _most_specific(self, ip: str | None) -> tuple[tuple[int, int, int], str] | None:
        """(version, prefix length, network) of the most specific network holding `ip`, and its owner."""
        address = parse_ip(ip)
        if address is None:
            return None
        bits = 32 if address.version == 4 else 128
        value = int(address)
        for length in self._lengths[address.version]:
            network = value >> (bits - length) << (bits - length)
            found = self._tables[(address.version, length)].get(network)
            if found is not None:
                return (address.version, length, network), found
        return None

    def owner(self, ip: str | None) -> str | None:
        """The owner whose most specific network holds `ip`, or None."""
        found = self._most_specific(ip)
        return found[1] if found else None

    def place(self, ip: str | None) -> Place | None:
        """The place the owner publishes for the most specific network holding `ip`, if any."""
        found = self._most_specific(ip)
        return self._places.get(found[0]) if found else None

    def category(self, owner: str | None) -> str | None:
        return self.sets[owner].category if owner in self.sets else None

    def certainty(self, owner: str | None) -> str | None:
        return self.sets[owner].certainty if owner in self.sets else None

    def doubt(self, owner: str | None) -> str | None:
        """The owner's certainty when it is weaker than published, else None: what evidence
        records as `range_certainty` (a published range's evidence stays as it was)."""
        certainty = self.certainty(owner)
        return certainty if certainty not in (None, PUBLISHED) else None


@cache
def shipped_ranges() -> IpRanges:
    """The ranges in the package, read once per process (per Lambda cold start)."""
    return IpRanges.load()
