"""The two geolocation caches: per instance in memory, and shared in the meta table.

An address costs at most one provider request a day across every instance.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mailpixel.config import IpStorage, Settings
from mailpixel.ddb.batch import batch_get, batch_write
from mailpixel.ddb.codec import plain, to_attr
from mailpixel.model.ip import network_of
from mailpixel.model.keys import geo_key, geo_pk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


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

    With `MAILPIXEL_IP_STORAGE=truncated|none` no full address may outlive enrichment, so the
    entry is keyed by the address's network (the /24 or /48 `truncated` keeps; a neighbour
    gets the network's location, as precise as that mode promises) and its expiry is cut down to
    the start of a UTC hour: nothing in it tells which address, nor when it was seen.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        clock: Callable[[], float] = time.time,
        ip_storage: IpStorage = Settings.ip_storage,
    ) -> None:
        self.client = client
        self.table = table
        self.clock = clock
        self.private = ip_storage != "full"

    def key_of(self, ip: str) -> str:
        return (network_of(ip) or ip) if self.private else ip

    def get_many(self, ips: Sequence[str]) -> dict[str, tuple[dict[str, Any], float]]:
        found: dict[str, tuple[dict[str, Any], float]] = {}
        now = self.clock()
        wanted: dict[str, list[str]] = {}
        for ip in ips:
            wanted.setdefault(self.key_of(ip), []).append(ip)
        for item in batch_get(self.client, self.table, [geo_key(key) for key in wanted]):
            expires = float(item["expires_at"]["N"])
            if expires > now and "geo" in item:
                for ip in wanted.get(geo_pk.value_of(item["pk"]["S"]), []):
                    found[ip] = (plain(item["geo"]), expires)
        return found

    def put_many(self, entries: Mapping[str, tuple[dict[str, Any], int]]) -> None:
        items: dict[str, dict[str, Any]] = {}
        for ip, (geo, expires_at) in entries.items():
            item: dict[str, Any] = {**geo_key(self.key_of(ip)), "geo": to_attr(geo)}
            if self.private:
                item["expires_at"] = {"N": str(expires_at - expires_at % 3600)}
            else:
                item.update(expires_at={"N": str(expires_at)}, cached_at={"N": str(int(self.clock()))})
            items[self.key_of(ip)] = {"PutRequest": {"Item": item}}
        batch_write(self.client, self.table, list(items.values()))
