"""`GET /dashboard`: one self-contained page that reads only the query API.

The HTML, CSS and JavaScript in `static/` are put together into one response the first
time it is asked for and kept: one request, no CDN, nothing to fetch but the API's JSON.
The page holds an API key in sessionStorage and shows text that anyone who can load a
pixel can choose (user agents, ids), so its Content-Security-Policy allows only this
exact script and style (by hash) and connections back to this origin.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib import resources

from flask import Blueprint, Response

bp = Blueprint("dashboard", __name__)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy."""
    files = resources.files("mailpixel.api") / "static"
    html = (files / "dashboard.html").read_text(encoding="utf-8")
    css = (files / "dashboard.css").read_text(encoding="utf-8")
    script = (files / "dashboard.js").read_text(encoding="utf-8")
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_sha256(script)}",
            f"style-src {_sha256(css)}",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    body = html.replace("/*STYLE*/", css).replace("/*SCRIPT*/", script)
    return body.encode(), policy


@bp.get("/dashboard")
def dashboard() -> Response:
    body, policy = page()
    response = Response(body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = policy
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response
