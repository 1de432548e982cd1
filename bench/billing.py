"""DynamoDB's on-demand billing rules applied to the items a run really writes.

`Meter(client, reader)` hooks a boto3 client (botocore events, nothing replaced): every call is
counted by operation, and for every write the affected items are read before and after with a
second client, so each write is billed as DynamoDB bills it:
- a write request unit per started KB of the larger of the item's size before and after;
- twice that inside TransactWriteItems;
- a failed condition still costs the write (the item's size, at least one unit);
- each global secondary index the item is (or was) in costs its own units, on the size of the
  projected entry: put when the item enters the index, delete when it leaves, both when its
  index key changes, an update when a projected attribute changes, nothing otherwise.
Item size: attribute names plus values (strings and binaries by their UTF-8 bytes, numbers
about one byte per two digits plus one, booleans and nulls one byte, maps and lists 3 bytes
plus their elements plus one byte each), DynamoDB's published rule.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KB = 1024
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


def value_size(value: Mapping[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind in ("S", "B"):
        return len(inner.encode() if isinstance(inner, str) else inner)
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    if kind in ("SS", "BS"):
        return sum(len(x.encode() if isinstance(x, str) else x) for x in inner)
    if kind == "NS":
        return sum(value_size({"N": x}) for x in inner)
    raise ValueError(kind)


def item_size(item: Mapping[str, Any] | None) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


def units(size: int) -> int:
    return max(1, math.ceil(size / KB))


@dataclass(frozen=True)
class Index:
    keys: tuple[str, ...]
    projection: str
    included: tuple[str, ...]

    def entry(self, item: Mapping[str, Any] | None, table_keys: tuple[str, ...]) -> dict[str, Any] | None:
        if not item or any(k not in item for k in self.keys):
            return None
        if self.projection == "ALL":
            return dict(item)
        names = {*table_keys, *self.keys, *self.included}
        return {k: v for k, v in item.items() if k in names}


class Meter:
    """Calls and write request units of everything `client` does while `on` is true."""

    def __init__(self, client: Any, reader: Any) -> None:
        self.reader = reader
        self.calls: Counter[str] = Counter()
        self.wru: Counter[str] = Counter()
        self.on = True
        self._lock = threading.Lock()
        self._tables: dict[str, tuple[tuple[str, ...], list[Index]]] = {}
        events = client.meta.events
        events.register("provide-client-params.dynamodb", self._params)
        events.register("before-call.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)

    def _schema(self, table: str) -> tuple[tuple[str, ...], list[Index]]:
        if table not in self._tables:
            described = self.reader.describe_table(TableName=table)["Table"]
            keys = tuple(k["AttributeName"] for k in described["KeySchema"])
            indexes = [
                Index(
                    tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                    gsi["Projection"]["ProjectionType"],
                    tuple(gsi["Projection"].get("NonKeyAttributes", [])),
                )
                for gsi in described.get("GlobalSecondaryIndexes", [])
            ]
            self._tables[table] = (keys, indexes)
        return self._tables[table]

    def _targets(self, operation: str, params: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
        """(table, key, transactional) of every item a write touches."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            table = params["TableName"]
            key = params.get("Key") or {k: params["Item"][k] for k in self._schema(table)[0]}
            return [(table, key, False)]
        if operation == "TransactWriteItems":
            found = []
            for entry in params["TransactItems"]:
                ((kind, body),) = entry.items()
                table = body["TableName"]
                key = body.get("Key") or {k: body["Item"][k] for k in self._schema(table)[0]}
                found.append((table, key, True))
            return found
        if operation == "BatchWriteItem":
            found = []
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    body = request.get("PutRequest") or request.get("DeleteRequest")
                    key = body.get("Key") or {k: body["Item"][k] for k in self._schema(table)[0]}
                    found.append((table, key, False))
            return found
        return []

    def _read(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.reader.get_item(TableName=table, Key=key, ConsistentRead=True).get(
            "Item"
        )
        return item

    def _params(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["meter"] = (model.name, params)

    def _before(self, context: dict[str, Any], **_: Any) -> None:
        if not self.on or "meter" not in context:
            return
        operation, params = context["meter"]
        if operation in WRITES:
            context["meter_before"] = [
                (t, k, x, self._read(t, k)) for t, k, x in self._targets(operation, params)
            ]

    def _after(self, context: dict[str, Any], http_response: Any, **_: Any) -> None:
        if not self.on or "meter" not in context:
            return
        operation, _params = context["meter"]
        with self._lock:
            self.calls[operation] += 1
        failed = getattr(http_response, "status_code", 200) >= 300
        for table, key, transactional, before in context.get("meter_before", []):
            after = before if failed else self._read(table, key)
            table_keys, indexes = self._schema(table)
            base = units(max(item_size(before), item_size(after)))
            self._add(f"{table}:table", base * (2 if transactional else 1))
            if failed:
                continue
            for n, index in enumerate(indexes):
                old, new = index.entry(before, table_keys), index.entry(after, table_keys)
                if old == new:
                    continue
                same_key = old is not None and new is not None and all(old[k] == new[k] for k in index.keys)
                if same_key:
                    cost = units(max(item_size(old), item_size(new)))
                else:
                    cost = (units(item_size(old)) if old else 0) + (units(item_size(new)) if new else 0)
                self._add(f"{table}:index{n}", cost)

    def _add(self, name: str, value: int) -> None:
        with self._lock:
            self.wru[name] += value

    def totals(self) -> dict[str, Any]:
        return {"calls": dict(self.calls), "wru": dict(self.wru), "wru_total": sum(self.wru.values())}
