"""AWS Lambda entry points, one per function in serverless.yml. Nothing else lives here.

Each function builds only what it uses, once per cold start: the pixel never imports the
enrichment code, and the enrich and drain functions never build the Flask app (nor read the
signing secrets it needs).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import serverless_wsgi

from mailpixel.config import Settings

if TYPE_CHECKING:
    from flask import Flask

    from mailpixel.enrich.stream import StreamHandler
    from mailpixel.store import EventStore

settings = Settings.from_env()


@cache
def get_app() -> Flask:
    from mailpixel.app import create_app

    return create_app(settings)


def __getattr__(name: str) -> Any:
    """`handler.app`, as serverless-wsgi's own commands (`sls wsgi serve`) look it up."""
    if name == "app":
        return get_app()
    raise AttributeError(name)


def pixel(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (HTTP API or REST) → the Flask app, via serverless-wsgi.

    An event serverless-wsgi cannot translate (it raises before the app runs) would be a 500
    and a broken image; for the pixel's path it is answered with the GIF all the same."""
    try:
        return serverless_wsgi.handle_request(get_app(), event, context)  # type: ignore[no-any-return]
    except Exception:
        from mailpixel.pixel import lambda_gif_response

        response = lambda_gif_response(event)
        if response is None:
            raise
        return response


@cache
def _durable_store() -> EventStore:
    from mailpixel.aws import dynamodb_client
    from mailpixel.store import EventStore

    return EventStore(dynamodb_client(settings), settings.table)


def drain(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS fallback queue → the events table (opens whose first write failed)."""
    from mailpixel.drain import drain_records

    return drain_records(event.get("Records", []), _durable_store())


@cache
def _enrich_handler() -> StreamHandler:
    from mailpixel.enrich.stream import build_handler

    return build_handler(settings)


def enrich(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """DynamoDB stream (new open events) → client, machine/proxy verdict, geolocation."""
    return _enrich_handler()(event, context)
