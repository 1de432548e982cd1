"""AWS Lambda entry points. Nothing else lives here: the app is built once per cold start."""

from __future__ import annotations

from typing import Any

import serverless_wsgi

from mailpixel.app import create_app

app = create_app()


def pixel(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway (HTTP API or REST) → the Flask app, via serverless-wsgi."""
    return serverless_wsgi.handle_request(app, event, context)  # type: ignore[no-any-return]
