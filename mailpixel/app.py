"""The Flask application factory: routes only route; the work lives in the modules they call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from mailpixel import __version__
from mailpixel.config import Settings
from mailpixel.events import RequestFacts, build_open_event
from mailpixel.logs import Metrics, configure, get_logger
from mailpixel.pixel import gif_response
from mailpixel.privacy import stored_ip
from mailpixel.recorder import Fallback, FileFallback, OpenRecorder, SqsFallback
from mailpixel.signing import verify
from mailpixel.store import EventStore
from mailpixel.validation import MAX_USER_AGENT_LENGTH, clean_text, parse_pixel_params, query_params

log = get_logger("app")
EXTENSION = "mailpixel"


@dataclass
class Components:
    """What the routes use, built once per process (per Lambda cold start)."""

    settings: Settings
    store: EventStore
    recorder: OpenRecorder
    metrics: Metrics


def default_fallback(settings: Settings) -> Fallback | None:
    if settings.fallback_queue_url:
        from mailpixel.aws import sqs_client

        return SqsFallback(lambda: sqs_client(settings), settings.fallback_queue_url)
    if settings.is_local:
        return FileFallback(Path(settings.data_dir) / "fallback" / "pending.jsonl")
    return None


def create_app(
    settings: Settings | None = None,
    *,
    store: EventStore | None = None,
    fallback: Fallback | None = None,
    metrics: Metrics | None = None,
) -> Flask:
    """Build the app. Tests pass their own store (pointed at DynamoDB Local) and fallback.

    There is no geolocator here: geolocation runs in the enrichment step, off the pixel's path."""
    settings = settings or Settings.from_env()
    configure(settings.log_level)
    if settings.signing_secrets_parameter and not settings.signing_secrets:
        from mailpixel.secrets import load_signing_secrets

        try:
            settings = settings.with_overrides(signing_secrets=load_signing_secrets(settings))
        except Exception as exc:  # noqa: BLE001 - the pixel must keep answering; see below
            # A pixel that refused to start would break every image in every sent email. It goes
            # on unsigned instead: each open is kept with signed=false, so forged ones can be told
            # apart, and this error says the parameter needs fixing.
            log.error(
                "signing_secrets_unavailable",
                extra={"parameter": settings.signing_secrets_parameter, "error": repr(exc)},
            )
    if not settings.signing_secrets:
        log.warning(
            "signing_disabled",
            extra={"detail": "no MAILPIXEL_SIGNING_SECRETS: unsigned pixel URLs are recorded (signed=false)"},
        )
    if store is None:
        from mailpixel.aws import dynamodb_client

        store = EventStore(dynamodb_client(settings, fast=True), settings.table)
    metrics = metrics or Metrics()
    recorder = OpenRecorder(store, fallback if fallback is not None else default_fallback(settings), metrics)

    # No implicit /static route: the dashboard serves its own files (mailpixel/dashboard.py).
    app = Flask(__name__, static_folder=None)
    app.extensions[EXTENSION] = Components(settings, store, recorder, metrics)
    # Query API and dashboard (issue 6): about 2 ms of imports at cold start; their DynamoDB
    # client and API keys are made on the first /api request, never on the pixel's path.
    from mailpixel import api, dashboard

    api.init_api(app, settings)
    app.register_blueprint(dashboard.bp)

    @app.route("/pixel", methods=["GET", "HEAD"])
    def pixel() -> Response:
        try:
            if request.method == "GET":
                _record_open(app.extensions[EXTENSION])
            else:
                metrics.tally("pixel_head")
        except Exception:  # noqa: BLE001 - the reader gets the image whatever happened here
            log.exception("pixel_error")
            metrics.count("pixel_error")
        return gif_response()

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok", version=__version__, table=settings.table, counters=metrics.snapshot())

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int, dict[str, str]]:
        return (
            f"{error.code} {error.name}\n",
            error.code or 500,
            {"Content-Type": "text/plain; charset=utf-8"},
        )

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[str, int, dict[str, str]]:
        log.exception("unhandled_error")
        metrics.count("unhandled_error")
        return "500 Internal Server Error\n", 500, {"Content-Type": "text/plain; charset=utf-8"}

    return app


def _record_open(parts: Components) -> None:
    query = query_params(request.query_string)
    params = parse_pixel_params(query)
    user_agent = clean_text(
        request.headers.get("User-Agent", ""), MAX_USER_AGENT_LENGTH, "user_agent", params.reasons
    )
    if params.reasons:
        log.info(
            "pixel_params_repaired", extra={"reasons": params.reasons, "query": request.query_string[:512]}
        )
        for reason in params.reasons:
            parts.metrics.count("pixel_param_issue", reason=reason)
    if not params.recordable:
        parts.metrics.count("pixel_not_recorded", reason="missing:email_id")
        return
    secrets = parts.settings.signing_secrets
    if secrets:
        pairs = [(name, value) for name, values in query.items() for value in values]
        max_age = parts.settings.signature_max_age_days * 86_400 or None
        ok, why = verify(pairs, secrets, max_age_seconds=max_age)
        if not ok:
            log.warning("pixel_signature_rejected", extra={"reason": why, "email_id": params.email_id})
            parts.metrics.count(f"pixel_{why}", reason=why)
            return
    ip = request.remote_addr or ""
    facts = RequestFacts.from_lambda_event(
        request.environ.get("serverless.event"), ip=ip, user_agent=user_agent
    )
    event = build_open_event(
        email_id=params.email_id,
        user_id=params.user_id,
        facts=facts,
        retention_seconds=parts.settings.retention_seconds,
        stored_ip=stored_ip(ip, parts.settings.ip_storage),
        signed=bool(secrets),
    )
    parts.recorder.record(event)
