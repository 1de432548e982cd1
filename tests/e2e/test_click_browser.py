"""An instrumented email in real headless Chromium (Debian's): the pixel renders and is stored, a
click on a link lands on its real destination (a server on 127.0.0.1) with the click stored,
and a tampered click URL shows the plain page instead of redirecting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, sync_playwright

from mailpixel.config import Settings
from mailpixel.ops.instrument import Instrumenter
from mailpixel.ops.local.stack import free_port
from mailpixel.pixel.app import create_app
from tests.conftest import all_items
from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.serving import serving

SECRET = "browser-click-secret"
EMAIL = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>November</title></head>
<body>
<p>Hello! <a id="buy" href="{shop}/sale/?utm_source=mail&amp;q=a+b%20c#offer-2">Shop the sale</a></p>
<p><a id="help" href="mailto:help@example.com">help</a></p>
</body></html>
"""


class Destination(BaseHTTPRequestHandler):
    """The link's real destination: a page that says where it is, remembering every request."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/favicon.ico":
            type(self).seen.append(self.path)
        if self.path == "/email":
            body = self.server.email.encode()  # type: ignore[attr-defined]
        else:
            body = f"<!DOCTYPE html><title>landed</title><h1 id='landed'>{self.path}</h1>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def pixel_server(settings: Settings, table: str) -> Iterator[str]:
    with serving(create_app(settings.with_overrides(signing_secrets=(SECRET,)))) as base:
        yield base


@pytest.fixture
def shop() -> Iterator[ThreadingHTTPServer]:
    Destination.seen = []
    http = ThreadingHTTPServer(("127.0.0.1", free_port()), Destination)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield http
    http.shutdown()
    http.server_close()
    thread.join(timeout=10)


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context()
        yield context.new_page()
        context.close()
        browser.close()


def eventually(read: Callable[[], list[dict[str, Any]]], count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        items = read()
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


def test_instrumented_email_in_chromium(
    page: Page, pixel_server: str, shop: ThreadingHTTPServer, settings: Settings, ddb: Any
) -> None:
    shop_url = f"http://127.0.0.1:{shop.server_port}"
    destination = f"{shop_url}/sale/?utm_source=mail&q=a+b%20c#offer-2"
    email = Instrumenter(EMAIL.format(shop=shop_url), email_id="nov", base_url=pixel_server, secret=SECRET)
    shop.email = email.render("reader-1")  # type: ignore[attr-defined]

    # The email renders its pixel (a real 1x1 image), and the open is stored.
    page.goto(f"{shop_url}/email")
    page.wait_for_function(
        "() => [...document.images].some(i => i.complete && i.naturalWidth === 1"
        " && i.src.includes('/pixel?'))"
    )
    (opened,) = eventually(lambda: all_items(ddb, settings.table), 1)
    assert (opened["email_id"], opened["user_id"], opened["signed"]) == ("nov", "reader-1", True)
    assert page.get_attribute("#help", "href") == "mailto:help@example.com"

    # A click lands on the real destination, query string and fragment intact, and is stored.
    with page.expect_navigation(url=destination):
        page.click("#buy")
    assert page.url == destination
    assert page.text_content("#landed") == "/sale/?utm_source=mail&q=a+b%20c"
    assert Destination.seen[-1] == "/sale/?utm_source=mail&q=a+b%20c"
    (clicked,) = eventually(lambda: all_items(ddb, settings.clicks_table), 1)
    assert (clicked["email_id"], clicked["user_id"], clicked["url"]) == ("nov", "reader-1", destination)
    assert clicked["method"] == "GET" and "Chrome" in clicked["user_agent"]

    # A tampered click URL (destination swapped) shows the plain page and goes nowhere.
    click_url = email.signer.url(destination, "reader-1")
    tampered = click_url.replace(quote(destination, safe=""), quote(f"{shop_url}/phish", safe=""))
    before = list(Destination.seen)
    response = page.goto(tampered)
    assert response is not None and response.status == 400
    assert page.url == tampered
    assert "not valid" in (page.text_content("body") or "")
    assert Destination.seen == before
    assert len(all_items(ddb, settings.clicks_table)) == 1
