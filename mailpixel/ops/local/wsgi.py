"""Both apps behind one local port, routed as API Gateway routes them in AWS (serverless.yml):
`/api/*` and `/dashboard` to the api app, everything else to the pixel app; and the local
server's access log, which keeps no more of a reader than the table does."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from werkzeug.serving import WSGIRequestHandler

from mailpixel.pixel.privacy import stored_ip

if TYPE_CHECKING:
    from mailpixel.config import IpStorage

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# The API paths whose third segment is an email or user id (mailpixel/api/routes.py).
API_ID_COLLECTIONS = ("emails", "users")
ID_SHOWN = "{id}"


def is_api_path(path: str) -> bool:
    """True for the paths serverless.yml routes to the api function."""
    return path == "/dashboard" or path.startswith("/api/")


def combined_app(pixel_app: WsgiApp, api_app: WsgiApp) -> WsgiApp:
    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = api_app if is_api_path(environ.get("PATH_INFO", "")) else pixel_app
        return app(environ, start_response)

    return route


def logged_path(target: str) -> str:
    """A request target as the access log shows it: without its query, which carries the
    email and user ids, the signature and a click's destination, and with `{id}` in place
    of the id in `/api/emails/ID/...` and `/api/users/ID/...`. `mailpixel forget` cannot
    reach a terminal or a file the log was redirected to, so nothing it would erase is written."""
    segments = urlsplit(target).path.split("/")
    if len(segments) > 3 and segments[1] == "api" and segments[2] in API_ID_COLLECTIONS:
        segments[3] = ID_SHOWN
    return "/".join(segments)


def access_log_handler(ip_storage: IpStorage) -> type[WSGIRequestHandler]:
    """Werkzeug's request handler with an access log that follows MAILPIXEL_IP_STORAGE (the
    address as the table would keep it: whole, its network, or `-`) and shows each request
    as `METHOD PATH` only (`logged_path`), with its status and size."""

    class PrivateAccessLog(WSGIRequestHandler):
        def address_string(self) -> str:
            return stored_ip(super().address_string(), ip_storage) or "-"

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            command = getattr(self, "command", None)
            path = getattr(self, "path", None)
            # A request line that did not parse is not shown at all: it is the raw query too.
            line = f"{command} {logged_path(path)}" if command and path else "(unparsed request)"
            self.log("info", '"%s" %s %s', line.translate(self._control_char_table), code, size)

        def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            # BaseHTTPRequestHandler's errors ("Bad request syntax ('GET /pixel?...')") quote
            # the request line; the status of the answer is in the access line that follows.
            self.log("error", "%s", "bad request (its line is not logged)")

    return PrivateAccessLog
