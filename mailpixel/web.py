"""What the two Flask apps (pixel and api) share: error pages that are plain text for anything that
is not a route, and a logged, counted 500 that never shows a traceback."""

from __future__ import annotations

from flask import Flask
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
    def http_error(error: HTTPException) -> tuple[str, int, dict[str, str]]:
        return f"{error.code} {error.name}\n", error.code or 500, PLAIN

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[str, int, dict[str, str]]:
        log.exception("unhandled_error")
        metrics.count("unhandled_error")
        return "500 Internal Server Error\n", 500, PLAIN
