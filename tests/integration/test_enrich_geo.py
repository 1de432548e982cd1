"""Geolocation: the ipinfo provider against a fake server, caches in memory and DynamoDB, backoff."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailpixel.enrich.geo.cache import DynamoCache, MemoryCache
from mailpixel.enrich.geo.locator import Geolocator, is_public
from mailpixel.enrich.geo.providers import SOURCE_OFF, SOURCE_RESERVED, IpinfoProvider
from tests.conftest import all_items
from tests.fake_ipinfo import FakeIpinfo


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def geolocator(
    fake: FakeIpinfo, clock: Clock, shared: DynamoCache | None = None, **kwargs: Any
) -> Geolocator:
    provider = IpinfoProvider(fake.url, kwargs.pop("token", None), timeout=kwargs.pop("timeout", 1.0))
    provider.max_batch = kwargs.pop("max_batch", 1000)
    return Geolocator(
        provider, memory=MemoryCache(clock=clock), shared=shared, clock=clock, sleep=clock.sleep, **kwargs
    )


def test_one_address_is_a_get_and_maps_every_field(ipinfo, clock):
    outcome = geolocator(ipinfo, clock, token="tok123").locate(["8.8.4.4"])
    assert outcome.failed == set()
    geo = outcome.found["8.8.4.4"]
    assert set(geo) == {"country", "region", "city", "latitude", "longitude", "timezone", "org", "source"}
    assert geo["source"] == "ipinfo"
    assert isinstance(geo["latitude"], float) and isinstance(geo["longitude"], float)
    assert geo["country"] in {"US", "FR", "AU"}
    assert (ipinfo.requests, ipinfo.batch_requests) == (1, 0)
    assert ipinfo.auth_headers == ["Bearer tok123"]


def test_several_addresses_go_in_batches(ipinfo, clock):
    ips = [f"81.2.69.{n}" for n in range(1, 6)]
    outcome = geolocator(ipinfo, clock, max_batch=2).locate(ips + ips[:2])
    assert set(outcome.found) == set(ips) and not outcome.failed
    assert (ipinfo.requests, ipinfo.batch_requests) == (3, 2)  # 2 + 2 by /batch, the last one alone
    assert sorted(ipinfo.ips_seen) == sorted(ips)


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",
        "192.168.0.1",
        "127.0.0.1",
        "169.254.1.1",
        "100.64.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "junk",
    ],
)
def test_private_and_reserved_addresses_are_never_sent(ipinfo, clock, ip):
    outcome = geolocator(ipinfo, clock).locate([ip])
    assert outcome.found[ip]["source"] == SOURCE_RESERVED
    assert outcome.found[ip]["country"] is None
    assert ipinfo.requests == 0
    assert not is_public(ip)


def test_switched_off_sends_nothing(ipinfo, clock):
    outcome = Geolocator(None, clock=clock).locate(["8.8.8.8"])
    assert outcome.found["8.8.8.8"]["source"] == SOURCE_OFF
    assert ipinfo.requests == 0


def test_memory_cache_answers_a_warm_instance(ipinfo, clock):
    geo = geolocator(ipinfo, clock)
    first = geo.locate(["8.8.8.8"]).found
    assert geo.locate(["8.8.8.8"]).found == first
    assert ipinfo.requests == 1 and geo.memory_hits == 1
    clock.now += 86_401  # a day later the entry has expired
    geo.locate(["8.8.8.8"])
    assert ipinfo.requests == 2


def test_dynamodb_cache_is_shared_across_instances(ipinfo, clock, settings, ddb, table):
    shared = DynamoCache(ddb, settings.meta_table, clock=clock)
    first = geolocator(ipinfo, clock, shared=shared).locate(["1.1.1.1", "9.9.9.9"]).found
    (item,) = [i for i in all_items(ddb, settings.meta_table) if i["pk"] == "geo#1.1.1.1"]
    assert item["sk"] == "geo" and item["expires_at"] == int(clock.now) + 86_400
    assert item["geo"] == first["1.1.1.1"]

    cold = geolocator(ipinfo, clock, shared=shared)  # another instance: empty memory
    assert cold.locate(["1.1.1.1", "9.9.9.9"]).found == first
    assert ipinfo.requests == 1 and cold.shared_hits == 2 and cold.requests == 0

    clock.now += 86_400  # expired but not yet deleted by TTL: not used
    assert geolocator(ipinfo, clock, shared=shared).locate(["1.1.1.1"]).found["1.1.1.1"]["source"] == "ipinfo"
    assert ipinfo.requests == 2


def test_cache_ttl_is_capped_by_retention(ipinfo, clock, settings, ddb, table):
    shared = DynamoCache(ddb, settings.meta_table, clock=clock)
    geolocator(ipinfo, clock, shared=shared, cache_seconds=3_600).locate(["1.0.0.1"])
    (item,) = [i for i in all_items(ddb, settings.meta_table) if i["pk"] == "geo#1.0.0.1"]
    assert item["expires_at"] == int(clock.now) + 3_600


@pytest.mark.parametrize("mode", ["429", "500", "malformed", "wrong_shape"])
def test_failures_back_off_and_report_the_addresses(ipinfo, clock, mode):
    ipinfo.mode = mode
    geo = geolocator(ipinfo, clock, backoff_sleep_limit_seconds=0)
    outcome = geo.locate(["8.8.8.8", "10.0.0.1"])
    assert outcome.failed == {"8.8.8.8"}
    assert outcome.found["10.0.0.1"]["source"] == SOURCE_RESERVED  # never needed the provider
    assert ipinfo.requests == 1 and geo.backoff_until == clock.now + 1

    assert geo.locate(["8.8.8.8"]).failed == {"8.8.8.8"}  # inside the backoff: nothing sent
    assert ipinfo.requests == 1

    clock.now += 1
    assert geo.locate(["8.8.8.8"]).failed == {"8.8.8.8"}  # tried again, failed again: longer backoff
    assert ipinfo.requests == 2 and geo.backoff_until == clock.now + 2

    ipinfo.mode = "ok"
    clock.now += 2
    outcome = geo.locate(["8.8.8.8"])
    assert outcome.failed == set() and outcome.found["8.8.8.8"]["source"] == "ipinfo"
    assert geo.failures_in_a_row == 0


def test_429_honours_retry_after(ipinfo, clock):
    ipinfo.mode, ipinfo.retry_after = "429", "30"
    geo = geolocator(ipinfo, clock, backoff_sleep_limit_seconds=0)
    assert geo.locate(["8.8.8.8"]).failed == {"8.8.8.8"}
    assert geo.backoff_until == clock.now + 30


def test_short_backoff_is_waited_out_within_the_call(ipinfo, clock):
    ipinfo.mode = "500"
    geo = geolocator(ipinfo, clock, backoff_sleep_limit_seconds=5)
    assert geo.locate(["8.8.8.8"]).failed == {"8.8.8.8"}
    ipinfo.mode = "ok"
    assert geo.locate(["8.8.8.8"]).failed == set()
    assert clock.slept == [1.0]


def test_slow_provider_times_out_quickly(ipinfo, clock):
    ipinfo.mode, ipinfo.delay = "slow", 1.0
    geo = geolocator(ipinfo, clock, timeout=0.2, backoff_sleep_limit_seconds=0)
    started = time.monotonic()
    outcome = geo.locate(["8.8.8.8"])
    assert time.monotonic() - started < 0.9
    assert outcome.failed == {"8.8.8.8"} and geo.backoff_until > clock.now


@pytest.mark.parametrize("ips", [["8.8.8.8"], ["8.8.8.8", "1.1.1.1"]])
def test_valid_json_of_the_wrong_shape_is_a_failure(ipinfo, clock, ips):
    ipinfo.mode = "wrong_shape"
    geo = geolocator(ipinfo, clock, backoff_sleep_limit_seconds=0)
    assert geo.locate(ips).failed == set(ips)
    assert ipinfo.requests == 1
