"""The open event: the one record mailpixel keeps per pixel fetch, and its DynamoDB shape.

Attribute names here are the public schema: users read them with `aws dynamodb query`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from mailpixel.model.keys import OPEN_KEY, UNENRICHED, open_key, unenriched_shard

EventT = TypeVar("EventT")

# Longest email_id / user_id kept, in characters and in UTF-8 bytes; longer values are cut (and
# the repair logged). The byte bound is the one DynamoDB enforces: IDs become parts of keys
# (`opener#USER` is a sort key, at most 1024 bytes; `email#ID` a partition key, at most 2048), so
# 512 bytes leaves every key format in `keys.py` room to spare. A character limit alone let 256
# four-byte characters through: 1024 bytes, and an `opener#` key no write could ever hold.
MAX_ID_LENGTH = 256
MAX_ID_BYTES = 512
# What an ID past the limits is told, wherever it is refused (URL makers, the API, the CLI).
TOO_LONG = f"is longer than {MAX_ID_LENGTH} characters or {MAX_ID_BYTES} bytes of UTF-8"


def id_fits(value: str) -> bool:
    """Whether an ID is within both limits, so every key made from it can be written."""
    return len(value) <= MAX_ID_LENGTH and len(value.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES


def cut_id(value: str) -> str:
    """The longest prefix of `value` within both limits, cut at a character boundary."""
    value = value[:MAX_ID_LENGTH]
    data = value.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_ID_BYTES:
        return value
    return data[:MAX_ID_BYTES].decode("utf-8", "ignore")


def iso_millis(epoch_ms: int) -> str:
    """UTC ISO-8601 with milliseconds and a `Z`, which sorts as a string in time order."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


@dataclass(frozen=True)
class RequestFacts:
    """What the edge knows about a request, independent of Flask and of API Gateway's version."""

    request_id: str
    epoch_ms: int
    ip: str
    user_agent: str

    @classmethod
    def from_lambda_event(
        cls, event: Mapping[str, Any] | None, *, ip: str, user_agent: str, now_ms: int | None = None
    ) -> RequestFacts:
        """Take the request id and arrival time from API Gateway when there is an event.

        API Gateway's `requestId` and arrival time are the same on every retry of one request,
        so the item key derived from them makes a retried invocation write the same item.
        """
        context = (event or {}).get("requestContext") or {}
        request_id = str(context.get("requestId") or "")
        epoch = context.get("timeEpoch") or context.get("requestTimeEpoch")
        try:
            epoch_ms = int(epoch) if epoch is not None else 0
        except (TypeError, ValueError):
            epoch_ms = 0
        if epoch_ms <= 0:
            epoch_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        if not request_id:
            request_id = f"local-{uuid.uuid4().hex}"
        return cls(request_id=request_id, epoch_ms=epoch_ms, ip=ip, user_agent=user_agent)

    def event_fields(self, *, user_id: str, retention_seconds: int, stored_ip: str | None) -> dict[str, Any]:
        """What an open and a click take from their request alike. `stored_ip` is the address
        as the privacy mode keeps it; when that is not the full address, the full one stays in
        `pending_ip` until enrichment has geolocated it."""
        return {
            "request_id": self.request_id,
            "expires_at": self.epoch_ms // 1000 + retention_seconds,
            "user_id": user_id or None,
            "ip": stored_ip,
            "user_agent": self.user_agent or None,
            "pending_ip": self.ip if self.ip and stored_ip != self.ip else None,
        }


@dataclass(frozen=True)
class OpenEvent:
    email_id: str
    opened_at: str
    request_id: str
    expires_at: int
    user_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    signed: bool | None = None
    # The full address, kept only until enrichment has geolocated it when `ip` is truncated
    # or dropped by the privacy setting.
    pending_ip: str | None = None
    # The query's parameters as received, kept with an open the pixel could not verify (signing
    # is configured but its secrets were not loaded yet). Such an open is quarantined in the
    # fallback, never written to the table as it is: the drain function or `mailpixel replay`
    # verifies these against the secrets first (`mailpixel.signing.release`).
    unverified: list[list[str]] | None = None
    # The URL's signed issue time `t` (epoch seconds), when it had one: enrichment keeps the
    # seconds from it to the open as evidence (`seconds_since_issue`).
    issued_t: int | None = None

    kind: ClassVar[str] = "open"  # names its metrics and log lines; a click's is "click"

    @property
    def open_key(self) -> str:
        return open_key(self.opened_at, self.request_id)

    def to_json(self) -> dict[str, Any]:
        return set_fields(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OpenEvent:
        return from_fields(cls, data)

    def to_item(self) -> dict[str, dict[str, Any]]:
        """DynamoDB attribute values for the low-level client (no serializer on the hot path)."""
        item = stored_attributes(self, OPEN_KEY, "opened_at", ("user_id", "ip", "user_agent", "pending_ip"))
        item[UNENRICHED] = {"S": unenriched_shard(self.request_id)}
        return item


def set_fields(event: Any) -> dict[str, Any]:
    """An event's JSON form: the fields that are set."""
    return {k: v for k, v in asdict(event).items() if v is not None}


def from_fields(cls: type[EventT], data: Mapping[str, Any]) -> EventT:
    """An event from its JSON form, ignoring names that are not its fields (`fields`, not
    `__dataclass_fields__`, which lists the `kind` class variable too). Raises TypeError when
    a required field is missing."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


def stored_attributes(
    event: Any, sort_key: str, time_field: str, strings: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """What every stored event has (email id, sort key, time, request id, expiry), then what it
    has only when known (`optional_attributes`)."""
    item: dict[str, dict[str, Any]] = {
        "email_id": {"S": event.email_id},
        sort_key: {"S": getattr(event, sort_key)},
        time_field: {"S": getattr(event, time_field)},
        "request_id": {"S": event.request_id},
        "expires_at": {"N": str(event.expires_at)},
    }
    item.update(optional_attributes(event, strings))
    return item


def optional_attributes(event: Any, strings: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What opens and clicks store only when known: the `strings` that are set, `signed` and
    `issued_t`."""
    item: dict[str, dict[str, Any]] = {
        name: {"S": value} for name in strings if (value := getattr(event, name))
    }
    if event.signed is not None:
        item["signed"] = {"BOOL": event.signed}
    if event.issued_t is not None:
        item["issued_t"] = {"N": str(event.issued_t)}
    return item


def build_open_event(
    *,
    email_id: str,
    user_id: str,
    facts: RequestFacts,
    retention_seconds: int,
    stored_ip: str | None,
    signed: bool | None = None,
    issued_t: int | None = None,
) -> OpenEvent:
    return OpenEvent(
        email_id=email_id,
        opened_at=iso_millis(facts.epoch_ms),
        signed=signed,
        issued_t=issued_t,
        **facts.event_fields(user_id=user_id, retention_seconds=retention_seconds, stored_ip=stored_ip),
    )
