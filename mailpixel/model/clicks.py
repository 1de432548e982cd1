"""The click event: one record per followed click URL, and its DynamoDB shape.

A click is recorded the way an open is (one conditional write keyed by API Gateway's request
id, the same fallback when the write fails), but into its own table (`ClicksTable`), so a
query of the events table still returns opens only. Attribute names are the public schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mailpixel.model.events import (
    OpenEvent,
    RequestFacts,
    from_fields,
    iso_millis,
    set_fields,
    stored_attributes,
)
from mailpixel.model.keys import CLICK_KEY, click_key

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
    # True when the URL carried the signed `hp=1` (`signing.HONEYPOT_PARAM`): a link no person
    # can see or reach, so its click is a machine's (enrichment's `honeypot` rule).
    honeypot: bool | None = None

    kind: ClassVar[str] = CLICK_KIND

    @property
    def click_key(self) -> str:
        return click_key(self.clicked_at, self.request_id)

    def to_json(self) -> dict[str, Any]:
        return {KIND_FIELD: CLICK_KIND, **set_fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClickEvent:
        return from_fields(cls, data)

    def to_item(self) -> dict[str, dict[str, Any]]:
        """DynamoDB attribute values for the low-level client."""
        strings = ("user_id", "ip", "user_agent", "signature_scope", "pending_ip")
        item = stored_attributes(self, CLICK_KEY, "clicked_at", strings)
        item["url"] = {"S": self.url}
        item["method"] = {"S": self.method}
        if self.honeypot:
            item["honeypot"] = {"BOOL": True}
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
    honeypot: bool = False,
) -> ClickEvent:
    request = facts.event_fields(user_id=user_id, retention_seconds=retention_seconds, stored_ip=stored_ip)
    return ClickEvent(
        email_id=email_id,
        clicked_at=iso_millis(facts.epoch_ms),
        url=url,
        method=method,
        signed=signed,
        signature_scope=signature_scope,
        issued_t=issued_t,
        honeypot=honeypot or None,
        **request,
    )
