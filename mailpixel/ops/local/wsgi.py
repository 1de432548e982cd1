"""Both apps behind one local port, routed as API Gateway routes them in AWS (serverless.yml):
`/api/*` and `/dashboard` to the api app, everything else to the pixel app."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def is_api_path(path: str) -> bool:
    """True for the paths serverless.yml routes to the api function."""
    return path == "/dashboard" or path.startswith("/api/")


def combined_app(pixel_app: WsgiApp, api_app: WsgiApp) -> WsgiApp:
    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = api_app if is_api_path(environ.get("PATH_INFO", "")) else pixel_app
        return app(environ, start_response)

    return route
