"""Instrumented emails in real headless Chromium (Debian's): instrument reads every href as the
browser does (hostile attribute soups, raw `&` in URLs), and the honeypot link leaves no trace a
person could see, reach with the keyboard or hear from a screen reader. No request leaves the
machine: the pixel is answered from the page's own route, everything else is refused."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image, ImageChops
from playwright.sync_api import Browser, Page, Route, sync_playwright

from mailpixel.ops.instrument import Instrumenter, attribute_value, trackable
from mailpixel.pixel.gif import GIF_BYTES
from tests.conftest import FIXTURES
from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.unit.test_instrument import ATTRIBUTE_SOUPS, ATTRIBUTE_VALUES, GOOD, SPLIT_TAG

SECRET = "browser-honeypot-secret"
BASE = "https://px.example.com"
NEWSLETTER = (FIXTURES / "newsletter.html").read_text(encoding="utf-8")
HOSTILE = (FIXTURES / "email.html").read_bytes().decode("utf-8", errors="surrogateescape")
HONEYPOT_LINK = 'a[href*="hp=1"]'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def offline(route: Route) -> None:
    """The pixel answers with mailpixel's GIF; any other request (a link, a font) is refused."""
    if "/pixel?" in route.request.url:
        route.fulfill(status=200, content_type="image/gif", body=GIF_BYTES)
    else:
        route.abort()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 800, "height": 900})
    context.route("**/*", offline)
    yield context.new_page()
    context.close()


def show(page: Page, html: str) -> bytes:
    page.set_content(html, wait_until="load")
    return page.screenshot(full_page=True)


def same_pixels(a: bytes, b: bytes) -> bool:
    first, second = Image.open(io.BytesIO(a)).convert("RGBA"), Image.open(io.BytesIO(b)).convert("RGBA")
    return first.size == second.size and ImageChops.difference(first, second).getbbox() is None


def hrefs(page: Page) -> list[str | None]:
    values: list[str | None] = page.eval_on_selector_all(
        "a, area", "els => els.map(e => e.getAttribute('href'))"
    )
    return values


def test_attribute_soups_chromium_follows_the_href_instrument_signs(page: Page) -> None:
    page.set_content("".join(f"<p>{tag}</p>" for tag in ATTRIBUTE_SOUPS))
    assert hrefs(page) == [GOOD] * len(ATTRIBUTE_SOUPS)


def test_a_tag_python_reads_differently_has_no_href_in_chromium(page: Page) -> None:
    page.set_content(SPLIT_TAG)
    assert hrefs(page) == [None]


def test_href_values_chromium_reads_them_as_instrument_decodes_them(page: Page) -> None:
    page.set_content("".join(f'<a href="https://x.example/?{raw}">x</a>' for raw, _ in ATTRIBUTE_VALUES))
    expected = [f"https://x.example/?{decoded}" for _, decoded in ATTRIBUTE_VALUES]
    assert hrefs(page) == expected
    assert [f"https://x.example/?{attribute_value(raw)}" for raw, _ in ATTRIBUTE_VALUES] == expected


def test_every_link_of_the_hostile_fixture_is_signed_as_chromium_reads_it(page: Page) -> None:
    page.set_content(HOSTILE)
    rows = page.eval_on_selector_all(
        "a, area", "els => els.map(e => [e.getAttribute('href'), e.getAttribute('data-mailpixel')])"
    )
    browser_tracked = []
    for href, opt_out in rows:
        if href is not None:
            destination, _ = trackable(href, {"data-mailpixel": opt_out})
            if destination is not None:
                browser_tracked.append(destination)
    email = Instrumenter(HOSTILE, email_id="e", base_url=BASE, secret=SECRET)
    assert [link.destination for link in email.template.links] == browser_tracked
    assert len(browser_tracked) == 9


def rendered(honeypot: bool, strip_styles: bool = False) -> str:
    email = Instrumenter(
        NEWSLETTER, email_id="dec", base_url=BASE, secret=SECRET, t=1_767_225_600, honeypot=honeypot
    )
    html = email.render("ada")
    assert ("hp=1" in html) is honeypot
    # A client that strips every style (attributes and <style> blocks) still shows nothing.
    return re.sub(r'\sstyle="[^"]*"', "", html) if strip_styles else html


def accessible(page: Page) -> tuple[list[tuple[Any, Any]], set[int]]:
    """The accessibility tree's (role, name) pairs in order, and the DOM nodes it exposes."""
    cdp = page.context.new_cdp_session(page)
    nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    shown = [node for node in nodes if not node.get("ignored")]
    pairs = [(n.get("role", {}).get("value"), n.get("name", {}).get("value")) for n in shown]
    return pairs, {n["backendDOMNodeId"] for n in shown if "backendDOMNodeId" in n}


def backend_id(page: Page, selector: str) -> int:
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    assert node, selector
    return int(cdp.send("DOM.describeNode", {"nodeId": node})["node"]["backendNodeId"])


@pytest.mark.parametrize("strip_styles", [False, True], ids=["styled", "every-style-stripped"])
def test_the_honeypot_leaves_no_visible_trace(page: Page, strip_styles: bool) -> None:
    without = show(page, rendered(False, strip_styles))
    with_it = show(page, rendered(True, strip_styles))
    assert page.locator(HONEYPOT_LINK).count() == 1  # it is there, in the document
    assert page.evaluate("() => document.images[0].complete && document.images[0].naturalWidth") == 1
    box = page.locator(HONEYPOT_LINK).bounding_box()
    assert box is None or box["width"] * box["height"] == 0
    assert same_pixels(with_it, without)


def test_the_honeypot_is_not_in_the_accessibility_tree_nor_the_tab_order(page: Page) -> None:
    page.set_content(rendered(False))
    tree_without, _ = accessible(page)
    page.set_content(rendered(True))
    tree_with, exposed = accessible(page)
    assert tree_with == tree_without
    assert backend_id(page, HONEYPOT_LINK) not in exposed
    # The check can see a link: the email's first one is exposed.
    assert backend_id(page, 'a[href*="/click?"]:not([href*="hp=1"])') in exposed
    links = page.locator("a").count()
    focused = []
    for _ in range(links + 2):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("() => document.activeElement?.getAttribute('href')"))
    assert not [href for href in focused if href and "hp=1" in href]
    assert len({href for href in focused if href}) == links - 1  # every other link is reachable
