"""The tracking pixel itself: bytes and headers, with no dependency beyond Flask."""

from __future__ import annotations

from typing import Any

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


def lambda_gif_response(event: Any) -> dict[str, Any] | None:
    """The GIF as an API Gateway proxy response, for a pixel request the WSGI layer could not
    handle; None when the event is not a request for the pixel."""
    import base64
    import logging

    path = event.get("rawPath") or event.get("path") if isinstance(event, dict) else None
    if path != "/pixel":
        return None
    logging.getLogger("mailpixel.pixel.gif").exception("pixel_event_untranslatable")
    headers = {"Content-Type": "image/gif", **NO_CACHE_HEADERS}
    return {
        "statusCode": 200,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "body": base64.b64encode(GIF_BYTES).decode("ascii"),
        "isBase64Encoded": True,
    }
