"""Opaque page cursors of the query API: DynamoDB's LastEvaluatedKey, base64url-encoded JSON.

A cursor is checked for shape when it comes back, so a hand-made one is a 400, not a
DynamoDB ValidationException."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from mailpixel.model.query import BadQuery


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, binascii.Error):
        raise BadQuery("cursor is not one this API issued") from None
    if not isinstance(key, dict) or not all(
        isinstance(v, dict) and len(v) == 1 and isinstance(next(iter(v.values())), str) for v in key.values()
    ):
        raise BadQuery("cursor is not one this API issued")
    return key
