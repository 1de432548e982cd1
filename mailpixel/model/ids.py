"""IDs as the pixel and `/click` store them, and the one test of whether an ID is stored as given.

The pixel cleans what mail clients and proxies mangle (`clean_id`). Whatever signs a URL
(`signing.require_clean_id`) or looks an ID up (the query API) asks `cleaning_changes` of the
same rule, so an ID is signed as it is stored and nothing is looked up that cannot be stored.
"""

from __future__ import annotations

import unicodedata

from mailpixel.model.events import MAX_ID_LENGTH, TOO_LONG, cut_id, id_fits

# What an ID that cleaning would change is told (URL makers, the API).
NOT_CLEAN = "has white space at an end, or control or format characters, which the pixel and /click remove"


def _strip_controls(value: str) -> str:
    return "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))


def clean_text(value: str, limit: int, name: str, reasons: list[str]) -> str:
    """Drop control characters, trim white space and cut to `limit` characters."""
    # isprintable() runs in C and holds for nearly every real id and user agent; only the
    # rest pay for the character-by-character look-up.
    cleaned = (value if value.isprintable() else _strip_controls(value)).strip()
    if cleaned != value.strip():
        reasons.append(f"control_chars:{name}")
    if "\ufffd" in cleaned:
        reasons.append(f"undecodable:{name}")
    if len(cleaned) > limit:
        reasons.append(f"truncated:{name}")
        cleaned = cleaned[:limit]
    return cleaned


def clean_id(raw: str, name: str, reasons: list[str]) -> str:
    """An ID as the pixel and `/click` store it: controls and format characters (zero-width
    spaces, bidi marks) dropped, white space trimmed, cut to the limits of `id_fits`."""
    value = clean_text(raw, MAX_ID_LENGTH, name, reasons)
    if not id_fits(value):  # within the characters, past the bytes a key can hold
        reasons.append(f"truncated:{name}")
        value = cut_id(value)
    return value


def cleaning_changes(value: str) -> bool:
    """Whether `clean_id` would store `value` as something else. URL makers refuse such IDs
    (`signing.require_clean_id`): the URL would be signed for one ID and stored under another
    (`" alice"` merged with `alice`, out of reach of `forget --user-id " alice"`)."""
    return clean_id(value, "", []) != value


def id_problem(value: str) -> str | None:
    """Why no open or click can be stored under `value` as given (`TOO_LONG`, `NOT_CLEAN`), or
    None: what the URL makers, the API and `instrument` say of an ID they refuse."""
    if not id_fits(value):
        return TOO_LONG
    if cleaning_changes(value):
        return NOT_CLEAN
    return None
