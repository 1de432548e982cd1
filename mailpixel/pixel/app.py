"""The pixel function's Flask app: `/pixel`, `/click` (pixel/click.py) and `/health`, nothing else.

Routes only route; the work lives in `record.py` (request → event) and `recorder.py` (event →
table or fallback). The query API and dashboard are another function with another role
(`mailpixel.api`), so this public, unauthenticated function can write opens and nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request

from mailpixel import __version__
from mailpixel.config import Settings
from mailpixel.ddb.store import EventStore
from mailpixel.logs import Metrics, configure, get_logger
from mailpixel.pixel.click import register_click_route
from mailpixel.pixel.gif import gif_response
from mailpixel.pixel.record import Components, record_open
from mailpixel.pixel.recorder import Fallback, FileFallback, OpenRecorder, SqsFallback
from mailpixel.web import register_error_pages

if TYPE_CHECKING:
    from mailpixel.secrets import SigningKeys

log = get_logger("pixel.app")
EXTENSION = "mailpixel"


def default_fallback(settings: Settings) -> Fallback | None:
    if settings.fallback_queue_url:
        from mailpixel.aws import sqs_client

        return SqsFallback(lambda: sqs_client(settings), settings.fallback_queue_url)
    if settings.is_local:
        return FileFallback(Path(settings.data_dir) / "fallback" / "pending.jsonl")
    return None


def _signing_keys(settings: Settings, metrics: Metrics) -> SigningKeys:
    """The secrets, read from SSM now when a parameter is configured. A failure does not stop
    the pixel (a pixel that refused to start would break every image in every sent email) and
    does not open it either: until the secrets load, opens are quarantined unverified."""
    from mailpixel.secrets import SigningKeys

    def client() -> Any:
        from mailpixel.aws import ssm_client

        return ssm_client(settings)

    keys = SigningKeys(settings, metrics=metrics, client=client)
    if keys.configured:
        keys.current()
    else:
        log.warning(
            "signing_disabled",
            extra={"detail": "no MAILPIXEL_SIGNING_SECRETS: unsigned pixel URLs are recorded (signed=false)"},
        )
    return keys


def create_app(
    settings: Settings | None = None,
    *,
    store: EventStore | None = None,
    fallback: Fallback | None = None,
    metrics: Metrics | None = None,
) -> Flask:
    """Build the pixel app. Tests pass their own store (pointed at DynamoDB Local) and fallback."""
    settings = settings or Settings.from_env()
    configure(settings.log_level)
    metrics = metrics or Metrics()
    keys = _signing_keys(settings, metrics)
    if store is None:
        from mailpixel.aws import dynamodb_client

        store = EventStore(dynamodb_client(settings, fast=True), settings.table, settings.clicks_table)
    recorder = OpenRecorder(store, fallback if fallback is not None else default_fallback(settings), metrics)

    # No implicit /static route: nothing here serves files.
    app = Flask(__name__, static_folder=None)
    app.extensions[EXTENSION] = Components(settings, store, recorder, metrics, keys)

    @app.route("/pixel", methods=["GET", "HEAD"])
    def pixel() -> Response:
        try:
            if request.method == "GET":
                record_open(app.extensions[EXTENSION])
            else:
                metrics.tally("pixel_head")
        except Exception:  # noqa: BLE001 - the reader gets the image whatever happened here
            log.exception("pixel_error")
            metrics.count("pixel_error")
        return gif_response()

    @app.get("/health")
    def health() -> Response:
        if not settings.is_local:
            # Public in AWS: the table's name and the traffic counters are nobody's business
            # (CloudWatch has the counters); a load balancer or a person needs only this much.
            return jsonify(status="ok", version=__version__)
        return jsonify(status="ok", version=__version__, table=settings.table, counters=metrics.snapshot())

    register_click_route(app, app.extensions[EXTENSION])
    register_error_pages(app, metrics)
    return app
