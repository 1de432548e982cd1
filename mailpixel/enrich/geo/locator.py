"""IP geolocation for enrichment: providers behind one interface, two caches, and backoff.

Lookups go memory cache → DynamoDB cache (meta table, `geo#<ip>` / `geo`, one day) → provider,
so an address costs at most one provider request a day across every instance. Private and
reserved addresses never leave the process. A provider that answers 429 or 5xx, times out or
sends nonsense puts the geolocator into backoff; the addresses it could not resolve are reported
as failed, so the caller retries those records later instead of dropping them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mailpixel.enrich.geo.cache import DynamoCache, MemoryCache
from mailpixel.enrich.geo.providers import (
    SOURCE_OFF,
    SOURCE_RESERVED,
    GeoError,
    GeoProvider,
    GeoRateLimited,
    empty_geo,
)
from mailpixel.logs import Metrics, get_logger
from mailpixel.model.ip import parse_ip

log = get_logger("enrich.geo.locator")
CACHE_SECONDS = 86_400


def is_public(ip: str) -> bool:
    """True only for globally routable unicast addresses: what may be sent to a provider."""
    address = parse_ip(ip)
    return address is not None and address.is_global and not address.is_multicast


@dataclass
class GeoOutcome:
    """Per address: its geo (with `source`), or a place in `failed` (retry the record later)."""

    found: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)


class Geolocator:
    def __init__(
        self,
        provider: GeoProvider | None,
        *,
        memory: MemoryCache | None = None,
        shared: DynamoCache | None = None,
        metrics: Metrics | None = None,
        cache_seconds: int = CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        backoff_sleep_limit_seconds: float = 2.0,
        backoff_base_seconds: float = 1.0,
        backoff_max_seconds: float = 60.0,
    ) -> None:
        self.provider = provider
        self.memory = memory or MemoryCache(clock=clock)
        self.shared = shared
        self.metrics = metrics or Metrics()
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.sleep = sleep
        self.backoff_sleep_limit_seconds = backoff_sleep_limit_seconds
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.backoff_until = 0.0
        self.failures_in_a_row = 0
        # Counters for benchmarks and tests: provider requests, and answers from each cache.
        self.requests = 0
        self.memory_hits = 0
        self.shared_hits = 0

    def locate(self, ips: Iterable[str]) -> GeoOutcome:
        outcome = GeoOutcome()
        wanted: list[str] = []
        for ip in dict.fromkeys(ips):
            if not is_public(ip):
                outcome.found[ip] = empty_geo(SOURCE_RESERVED)
            elif self.provider is None:
                outcome.found[ip] = empty_geo(SOURCE_OFF)
            else:
                hit = self.memory.get(ip)
                if hit is not None:
                    outcome.found[ip] = hit
                    self.memory_hits += 1
                else:
                    wanted.append(ip)
        if wanted and self.shared is not None:
            wanted = self._from_shared(wanted, outcome)
        if wanted:
            self._from_provider(wanted, outcome)
        return outcome

    def _from_shared(self, ips: list[str], outcome: GeoOutcome) -> list[str]:
        try:
            hits = self.shared.get_many(ips) if self.shared else {}
        except Exception:  # noqa: BLE001 - the cache is an optimisation; the provider still answers
            log.warning("geo_cache_read_failed", exc_info=True)
            return ips
        for ip, (geo, expires) in hits.items():
            outcome.found[ip] = geo
            self.memory.put(ip, geo, expires)
        self.shared_hits += len(hits)
        return [ip for ip in ips if ip not in hits]

    def _from_provider(self, ips: list[str], outcome: GeoOutcome) -> None:
        assert self.provider is not None  # narrows the type for mypy only  # nosec B101
        size = max(1, self.provider.max_batch)
        for start in range(0, len(ips), size):
            chunk = ips[start : start + size]
            wait = self.backoff_until - self.clock()
            if wait > 0:
                if wait > self.backoff_sleep_limit_seconds:
                    outcome.failed.update(ips[start:])
                    self.metrics.count("geo_backoff_skip", value=len(ips) - start)
                    return
                self.sleep(wait)
            try:
                self.requests += 1
                self.metrics.count("geo_request", provider=self.provider.name, ips=len(chunk))
                answers = self.provider.lookup(chunk)
            except GeoError as exc:
                self._back_off(exc)
                outcome.failed.update(ips[start:])
                return
            self.failures_in_a_row = 0
            expires_at = int(self.clock()) + self.cache_seconds
            fresh: dict[str, tuple[dict[str, Any], int]] = {}
            for ip in chunk:
                geo = {**empty_geo(self.provider.name), **answers.get(ip, {}), "source": self.provider.name}
                outcome.found[ip] = geo
                self.memory.put(ip, geo, expires_at)
                fresh[ip] = (geo, expires_at)
            if self.shared is not None:
                try:
                    self.shared.put_many(fresh)
                except Exception:  # noqa: BLE001 - a lost cache write costs one lookup, nothing more
                    log.warning("geo_cache_write_failed", exc_info=True)

    def _back_off(self, exc: GeoError) -> None:
        self.failures_in_a_row += 1
        delay = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (self.failures_in_a_row - 1))
        if isinstance(exc, GeoRateLimited) and exc.retry_after is not None:
            delay = min(self.backoff_max_seconds, max(delay, exc.retry_after))
        self.backoff_until = self.clock() + delay
        reason = "rate_limited" if isinstance(exc, GeoRateLimited) else "error"
        self.metrics.count("geo_provider_failure", reason=reason, backoff_seconds=delay)
        log.warning("geo_provider_failure", extra={"error": str(exc), "backoff_seconds": delay})
