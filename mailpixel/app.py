"""The Flask application factory: routes only route; the work lives in the modules they call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from mailpixel import __version__
from mailpixel.config import Settings
from mailpixel.events import RequestFacts, build_open_event
from mailpixel.logs import Metrics, configure, get_logger
from mailpixel.pixel import gif_response
from mailpixel.privacy import stored_ip
from mailpixel.recorder import Fallback, FileFallback, OpenRecorder, SqsFallback
from mailpixel.store import EventStore
from mailpixel.validation import MAX_USER_AGENT_LENGTH, clean_text, parse_pixel_params

log = get_logger("app")
EXTENSION = "mailpixel"


@dataclass
class Components:
    """What the routes use, built once per process (per Lambda cold start)."""

    settings: Settings
    store: EventStore
    recorder: OpenRecorder
    metrics: Metrics
    geolocator: Any = None


def default_fallback(settings: Settings) -> Fallback | None:
    if settings.fallback_queue_url:
        from mailpixel.aws import sqs_client

        return SqsFallback(sqs_client(settings), settings.fallback_queue_url)
    if settings.is_local:
        return FileFallback(Path(settings.data_dir) / "fallback" / "pending.jsonl")
    return None


def create_app(
    settings: Settings | None = None,
    *,
    store: EventStore | None = None,
    geolocator: Any = None,
    fallback: Fallback | None = None,
    metrics: Metrics | None = None,
) -> Flask:
    """Build the app. Tests pass their own store (pointed at DynamoDB Local) and fallback."""
    settings = settings or Settings.from_env()
    configure(settings.log_level)
    if store is None:
        from mailpixel.aws import dynamodb_client

        store = EventStore(dynamodb_client(settings, fast=True), settings.table)
    metrics = metrics or Metrics()
    recorder = OpenRecorder(store, fallback if fallback is not None else default_fallback(settings), metrics)

    app = Flask(__name__)
    app.extensions[EXTENSION] = Components(settings, store, recorder, metrics, geolocator)

    @app.route("/pixel", methods=["GET", "HEAD"])
    def pixel() -> Response:
        try:
            if request.method == "GET":
                _record_open(app.extensions[EXTENSION])
            else:
                metrics.count("pixel_head")
        except Exception:  # noqa: BLE001 - the reader gets the image whatever happened here
            log.exception("pixel_error")
            metrics.count("pixel_error")
        return gif_response()

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok", version=__version__, table=settings.table, counters=metrics.snapshot())

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int, dict[str, str]]:
        return f"{error.code} {error.name}\n", error.code or 500, {"Content-Type": "text/plain; charset=utf-8"}

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[str, int, dict[str, str]]:
        log.exception("unhandled_error")
        metrics.count("unhandled_error")
        return "500 Internal Server Error\n", 500, {"Content-Type": "text/plain; charset=utf-8"}

    return app


def _record_open(parts: Components) -> None:
    params = parse_pixel_params({name: request.args.getlist(name) for name in request.args})
    if params.reasons:
        log.info("pixel_params_repaired", extra={"reasons": params.reasons, "query": request.query_string[:512]})
        for reason in params.reasons:
            parts.metrics.count("pixel_param_issue", reason=reason)
    if not params.recordable:
        parts.metrics.count("pixel_not_recorded", reason="missing:email_id")
        return
    reasons: list[str] = []
    user_agent = clean_text(request.headers.get("User-Agent", ""), MAX_USER_AGENT_LENGTH, "user_agent", reasons)
    ip = request.remote_addr or ""
    facts = RequestFacts.from_lambda_event(request.environ.get("serverless.event"), ip=ip, user_agent=user_agent)
    event = build_open_event(
        email_id=params.email_id,
        user_id=params.user_id,
        facts=facts,
        retention_seconds=parts.settings.retention_seconds,
        stored_ip=stored_ip(ip, parts.settings.ip_storage),
    )
    parts.recorder.record(event)
