"""The tracking pixel itself: bytes and headers, with no dependency beyond Flask."""

from __future__ import annotations

from flask import Response

# A 1x1 GIF89a whose only pixel is transparent (graphic control extension sets index 0 as
# transparent). 42 bytes: smaller than the usual 43-byte pixel, and every client renders it.
GIF_BYTES = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)

NO_CACHE_HEADERS = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


def gif_response() -> Response:
    """A fresh response each time: Flask responses are mutable and must not be shared."""
    response = Response(GIF_BYTES, status=200, mimetype="image/gif")
    response.headers.update(NO_CACHE_HEADERS)
    # Some image proxies ignore Cache-Control but honour a validator-free, varied response.
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
