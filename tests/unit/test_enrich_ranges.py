"""The shipped range files and `mailpixel ranges refresh`'s parsers, on local copies of the lists."""

from __future__ import annotations

import ipaddress
import json
import shutil

import pytest

from mailpixel.enrich.classify import ranges as r
from mailpixel.ops import ranges_refresh as refresh_mod

APPLE_CSV = "172.224.226.0/27,GB,GB-EN,London,\n2a02:26f7:b3c0:4000::/64,FR,FR-IDF,Paris,\n\n"
GOOG = {
    "prefixes": [
        {"ipv4Prefix": "8.8.4.0/24"},
        {"ipv4Prefix": "34.0.0.0/15"},
        {"ipv6Prefix": "2001:4860::/32"},
    ]
}
CLOUD = {"prefixes": [{"ipv4Prefix": "34.0.0.0/16", "service": "Google Cloud"}]}
MICROSOFT = [
    {"id": 10, "serviceArea": "Exchange", "tcpPorts": "25", "ips": ["40.92.0.0/15", "2a01:111:f400::/48"]},
    {"id": 1, "serviceArea": "Exchange", "tcpPorts": "80,443", "ips": ["13.107.6.152/31"]},
    {"id": 46, "serviceArea": "Common", "tcpPorts": "443", "ips": ["52.108.0.0/14"]},
]


def test_every_shipped_file_names_its_source_and_date():
    loaded = r.IpRanges.load()
    assert set(loaded.sets) == {
        "apple",
        "google",
        "yahoo",
        "microsoft",
        "mimecast",
        "proofpoint",
        "barracuda",
        "microsoft_defender",
    }
    for ranges in loaded.sets.values():
        assert ranges.source.startswith(
            ("http", "ARIN", "RIR", "Mimecast", "Proofpoint", "Barracuda", "no published list")
        ), ranges.owner
        assert len(ranges.as_of) == 10
        # Networks only with a source to cite; an owner without one says so and ships none.
        assert ranges.networks or ranges.source.startswith("no published list"), ranges.owner
        assert ranges.category in {"proxy", "scanner"}
        assert ranges.certainty in r.CERTAINTIES, ranges.owner
    # Vendors whose isolation products put people behind their networks: a match is weaker.
    assert {o for o, s in loaded.sets.items() if s.certainty == r.PROBABLE} == {"proofpoint", "mimecast"}


def test_mimecast_ships_its_regional_spf_netblocks():
    mimecast = r.IpRanges.load().sets["mimecast"]
    assert "_netblocks.mimecast.com" in mimecast.source and mimecast.as_of == "2021-07-15"
    networks = {str(n) for n in mimecast.networks}
    # One per region: US, CA, EU, DE, ZA, AU.
    assert {"205.139.110.0/24", "170.10.145.0/24", "195.130.217.0/24", "62.140.7.0/24"} <= networks
    assert {"41.74.192.0/22", "103.13.69.0/24"} <= networks and len(networks) == 43


@pytest.mark.parametrize(
    ("ip", "owner", "doubt"),
    [
        ("205.139.110.7", "mimecast", "probable"),
        ("67.231.144.9", "proofpoint", "probable"),
        ("40.94.89.19", "microsoft_defender", None),
        ("209.222.80.1", "barracuda", None),
    ],
)
def test_a_scanner_range_match_records_how_certain_it_is(ip, owner, doubt):
    from mailpixel.enrich.classify.clicks import classify_click
    from mailpixel.enrich.classify.machine import classify

    chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
    ranges = r.shipped_ranges()
    click = classify_click(chrome, ip, {"name": "Chrome"}, ranges)
    opened = classify(chrome, ip, {"name": "Chrome"}, ranges).evidence()
    for evidence in (click.evidence, opened):
        assert evidence["range_owner"] == owner
        assert evidence.get("range_certainty") == doubt


def test_longest_prefix_wins():
    sets = [
        r.parse_range_file("# owner: big\n10.0.0.0/8\n"),
        r.parse_range_file("# owner: small\n# category: scanner\n10.1.0.0/16\n"),
    ]
    lookup = r.IpRanges(sets)
    assert lookup.owner("10.1.2.3") == "small" and lookup.category("small") == "scanner"
    assert (
        lookup.owner("10.2.0.1") == "big" and lookup.owner("11.0.0.1") is None and lookup.owner(None) is None
    )


def test_bad_lines_are_named():
    with pytest.raises(ValueError, match="line 2"):
        r.parse_range_file("# owner: x\nnot-a-network\n")
    with pytest.raises(ValueError, match="owner"):
        r.parse_range_file("10.0.0.0/8\n")


def test_parsers():
    apple = refresh_mod.parse_apple_egress(APPLE_CSV)
    assert {str(n) for n in apple} == {"17.0.0.0/8", "172.224.226.0/27", "2a02:26f7:b3c0:4000::/64"}
    google = {str(n) for n in refresh_mod.parse_google(json.dumps(GOOG), json.dumps(CLOUD))}
    assert google == {"8.8.4.0/24", "34.1.0.0/16", "2001:4860::/32"}  # cloud customers' /16 cut out
    assert {str(n) for n in refresh_mod.parse_microsoft(json.dumps(MICROSOFT))} == {
        "40.92.0.0/15",
        "2a01:111:f400::/48",
    }
    with pytest.raises(ValueError):
        refresh_mod.parse_google("[]", "[]")
    with pytest.raises(ValueError):
        refresh_mod.parse_microsoft(json.dumps(MICROSOFT[1:]))


def test_refresh_rewrites_published_lists_and_keeps_manual_ones(tmp_path):
    for path in r.DATA_DIR.glob("ranges-*.txt"):
        shutil.copy(path, tmp_path / path.name)
    yahoo_before = (tmp_path / "ranges-yahoo.txt").read_text()
    pages = {
        refresh_mod.APPLE_EGRESS_URL: APPLE_CSV,
        refresh_mod.GOOGLE_URL: json.dumps(GOOG),
        refresh_mod.GOOGLE_CLOUD_URL: json.dumps(CLOUD),
    }

    def fetch(url: str) -> str:
        if url.startswith("https://endpoints.office.com/"):
            raise ConnectionError("offline")
        return pages[url]

    result = refresh_mod.refresh(tmp_path, fetch=fetch, today="2030-01-02")
    assert result["updated"] == {"apple": 3, "google": 3}
    assert "ConnectionError" in result["failed"]["microsoft"]
    assert result["kept"] == ["barracuda", "microsoft_defender", "mimecast", "proofpoint", "yahoo"]
    apple = r.parse_range_file((tmp_path / "ranges-apple.txt").read_text())
    assert apple.as_of == "2030-01-02" and apple.source.startswith("ARIN") and apple.category == "proxy"
    assert r.IpRanges([apple]).owner("172.224.226.5") == "apple"
    assert (tmp_path / "ranges-yahoo.txt").read_text() == yahoo_before
    assert (tmp_path / "ranges-microsoft.txt").read_text() == (
        r.DATA_DIR / "ranges-microsoft.txt"
    ).read_text()


def test_refresh_keeps_the_place_apple_publishes_for_each_egress_prefix(tmp_path):
    """Through the refresh's injectable fetch: Apple's CSV columns survive into the ranges file."""
    for path in r.DATA_DIR.glob("ranges-*.txt"):
        shutil.copy(path, tmp_path / path.name)
    csv_text = (
        "172.224.226.0/27,GB,GB-EN,London,\n"
        "172.224.226.32/31,GB,GB-SC,Aberdeen,\n"
        "172.224.226.58/31,GB,GB-EN,Egg Buckland,\n"
        "104.28.30.0/26,JP,JP-13,,\n"
        "104.28.30.64/26,JP,JP-13,,\n"
        "2a02:26f7:b000:4000::/64,US,US-AK,Anchorage,\n"
    )
    pages = {refresh_mod.APPLE_EGRESS_URL: csv_text}
    result = refresh_mod.refresh(tmp_path, fetch=lambda url: pages[url], today="2030-01-02")
    assert result["updated"]["apple"] == 6  # the two JP /26 with one place merge into a /25
    text = (tmp_path / "ranges-apple.txt").read_text()
    assert "172.224.226.58/31 GB,GB-EN,Egg Buckland\n" in text and "104.28.30.0/25 JP,JP-13,\n" in text
    lookup = r.IpRanges([r.parse_range_file(text)])
    assert lookup.place("172.224.226.5") == ("GB", "GB-EN", "London")
    assert lookup.place("172.224.226.33") == ("GB", "GB-SC", "Aberdeen")
    assert lookup.place("104.28.30.100") == ("JP", "JP-13", "")
    assert lookup.place("2a02:26f7:b000:4000::7") == ("US", "US-AK", "Anchorage")
    assert lookup.owner("17.1.2.3") == "apple" and lookup.place("17.1.2.3") is None
    assert lookup.place("81.2.69.142") is None and lookup.place(None) is None


def test_place_columns_round_trip_and_old_files_still_parse():
    text = '# owner: apple\n10.0.0.0/24 "US","US-MA","Boston, MA"\n10.0.1.0/24\n10.0.2.0/24 GB,,\n'
    parsed = r.parse_range_file(text)
    assert parsed.places == {
        ipaddress.ip_network("10.0.0.0/24"): ("US", "US-MA", "Boston, MA"),
        ipaddress.ip_network("10.0.2.0/24"): ("GB", "", ""),
    }
    again = r.parse_range_file(r.format_range_file(parsed))
    assert again.networks == parsed.networks and again.places == parsed.places
    assert r.parse_place("") is None and r.parse_place(",,") is None
