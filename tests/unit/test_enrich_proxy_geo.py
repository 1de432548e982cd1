"""Proxied opens are placed without a geolocation request (mailpixel/enrich/geo/proxied.py)."""

from __future__ import annotations

import pytest

from mailpixel.enrich.classify.ranges import IpRanges, parse_range_file
from mailpixel.enrich.geo.proxied import proxy_geo
from mailpixel.enrich.handler import enrichment_for

RELAY = IpRanges([parse_range_file("# owner: apple\n17.0.0.0/8\n172.224.226.0/27 GB,GB-EN,London\n")])


def test_apple_relay_uses_the_published_place():
    geo = proxy_geo("apple", ("JP", "JP-13", ""))
    assert geo is not None
    assert (geo["country"], geo["region"], geo["city"]) == ("JP", "JP-13", None)
    assert geo["source"] == "proxy:apple via apple_egress" and geo["latitude"] is None


@pytest.mark.parametrize("proxy", ["gmail", "yahoo", "apple"])
def test_proxies_without_a_published_place_are_not_looked_up(proxy):
    geo = proxy_geo(proxy, None)
    assert geo is not None and geo["source"] == f"proxy:{proxy} not_looked_up" and geo["country"] is None


def test_no_proxy_means_ask_the_provider():
    assert proxy_geo(None, None) is None and proxy_geo(None, ("GB", "", "")) is None


def test_enrichment_places_relay_opens_and_leaves_the_rest_to_the_lookup():
    mpp, ip = enrichment_for({"user_agent": "Mozilla/5.0", "ip": "172.224.226.9"}, RELAY)
    assert ip == "172.224.226.9" and mpp["machine_reason"] == "apple_mpp"
    assert mpp["geo"]["city"] == "London" and mpp["geo"]["source"] == "proxy:apple via apple_egress"
    reader, _ = enrichment_for({"user_agent": "Thunderbird/128.0", "ip": "81.2.69.142"}, RELAY)
    assert "geo" not in reader


def test_campaign_mix_spends_fewer_lookups():
    """bench/proxy_geo.py's mix: Gmail and Apple opens no longer reach the provider."""
    from bench import proxy_geo

    result = proxy_geo.run(300)
    assert result["after"]["addresses_sent"] < result["before"]["addresses_sent"] / 2
    assert result["after"]["placed_from_apple_egress"] == 150
