"""Moved to `mailpixel.signing` (shared: the drain function verifies quarantined opens too).
This name stays so that code written against the old path keeps importing."""

from __future__ import annotations

from mailpixel.signing import (
    SIG_PARAM,
    TIME_PARAM,
    canonical,
    make_url,
    sign,
    verify,
)

__all__ = ["SIG_PARAM", "TIME_PARAM", "canonical", "make_url", "sign", "verify"]
