"""What every pixel answer must be, whatever the request was."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

from PIL import Image

from mailpixel.pixel.gif import NO_CACHE_HEADERS


def assert_gif_bytes(body: bytes) -> None:
    assert len(body) <= 43
    image = Image.open(io.BytesIO(body))
    assert image.format == "GIF"
    assert image.size == (1, 1)
    rgba = image.convert("RGBA")
    pixel = rgba.getpixel((0, 0))
    assert isinstance(pixel, tuple) and pixel[3] == 0, "the pixel must be transparent"


def assert_pixel_headers(headers: Mapping[str, Any]) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["content-type"] == "image/gif"
    for name, value in NO_CACHE_HEADERS.items():
        assert lowered[name.lower()] == value


def assert_lambda_pixel(response: Mapping[str, Any]) -> None:
    """A Lambda proxy response that API Gateway turns into the GIF."""
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert_pixel_headers(headers)
    assert_gif_bytes(base64.b64decode(response["body"]))
