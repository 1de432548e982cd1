"""IP geolocation for enrichment: providers behind one interface, two caches, and backoff.

Lookups go memory cache → DynamoDB cache (meta table, `geo#<ip>` / `geo`, one day) → provider,
so an address costs at most one provider request a day across every instance. Private and
reserved addresses never leave the process. A provider that answers 429 or 5xx, times out or
sends nonsense puts the geolocator into backoff; the addresses it could not resolve are reported
as failed, so the caller retries those records later instead of dropping them.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mailpixel.logs import Metrics, get_logger
from mailpixel.privacy import parse_ip
from mailpixel.store import plain, to_attr

if TYPE_CHECKING:
    import requests
    from mypy_boto3_dynamodb import DynamoDBClient

log = get_logger("enrich.geo")

GEO_FIELDS = ("country", "region", "city", "latitude", "longitude", "timezone", "org")
CACHE_SECONDS = 86_400
SOURCE_RESERVED = "reserved"  # private, loopback, link-local, ...: never sent anywhere
SOURCE_OFF = "off"  # geolocation switched off (MAILPIXEL_GEO_PROVIDER=none)
SOURCE_NO_IP = "no-ip"
SOURCE_UNAVAILABLE = "unavailable"  # the provider kept failing for longer than MAILPIXEL_GEO_MAX_WAIT


class GeoError(Exception):
    """The provider could not answer now (timeout, 5xx, bad token, malformed answer): retry later."""


class GeoRateLimited(GeoError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GeoProvider(Protocol):
    """Looks up addresses. Returns {ip: geo fields} for the addresses it knows; raises GeoError."""

    name: str
    max_batch: int

    def lookup(self, ips: Sequence[str]) -> dict[str, dict[str, Any]]: ...


def is_public(ip: str) -> bool:
    """True only for globally routable unicast addresses: what may be sent to a provider."""
    address = parse_ip(ip)
    return address is not None and address.is_global and not address.is_multicast


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    return value.strip()[:128] or None if isinstance(value, str) else None


def empty_geo(source: str) -> dict[str, Any]:
    return {**dict.fromkeys(GEO_FIELDS), "source": source}


class IpinfoProvider:
    """ipinfo.io (or a compatible mirror at IPINFO_URL) over `requests`: `/<ip>/json` for one
    address, `POST /batch` for several (up to 1000 a request)."""

    name = "ipinfo"

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 2.0,
        session: requests.Session | None = None,
        max_batch: int = 1000,
    ) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout = (min(1.0, timeout), timeout)
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "mailpixel-enrich"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.max_batch = max_batch

    def lookup(self, ips: Sequence[str]) -> dict[str, dict[str, Any]]:
        import requests

        try:
            if len(ips) == 1:
                response = self.session.get(f"{self.base_url}/{ips[0]}/json", timeout=self.timeout)
            else:
                response = self.session.post(f"{self.base_url}/batch", json=list(ips), timeout=self.timeout)
        except requests.RequestException as exc:
            raise GeoError(f"ipinfo request failed: {type(exc).__name__}") from None
        if response.status_code == 429:
            raise GeoRateLimited("ipinfo rate limit (429)", _number(response.headers.get("Retry-After")))
        if response.status_code == 404 and len(ips) == 1:
            return {}
        if response.status_code != 200:
            raise GeoError(f"ipinfo answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise GeoError("ipinfo answer is not JSON") from None
        if not isinstance(data, dict):
            raise GeoError("ipinfo answer is not a JSON object")
        entries = {ips[0]: data} if len(ips) == 1 else data
        out: dict[str, dict[str, Any]] = {}
        for ip in ips:
            entry = entries.get(ip)
            if isinstance(entry, dict) and not entry.get("bogon") and not entry.get("error"):
                out[ip] = self._geo(entry)
        if len(ips) > 1 and not any(ip in entries for ip in ips):
            raise GeoError("ipinfo batch answer holds none of the addresses asked for")
        return out

    @staticmethod
    def _geo(entry: Mapping[str, Any]) -> dict[str, Any]:
        lat = lon = None
        loc = entry.get("loc")
        if isinstance(loc, str) and "," in loc:
            lat_text, lon_text = loc.split(",", 1)
            lat, lon = _number(lat_text), _number(lon_text)
        return {
            "country": _text(entry.get("country")),
            "region": _text(entry.get("region")),
            "city": _text(entry.get("city")),
            "latitude": lat,
            "longitude": lon,
            "timezone": _text(entry.get("timezone")),
            "org": _text(entry.get("org")),
        }


class MmdbProvider:
    """An offline MaxMind-format database (GeoLite2/GeoIP2 City or ASN, DB-IP, ipinfo's mmdb):
    nothing leaves the machine."""

    name = "mmdb"
    max_batch = 10_000

    def __init__(self, path: str) -> None:
        import maxminddb

        self.reader = maxminddb.open_database(path)

    def lookup(self, ips: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for ip in ips:
            try:
                record = self.reader.get(ip)
            except ValueError:
                continue
            if isinstance(record, dict):
                out[ip] = self._geo(record)
        return out

    @staticmethod
    def _name(node: Any) -> str | None:
        if isinstance(node, dict):
            names = node.get("names")
            if isinstance(names, dict):
                return _text(names.get("en"))
            return _text(node.get("name"))
        return None

    @classmethod
    def _geo(cls, record: Mapping[str, Any]) -> dict[str, Any]:
        country = record.get("country")
        location = record.get("location") if isinstance(record.get("location"), dict) else {}
        assert isinstance(location, dict)  # narrows the type for mypy only  # nosec B101
        subdivisions = record.get("subdivisions")
        region = cls._name(subdivisions[0]) if isinstance(subdivisions, list) and subdivisions else None
        org = record.get("autonomous_system_organization") or record.get("as_name") or record.get("org")
        return {
            "country": _text(country.get("iso_code"))
            if isinstance(country, dict)
            else _text(record.get("country_code")),
            "region": region or _text(record.get("region")),
            "city": cls._name(record.get("city")) or _text(record.get("city")),
            "latitude": _number(location.get("latitude", record.get("latitude"))),
            "longitude": _number(location.get("longitude", record.get("longitude"))),
            "timezone": _text(location.get("time_zone")) or _text(record.get("timezone")),
            "org": _text(org),
        }


class MemoryCache:
    """Per-instance cache, bounded, so a warm Lambda answers repeated addresses without I/O."""

    def __init__(self, max_entries: int = 20_000, clock: Callable[[], float] = time.time) -> None:
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self.max_entries = max_entries
        self.clock = clock

    def get(self, ip: str) -> dict[str, Any] | None:
        hit = self._items.get(ip)
        if hit is None:
            return None
        if hit[0] <= self.clock():
            del self._items[ip]
            return None
        self._items.move_to_end(ip)
        return hit[1]

    def put(self, ip: str, geo: dict[str, Any], expires_at: float) -> None:
        self._items[ip] = (expires_at, geo)
        self._items.move_to_end(ip)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


class DynamoCache:
    """The shared cache in the meta table: pk `geo#<ip>`, sk `geo`, with `expires_at` for TTL.

    TTL deletion is lazy, so `expires_at` is checked on read as well.
    """

    def __init__(self, client: DynamoDBClient, table: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    @staticmethod
    def key(ip: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": f"geo#{ip}"}, "sk": {"S": "geo"}}

    def get_many(self, ips: Sequence[str]) -> dict[str, tuple[dict[str, Any], float]]:
        found: dict[str, tuple[dict[str, Any], float]] = {}
        now = self.clock()
        for start in range(0, len(ips), 100):
            keys: list[Any] = [self.key(ip) for ip in ips[start : start + 100]]
            for _attempt in range(5):
                response: Any = self.client.batch_get_item(
                    RequestItems={self.table: {"Keys": keys, "ConsistentRead": False}}
                )
                for item in response.get("Responses", {}).get(self.table, []):
                    expires = float(item["expires_at"]["N"])
                    if expires > now and "geo" in item:
                        found[item["pk"]["S"][4:]] = (plain(item["geo"]), expires)
                keys = list(response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", []))
                if not keys:
                    break
                time.sleep(0.05 * (_attempt + 1))
        return found

    def put_many(self, entries: Mapping[str, tuple[dict[str, Any], int]]) -> None:
        requests_: list[Any] = [
            {
                "PutRequest": {
                    "Item": {
                        **self.key(ip),
                        "geo": to_attr(geo),
                        "expires_at": {"N": str(expires_at)},
                        "cached_at": {"N": str(int(self.clock()))},
                    }
                }
            }
            for ip, (geo, expires_at) in entries.items()
        ]
        for start in range(0, len(requests_), 25):
            chunk = requests_[start : start + 25]
            for attempt in range(5):
                response = self.client.batch_write_item(RequestItems={self.table: chunk})
                chunk = list(response.get("UnprocessedItems", {}).get(self.table, []))
                if not chunk:
                    break
                time.sleep(0.05 * (attempt + 1))


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
        max_wait_seconds: float = 2.0,
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
        self.max_wait_seconds = max_wait_seconds
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
                if wait > self.max_wait_seconds:
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
