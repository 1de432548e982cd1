"""The two geolocation caches: per instance in memory, and shared in the meta table.

An address costs at most one provider request a day across every instance.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mailpixel.ddb.batch import batch_get, batch_write
from mailpixel.ddb.codec import plain, to_attr
from mailpixel.model.keys import geo_key, ip_of_geo_pk

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
    """

    def __init__(self, client: DynamoDBClient, table: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    def get_many(self, ips: Sequence[str]) -> dict[str, tuple[dict[str, Any], float]]:
        found: dict[str, tuple[dict[str, Any], float]] = {}
        now = self.clock()
        for item in batch_get(self.client, self.table, [geo_key(ip) for ip in ips]):
            expires = float(item["expires_at"]["N"])
            if expires > now and "geo" in item:
                found[ip_of_geo_pk(item["pk"]["S"])] = (plain(item["geo"]), expires)
        return found

    def put_many(self, entries: Mapping[str, tuple[dict[str, Any], int]]) -> None:
        items = [
            {
                "PutRequest": {
                    "Item": {
                        **geo_key(ip),
                        "geo": to_attr(geo),
                        "expires_at": {"N": str(expires_at)},
                        "cached_at": {"N": str(int(self.clock()))},
                    }
                }
            }
            for ip, (geo, expires_at) in entries.items()
        ]
        batch_write(self.client, self.table, items)
