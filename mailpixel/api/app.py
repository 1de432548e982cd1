"""The api function's Flask app: the query API under /api and the dashboard page."""

from __future__ import annotations

from flask import Flask

from mailpixel.api import dashboard
from mailpixel.api.routes import init_api
from mailpixel.config import Settings
from mailpixel.logs import Metrics, configure
from mailpixel.web import register_error_pages


def create_api_app(settings: Settings | None = None, *, metrics: Metrics | None = None) -> Flask:
    """Build the api app. Its DynamoDB client and API keys are made on the first /api request."""
    settings = settings or Settings.from_env()
    configure(settings.log_level)
    # No implicit /static route: the dashboard serves its own files (dashboard.py).
    app = Flask(__name__, static_folder=None)
    init_api(app, settings)
    app.register_blueprint(dashboard.bp)
    register_error_pages(app, metrics or Metrics())
    return app
