"""Turn the pixel's raw query parameters into clean values, noting every repair made.

Mail clients, proxies and people mangle URLs. Nothing here raises: each problem becomes a
named reason that the caller logs and counts, and the pixel is served regardless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from mailpixel.model.ids import clean_id

MAX_USER_AGENT_LENGTH = 512
PIXEL_PARAMS = ("email_id", "user_id", "t", "sig")
# Epoch seconds have 10 digits until the year 2286; 12 reach past the year 30,000.
MAX_T_DIGITS = 12
# Fields past this many are ignored: a pixel URL has four.
MAX_QUERY_FIELDS = 64


def query_params(raw: bytes) -> dict[str, list[str]]:
    """Parse a raw query string leniently: bad UTF-8 and bad percent-escapes become U+FFFD or
    stay literal, where Werkzeug's `request.args` would raise on raw non-UTF-8 bytes."""
    fields = raw.decode("utf-8", "replace").split("&", MAX_QUERY_FIELDS)[:MAX_QUERY_FIELDS]
    return parse_qs("&".join(fields), keep_blank_values=True, errors="replace")


@dataclass
class PixelParams:
    """The pixel's parameters after cleaning; `reasons` lists what was repaired or missing."""

    email_id: str = ""
    user_id: str = ""
    t: str = ""
    sig: str = ""
    reasons: list[str] = field(default_factory=list)

    @property
    def recordable(self) -> bool:
        return bool(self.email_id)

    @property
    def issued_t(self) -> int | None:
        """`t` as epoch seconds when it is one: ASCII digits, at most MAX_T_DIGITS. Anything else
        is stored as no issue time: a 39-digit number is past what DynamoDB stores (every write
        of the event would fail), and `str.isdigit` also takes digits `int` refuses ("²")."""
        t = self.t
        return int(t) if 0 < len(t) <= MAX_T_DIGITS and t.isascii() and t.isdigit() else None


def parse_pixel_params(get_all: Mapping[str, Sequence[str]]) -> PixelParams:
    """Clean the parameters. A repeated parameter keeps its first value, as most frameworks do."""
    params = PixelParams()
    for name in PIXEL_PARAMS:
        values = get_all.get(name) or []
        if len(values) > 1:
            params.reasons.append(f"repeated:{name}")
        raw = values[0] if values else ""
        setattr(params, name, clean_id(raw, name, params.reasons))
    if not params.email_id:
        params.reasons.append("missing:email_id")
    return params
