"""AWS Lambda entry points, one per function in serverless.yml. Nothing else lives here.

Each function imports only its own package, once per cold start and on first use: the pixel
never loads the query API or enrichment, and `enrich` and `drain` never load Flask,
Werkzeug or serverless-wsgi (`tests/e2e/test_cold_start.py` checks this).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings

if TYPE_CHECKING:
    from flask import Flask
    from mypy_boto3_dynamodb import DynamoDBClient

    from mailpixel.ddb.store import EventStore
    from mailpixel.enrich.handler import StreamHandler
    from mailpixel.secrets import SigningKeys

settings = Settings.from_env()


@cache
def get_app() -> Flask:
    """The pixel function's app."""
    from mailpixel.pixel.app import create_app

    return create_app(settings)


@cache
def get_api_app() -> Flask:
    """The api function's app."""
    from mailpixel.api.app import create_api_app

    return create_api_app(settings)


def __getattr__(name: str) -> Any:
    """`handler.app`, as serverless-wsgi's own commands (`sls wsgi serve`) look it up: both apps
    on one server, as `make run` serves them. Local only; no function calls it."""
    if name == "app":
        from mailpixel.ops.local.wsgi import combined_app

        return combined_app(get_app(), get_api_app())
    raise AttributeError(name)


def pixel(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (HTTP API or REST) → the pixel app, via serverless-wsgi.

    An event serverless-wsgi cannot translate (it raises before the app runs) would be a 500
    and a broken image; for the pixel's path it is answered with the GIF all the same."""
    import serverless_wsgi

    if settings.offline:
        event = without_request_id(event)
    try:
        return serverless_wsgi.handle_request(get_app(), event, context)  # type: ignore[no-any-return]
    except Exception:
        from mailpixel.pixel.gif import lambda_gif_response

        response = lambda_gif_response(event)
        if response is None:
            raise
        return response
    finally:
        _flush_metrics(get_app())


def without_request_id(event: dict[str, Any]) -> dict[str, Any]:
    """The event without API Gateway's request id. `serverless offline` gives every request
    the same one, and an open or click is written once per request id: every open after the
    first would be taken for a retry of it. Without one, each request gets its own."""
    context = {k: v for k, v in (event.get("requestContext") or {}).items() if k != "requestId"}
    return {**event, "requestContext": context}


def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway → the query API and dashboard app, via serverless-wsgi."""
    import serverless_wsgi

    try:
        return serverless_wsgi.handle_request(get_api_app(), event, context)  # type: ignore[no-any-return]
    finally:
        _flush_metrics(get_api_app())


def _flush_metrics(app: Flask) -> None:
    """Counts tallied more than a minute ago are written now, before Lambda may freeze or
    reclaim the instance; otherwise only a later request would write them."""
    from mailpixel.web import flush_metrics

    flush_metrics(app)


@cache
def _durable_store() -> EventStore:
    from mailpixel.aws import dynamodb_client
    from mailpixel.ddb.store import EventStore

    return EventStore(dynamodb_client(settings), settings.table, settings.clicks_table)


@cache
def _drain_keys() -> SigningKeys:
    from mailpixel.aws import ssm_client
    from mailpixel.logs import Metrics
    from mailpixel.secrets import SigningKeys

    # Metrics: a drain that cannot load the secrets raises the same alarm as the pixel.
    return SigningKeys(settings, metrics=Metrics(), client=lambda: ssm_client(settings))


def drain(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS fallback queue → the events and clicks tables (events whose first write failed, and
    opens quarantined unverified, which are verified first)."""
    from mailpixel.drain.handler import drain_records

    return drain_records(event.get("Records", []), _durable_store(), _drain_keys())


@cache
def _enrich_handler() -> StreamHandler:
    from mailpixel.enrich.handler import build_handler
    from mailpixel.enrich.webhooks import webhook_hooks

    return build_handler(settings, before_write=webhook_hooks(settings)[0])


def enrich(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """DynamoDB stream (new open events) → client, machine/proxy verdict, geolocation."""
    handler = _enrich_handler()
    try:
        return handler(event, context)
    finally:
        handler.metrics.flush_if_due()


@cache
def _click_handler() -> StreamHandler:
    from mailpixel.enrich.clicks import build_click_handler
    from mailpixel.enrich.webhooks import webhook_hooks

    return build_click_handler(settings, before_write=webhook_hooks(settings)[1])


def enrich_clicks(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """DynamoDB stream (new clicks) → client, machine_click verdict with evidence, geolocation."""
    return _click_handler()(event, context)


@cache
def _webhook_target() -> tuple[str, str] | None:
    from mailpixel.webhooks.handler import load_target

    return load_target(settings)


def webhooks(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS webhook queue → signed POSTs to the sender's URL (retried with backoff, then the DLQ)."""
    from mailpixel.aws import sqs_client
    from mailpixel.webhooks.handler import batch_deadline, deliver_records

    deadline = batch_deadline(context)  # first: the clock runs from the invocation's start
    queue_url = settings.webhook_queue_url or ""
    return deliver_records(
        event.get("Records", []),
        _webhook_target(),
        sqs_client(settings),
        queue_url,
        deadline=deadline,
        lookup=_click_lookup,
    )


def _click_lookup(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A human click's webhook is sent only if the click is still human (docs/tracking/webhooks.md);
    the DynamoDB client is made on the first click's message, not at every cold start."""
    from mailpixel.model.webhooks import current_click

    return current_click(_webhook_ddb(), settings.clicks_table, payload)


@cache
def _webhook_ddb() -> DynamoDBClient:
    from mailpixel.aws import dynamodb_client

    return dynamodb_client(settings)
