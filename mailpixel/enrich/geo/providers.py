"""Geolocation providers behind one interface: ipinfo.io (or a compatible mirror) and offline
MaxMind-format databases. A provider answers what it knows and raises `GeoError` when it cannot
answer now, so the caller backs off and retries the records later instead of dropping them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from mailpixel.config import Settings

if TYPE_CHECKING:
    import requests

GEO_FIELDS = ("country", "region", "city", "latitude", "longitude", "timezone", "org")
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
        timeout: float = Settings.geo_timeout_seconds,
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
