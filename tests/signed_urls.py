"""What both signing test files share: the published vectors, the secrets, and how to read a
URL's query back the way the pixel does."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from mailpixel.pixel.validation import query_params
from tests.conftest import FIXTURES

VECTORS = json.loads((FIXTURES / "signing_vectors.json").read_text())["vectors"]
NEW, OLD = "new-secret-2026", "old-secret-2025"
NOW = 1_795_528_140  # the fixture event's arrival time, in seconds


def url_query(url: str) -> str:
    return urlsplit(url).query


def pairs_of(query: str) -> list[tuple[str, str]]:
    """Decode the way the pixel does, so these checks see what the handler sees."""
    return [(name, value) for name, values in query_params(query.encode()).items() for value in values]
