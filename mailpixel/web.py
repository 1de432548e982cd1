"""What the two Flask apps (pixel and api) share: error pages (plain text, JSON under `/api/`, as
`openapi.yaml` promises), keeping the headers HTTP requires (`Allow` on a 405), and a logged,
counted 500 that never shows a traceback."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from mailpixel.logs import Metrics, get_logger

log = get_logger("web")
PLAIN = {"Content-Type": "text/plain; charset=utf-8"}
METRICS = "mailpixel.metrics"  # app.extensions key of the app's counters


def flush_metrics(app: Flask, *, only_if_due: bool = True) -> None:
    """Write the app's pending per-minute tallies: at the end of each Lambda invocation when a
    minute has passed (an instance reclaimed while idle would otherwise drop them), and all of
    them when the local server shuts down."""
    metrics: Metrics | None = app.extensions.get(METRICS)
    if metrics is None:
        return
    if only_if_due:
        metrics.flush_if_due()
    else:
        metrics.flush()


def register_error_pages(app: Flask, metrics: Metrics) -> None:
    app.extensions[METRICS] = metrics

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str | Response, int, dict[str, str]]:
        status = error.code or 500
        # Werkzeug's own headers for this error: `Allow` on a 405 (RFC 9110 requires it).
        kept = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        if request.path.startswith("/api/"):
            code = error.name.lower().replace(" ", "_")
            return jsonify(error=code, message=error.description or error.name), status, kept
        return f"{status} {error.name}\n", status, {**kept, **PLAIN}

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[str, int, dict[str, str]]:
        log.exception("unhandled_error")
        metrics.count("unhandled_error")
        return "500 Internal Server Error\n", 500, PLAIN
