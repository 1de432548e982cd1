"""The offline provider: a MaxMind-format database written by the test, read with `maxminddb`."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

import pytest

from mailpixel.config import Settings
from mailpixel.enrich.geo.locator import Geolocator
from mailpixel.enrich.geo.providers import MmdbProvider
from mailpixel.enrich.handler import make_provider


def _ctrl(kind: int, size: int) -> bytes:
    assert size < 285
    extra = b"" if size < 29 else bytes([size - 29])
    small = min(size, 29)
    if kind <= 7:
        return bytes([(kind << 5) | small]) + extra
    return bytes([small, kind - 7]) + extra


def encode(value: Any) -> bytes:
    """The MaxMind DB data types this test needs: map, string, double, uint16/32/64, array."""
    if isinstance(value, dict):
        return _ctrl(7, len(value)) + b"".join(encode(k) + encode(v) for k, v in value.items())
    if isinstance(value, str):
        raw = value.encode()
        return _ctrl(2, len(raw)) + raw
    if isinstance(value, float):
        return _ctrl(3, 8) + struct.pack(">d", value)
    if isinstance(value, list):
        return _ctrl(11, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, tuple):  # (kind, int): uint16=5, uint32=6, uint64=9
        kind, number = value
        raw = number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big") if number else b""
        return _ctrl(kind, len(raw)) + raw
    raise TypeError(value)


def write_mmdb(path: Path, networks: dict[str, dict[str, Any]]) -> None:
    """An IPv4 database, 32-bit records."""
    data, offsets = b"", []
    for record in networks.values():
        offsets.append(len(data))
        data += encode(record)
    nodes: list[list[Any]] = [[None, None]]
    for (network, _), offset in zip(networks.items(), offsets, strict=True):
        net = ipaddress.ip_network(network)
        bits = int(net.network_address)
        node = 0
        for depth in range(net.prefixlen):
            bit = (bits >> (31 - depth)) & 1
            if depth == net.prefixlen - 1:
                nodes[node][bit] = ("data", offset)
            else:
                if nodes[node][bit] is None:
                    nodes.append([None, None])
                    nodes[node][bit] = len(nodes) - 1
                node = nodes[node][bit]
    count = len(nodes)

    def value(record: Any) -> int:
        if record is None:
            return count
        if isinstance(record, tuple):
            return count + 16 + int(record[1])
        return int(record)

    tree = b"".join(struct.pack(">II", value(left), value(right)) for left, right in nodes)
    metadata = {
        "node_count": (6, count),
        "record_size": (5, 32),
        "ip_version": (5, 4),
        "database_type": "GeoLite2-City-Test",
        "languages": ["en"],
        "binary_format_major_version": (5, 2),
        "binary_format_minor_version": (5, 0),
        "build_epoch": (9, 1_800_000_000),
        "description": {"en": "mailpixel test database"},
    }
    path.write_bytes(tree + b"\x00" * 16 + data + b"\xab\xcd\xefMaxMind.com" + encode(metadata))


CITY = {
    "country": {"iso_code": "DE", "names": {"en": "Germany"}},
    "subdivisions": [{"iso_code": "BE", "names": {"en": "Land Berlin"}}],
    "city": {"names": {"en": "Berlin"}},
    "location": {"latitude": 52.5244, "longitude": 13.4105, "time_zone": "Europe/Berlin"},
    "autonomous_system_organization": "Example Carrier",
}


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "city.mmdb"
    write_mmdb(path, {"81.2.69.0/24": CITY, "2.125.160.0/20": {"country_code": "GB", "as_name": "BT"}})
    return path


def test_city_database_fields(database):
    geo = MmdbProvider(str(database)).lookup(["81.2.69.142", "2.125.160.216", "8.8.8.8", "not-an-ip"])
    assert geo["81.2.69.142"] == {
        "country": "DE",
        "region": "Land Berlin",
        "city": "Berlin",
        "latitude": 52.5244,
        "longitude": 13.4105,
        "timezone": "Europe/Berlin",
        "org": "Example Carrier",
    }
    assert geo["2.125.160.216"]["country"] == "GB" and geo["2.125.160.216"]["org"] == "BT"
    assert "8.8.8.8" not in geo and "not-an-ip" not in geo


def test_chosen_by_settings_and_unknown_addresses_still_cached(database):
    provider = make_provider(Settings(geoip_db_path=str(database)))
    assert isinstance(provider, MmdbProvider)
    geolocator = Geolocator(provider)
    outcome = geolocator.locate(["81.2.69.142", "8.8.8.8", "192.168.1.1"])
    assert (
        outcome.found["81.2.69.142"]["source"] == "mmdb" and outcome.found["81.2.69.142"]["city"] == "Berlin"
    )
    assert outcome.found["8.8.8.8"] == {**dict.fromkeys(outcome.found["8.8.8.8"]), "source": "mmdb"}
    assert outcome.found["192.168.1.1"]["source"] == "reserved"
    geolocator.locate(["8.8.8.8"])
    assert geolocator.requests == 1 and geolocator.memory_hits == 1


def test_provider_choice():
    assert make_provider(Settings(geo_provider="none")) is None
    with pytest.raises(ValueError, match="GEOIP_DB_PATH"):
        make_provider(Settings(geo_provider="mmdb"))
