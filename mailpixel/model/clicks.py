"""The click event: one record per followed click URL, and its DynamoDB shape.

A click is recorded the way an open is (one conditional write keyed by API Gateway's request
id, the same fallback when the write fails), but into its own table (`ClicksTable`), so a
query of the events table still returns opens only. Attribute names are the public schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from mailpixel.model.events import OpenEvent, RequestFacts, iso_millis, optional_attributes
from mailpixel.model.keys import click_key

CLICK_KIND = "click"
KIND_FIELD = "kind"  # in the JSON form only: tells a click from an open in a shared fallback


@dataclass(frozen=True)
class ClickEvent:
    email_id: str
    clicked_at: str
    request_id: str
    expires_at: int
    url: str
    method: str = "GET"
    user_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    signed: bool | None = None
    # `email` when the signature covers the email and the link but not the user id (the user id
    # came from an ESP's merge tag and could have been changed by whoever holds the URL).
    signature_scope: str | None = None
    # The click URL's signed issue time `t`, epoch seconds, when it had one: enrichment measures
    # the seconds between issue and click (scanners follow links within seconds of delivery).
    issued_t: int | None = None
    pending_ip: str | None = None

    kind: ClassVar[str] = CLICK_KIND

    @property
    def click_key(self) -> str:
        return click_key(self.clicked_at, self.request_id)

    def to_json(self) -> dict[str, Any]:
        return {KIND_FIELD: CLICK_KIND, **{k: v for k, v in asdict(self).items() if v is not None}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClickEvent:
        names = {f.name for f in fields(cls)}  # not __dataclass_fields__: it lists `kind` too
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_item(self) -> dict[str, dict[str, Any]]:
        """DynamoDB attribute values for the low-level client."""
        item: dict[str, dict[str, Any]] = {
            "email_id": {"S": self.email_id},
            "click_key": {"S": self.click_key},
            "clicked_at": {"S": self.clicked_at},
            "request_id": {"S": self.request_id},
            "expires_at": {"N": str(self.expires_at)},
            "url": {"S": self.url},
            "method": {"S": self.method},
        }
        item.update(
            optional_attributes(self, ("user_id", "ip", "user_agent", "signature_scope", "pending_ip"))
        )
        return item


def event_from_json(data: Mapping[str, Any]) -> OpenEvent | ClickEvent:
    """An open or a click from its JSON form (fallback file, queue message, log line).

    Raises TypeError when fields are missing, as `OpenEvent.from_json` does."""
    if data.get(KIND_FIELD) == CLICK_KIND:
        return ClickEvent.from_json(data)
    return OpenEvent.from_json(data)


def build_click_event(
    *,
    email_id: str,
    user_id: str,
    url: str,
    method: str,
    facts: RequestFacts,
    retention_seconds: int,
    stored_ip: str | None,
    signed: bool,
    signature_scope: str | None = None,
    issued_t: int | None = None,
) -> ClickEvent:
    pending = facts.ip if facts.ip and stored_ip != facts.ip else None
    return ClickEvent(
        email_id=email_id,
        clicked_at=iso_millis(facts.epoch_ms),
        request_id=facts.request_id,
        expires_at=facts.epoch_ms // 1000 + retention_seconds,
        url=url,
        method=method,
        user_id=user_id or None,
        ip=stored_ip,
        user_agent=facts.user_agent or None,
        signed=signed,
        signature_scope=signature_scope,
        issued_t=issued_t,
        pending_ip=pending,
    )
