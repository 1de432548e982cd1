"""The dashboard in real headless Chromium (Debian's), against the app served over HTTP with
DynamoDB Local behind it, as `make run` serves it. The numbers on the page must be the API's:
opens, and the click aggregates (seeded into the meta table as enrichment keeps them)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from mailpixel.api import stats as stats_reader
from mailpixel.api.app import create_api_app
from mailpixel.ops.local.wsgi import combined_app
from mailpixel.pixel.app import create_app
from tests.conftest import ARTIFACTS, ROOT
from tests.integration.test_aggregates import make_events, seed
from tests.integration.test_api import seed_click_aggregates
from tests.serving import serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY = "dashboard-test-key-7f3a"
DOCS_PICTURE = ROOT / "docs" / "dashboard.png"
EMAILS = ["newsletter-november", "product-launch", "weekly-digest-48", "onboarding-day-3"]
HOSTILE_URL = "https://shop.example/?q=<img src=x onerror=\"document.title='pwned'\">"
# Each email's destinations and their (human, machine) clicks; the last email has none.
LINKS = {
    "newsletter-november": {
        "https://shop.example/winter-sale?utm_source=newsletter": (9, 2),
        "https://blog.example/2026/11/what-we-shipped": (4, 1),
        HOSTILE_URL: (1, 0),
        "https://shop.example/unsubscribe": (0, 3),
    },
    "product-launch": {"https://launch.example/": (6, 4), "https://launch.example/pricing": (3, 0)},
    "weekly-digest-48": {"https://digest.example/48": (2, 1)},
}


def seed_clicks(ddb, settings) -> None:
    """Click aggregates of the emails, today: a human clicker for every third human opener."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    for email_id, links in LINKS.items():
        openers = stats_reader.email_stats(ddb, settings.meta_table, email_id)["unique_human_openers"]
        human_clickers = max(1, openers // 3)
        seed_click_aggregates(
            ddb,
            settings.meta_table,
            email_id,
            links,
            clickers=human_clickers + 1,
            human_clickers=human_clickers,
            day=today,
        )


@pytest.fixture
def server(settings, store, ddb) -> Iterator[str]:
    events = make_events(140, seed=21, users=40, days=14, names=EMAILS)
    seed(store, ddb, settings, events)
    seed_clicks(ddb, settings)
    keyed = settings.with_overrides(api_keys=(KEY,))
    with serving(combined_app(create_app(keyed), create_api_app(keyed))) as base:
        yield base


@pytest.fixture
def page(server) -> Iterator[Page]:
    assert Path(CHROMIUM).exists(), (
        "Debian's chromium is missing: run `make setup` (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
        page = context.new_page()
        problems: list[str] = []
        outside: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        # The one wrong key the test types is refused, and one test injects a 503: those are
        # expected, nothing else is.
        expected = ("status of 401", "status of 503")
        page.on(
            "console",
            lambda msg: (
                problems.append(msg.text)
                if msg.type == "error" and not any(e in msg.text for e in expected)
                else None
            ),
        )
        page.on("request", lambda req: None if req.url.startswith(server) else outside.append(req.url))
        yield page
        context.close()
        browser.close()
    assert problems == [], problems  # no script error, no CSP violation
    assert outside == [], outside  # no CDN, nothing but this origin


def api(page: Page, base: str, path: str) -> Any:
    response = page.request.get(base + path, headers={"Authorization": f"Bearer {KEY}"})
    assert response.ok, response.text()
    return response.json()


def metric(page: Page, name: str) -> int:
    return int(page.get_attribute(f'[data-metric="{name}"]', "data-value") or "-1")


def rate(page: Page) -> float | None:
    """The click-to-open rate the page shows: its value, or None when it shows a dash."""
    value = page.get_attribute('[data-metric="click_to_open_rate"]', "data-value")
    text = page.inner_text('[data-metric="click_to_open_rate"]')
    assert (value is None) == (text == "–"), (value, text)
    return None if value is None else float(value)


def when(iso: str | None) -> str:
    """A time as the page writes it."""
    return iso.replace("T", " ")[:19] if iso else "–"


def link_rows(page: Page) -> list[tuple[str, int, int]]:
    """(URL as shown, human clicks, clicks) of the links table."""
    rows = page.locator("#links tbody tr[data-url]").evaluate_all(
        """rows => rows.map(r => [r.querySelector('td.url').textContent,
            r.querySelector('td.human-clicks').dataset.value, r.querySelector('td.clicks').dataset.value])"""
    )
    return [(str(url), int(human), int(clicks)) for url, human, clicks in rows]


def wait_loaded(page: Page, after: str | None = None, title: str | None = None) -> str:
    """Wait for a load newer than `after` to finish; with `title`, for the one showing it (an
    earlier load, started by a resize, may finish in between)."""
    page.wait_for_function(
        """([prev, title]) => document.body.dataset.loaded && document.body.dataset.loaded !== prev
            && (title === null || document.querySelector('#title').textContent === title)""",
        arg=[after, title],
        timeout=15_000,
    )
    return str(page.get_attribute("body", "data-loaded"))


def bars(page: Page, box: str) -> dict[str, int]:
    pairs = page.locator(f"#{box} .bar-row").evaluate_all(
        "rows => rows.map(r => [r.dataset.name, r.querySelector('.bar-count').textContent])"
    )
    return {str(name): int(str(count).replace(",", "")) for name, count in pairs}


def test_dashboard_logs_in_and_shows_the_apis_numbers(page: Page, server: str):
    page.goto(server + "/dashboard")
    assert page.is_visible("#login-form")
    page.fill("#key", "not-the-key")
    page.click("#login-form button")
    page.wait_for_selector("#login-error:has-text('not valid')")

    page.fill("#key", KEY)
    page.click("#login-form button")
    loaded = wait_loaded(page)

    # All recent emails.
    recent = api(page, server, "/api/emails?days=30&limit=100")["emails"]
    daily = api(page, server, "/api/daily")
    assert {e["email_id"] for e in recent} == set(EMAILS)
    assert metric(page, "opens") == daily["totals"]["opens"] == 140
    assert metric(page, "human_opens") == daily["totals"]["human_opens"]
    assert metric(page, "machine_opens") == daily["totals"]["machine_opens"]
    assert metric(page, "unique_human_openers") == sum(e["unique_human_openers"] for e in recent)
    assert page.locator("#recent tbody tr").count() == len(recent)
    assert page.locator("#timeline g[data-date]").count() == len(daily["days"]) == 30
    assert bars(page, "clients") == daily["totals"]["clients"]
    # Clicks: the period's from the daily totals, unique clickers and the rate over the emails.
    assert metric(page, "clicks") == daily["totals"]["clicks"] > 0
    assert metric(page, "human_clicks") == daily["totals"]["human_clicks"] > 0
    clickers = sum(e["unique_human_clickers"] for e in recent)
    assert metric(page, "unique_human_clickers") == clickers > 0
    assert rate(page) == pytest.approx(clickers / sum(e["unique_human_openers"] for e in recent), abs=5e-5)
    assert page.inner_text('[data-metric="first_human_open"]') == when(
        min(e["first_human_open_at"] for e in recent if e["first_human_open_at"])
    )
    shown_rows = page.locator("#recent tbody tr").evaluate_all(
        """rows => rows.map(r => [r.dataset.emailId, r.querySelector('td.clicks').dataset.value,
            r.querySelector('td.rate').dataset.value, r.querySelector('td.rate').textContent])"""
    )
    assert [(e, int(c), float(v) if v else None) for e, c, v, _ in shown_rows] == [
        (e["email_id"], e["clicks"], e["click_to_open_rate"]) for e in recent
    ]
    assert all((v == "") == (text == "–") for _, _, v, text in shown_rows)
    assert page.locator("#links-panel").is_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-all.png"), full_page=True)
    # The README's and the docs' picture: the first screen of the overview (a resize redraws the charts).
    # Written when missing or asked for, so a test run does not leave a changed file behind.
    page.set_viewport_size({"width": 1280, "height": 1160})
    loaded = wait_loaded(page, loaded)
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"))
    if not DOCS_PICTURE.exists() or os.environ.get("MAILPIXEL_UPDATE_DOCS") == "1":
        DOCS_PICTURE.parent.mkdir(exist_ok=True)
        DOCS_PICTURE.write_bytes((ARTIFACTS / "dashboard-overview.png").read_bytes())

    # One email, chosen from the recent list.
    chosen = recent[0]["email_id"]
    page.click(f'#recent tbody tr[data-email-id="{chosen}"]')
    loaded = wait_loaded(page, loaded, title=chosen)
    assert page.inner_text("#title") == chosen
    stats = api(page, server, f"/api/emails/{chosen}/stats")
    for name in ("opens", "human_opens", "machine_opens", "unique_openers", "unique_human_openers"):
        assert metric(page, name) == stats[name], name
    for name in ("clicks", "human_clicks", "unique_human_clickers"):
        assert metric(page, name) == stats[name], name
    assert rate(page) == stats["click_to_open_rate"]
    assert page.inner_text('[data-metric="first_human_open"]') == when(stats["first_human_open_at"])
    assert page.locator("#links-panel").is_visible()
    assert link_rows(page) == [(k["url"], k["human_clicks"], k["clicks"]) for k in stats["links"]]
    assert bars(page, "clients") == stats["clients"]
    assert bars(page, "countries") == stats["countries"] or len(stats["countries"]) > 10
    assert bars(page, "reasons") == stats["machine_opens_by_reason"]
    latest = api(page, server, f"/api/emails/{chosen}/opens?order=desc&limit=20")["items"]
    shown = page.locator("#latest tbody tr").evaluate_all("rows => rows.map(r => r.dataset.requestId)")
    assert shown == [o["request_id"] for o in latest]
    assert page.locator("#recent-panel").is_hidden()

    # The key is asked for once: a reload keeps it for this tab.
    page.reload()
    loaded = wait_loaded(page)
    assert page.is_hidden("#login") and page.inner_text("#title") == chosen

    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # The email with the most links, its rate and every link row the API's, the hostile URL as text.
    page.select_option("#email", "newsletter-november")
    loaded = wait_loaded(page, loaded, title="newsletter-november")
    stats = api(page, server, "/api/emails/newsletter-november/stats")
    assert [k["url"] for k in stats["links"]] == sorted(
        LINKS["newsletter-november"], key=lambda url: -LINKS["newsletter-november"][url][0]
    )
    assert link_rows(page) == [(k["url"], k["human_clicks"], k["clicks"]) for k in stats["links"]]
    assert rate(page) == stats["click_to_open_rate"] is not None
    assert page.locator("#links img").count() == 0 and page.title() != "pwned"

    # An email with no clicks: zeros, and a rate of 0 when it has human openers (else a dash).
    page.select_option("#email", "onboarding-day-3")
    wait_loaded(page, loaded, title="onboarding-day-3")
    quiet = api(page, server, "/api/emails/onboarding-day-3/stats")
    assert metric(page, "clicks") == quiet["clicks"] == 0 and quiet["links"] == []
    assert rate(page) == quiet["click_to_open_rate"] == (0 if quiet["unique_human_openers"] else None)
    assert page.inner_text("#links tbody") == "No clicks yet"


def test_hostile_ids_are_shown_as_text_never_run(page: Page, server: str, store, ddb, settings):
    from tests.integration.test_aggregates import enrich_one, one_event

    hostile = "<img src=x onerror=\"document.title='pwned'\">"
    enrich_one(
        store,
        ddb,
        settings,
        one_event("x1", make_events(1, days=1)[0].opened_at, user_id=hostile, email_id="e-hostile"),
        machine_open=False,
        client={"name": "<script>alert(1)</script>"},
        geo={"country": "NL"},
    )
    seed_click_aggregates(
        ddb, settings.meta_table, "e-hostile", {hostile: (1, 0)}, clickers=1, human_clickers=1
    )
    page.goto(server + "/dashboard#email=e-hostile")
    page.fill("#key", KEY)
    page.click("#login-form button")
    wait_loaded(page)
    assert page.title() != "pwned"
    assert page.locator("#latest tbody tr td:nth-child(3)").inner_text() == hostile
    assert page.locator("#latest img").count() == 0
    assert link_rows(page) == [(hostile, 1, 1)]
    assert page.locator("#links img").count() == 0
    # The person who opened once (and no machine) is one human opener: 1 clicker / 1 opener.
    assert rate(page) == 1.0 and page.inner_text('[data-metric="click_to_open_rate"]') == "100%"


def one_human_open(store, ddb, settings, email_id: str) -> None:
    """One enriched human open of `email_id`, yesterday or so."""
    from tests.integration.test_aggregates import enrich_one, one_event

    opened_at = make_events(1, days=1)[0].opened_at
    enrich_one(store, ddb, settings, one_event("s1", opened_at, email_id=email_id), machine_open=False)


def log_in(page: Page, server: str) -> str:
    """Open the dashboard, log in, and wait for the first load (returned, for `wait_loaded`)."""
    page.goto(server + "/dashboard")
    page.fill("#key", KEY)
    page.click("#login-form button")
    return wait_loaded(page)


def shown_rates(page: Page) -> dict[str, tuple[float | None, str]]:
    """Each rate card: (its value, None for a dash) and the formula printed under it."""
    cards = page.locator("[data-rate]").evaluate_all(
        """nodes => nodes.map(n => [n.dataset.rate, n.dataset.value ?? null, n.textContent,
            document.querySelector(`[data-formula="${n.dataset.rate}"]`).textContent])"""
    )
    result: dict[str, tuple[float | None, str]] = {}
    for name, value, text, formula in cards:
        assert (value is None) == (text == "–"), (name, value, text)
        result[str(name)] = (None if value is None else float(value), str(formula))
    return result


def test_rates_are_the_apis_with_their_formulas_and_recipients(page: Page, server: str, ddb, settings):
    from mailpixel.ddb.recipients import MetaTable, record_recipients

    record_recipients(MetaTable.of(ddb, settings), "newsletter-november", 60, 50, 60)
    loaded = log_in(page, server)
    # The overview sums emails: rates over recipients belong to one email, so they are not shown.
    assert page.locator("#rates-panel").is_hidden()
    recent = api(page, server, "/api/emails?days=30&limit=100")["emails"]
    open_rates = page.locator("#recent tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.emailId, r.querySelector('td.open-rate').dataset.value])"
    )
    assert [(e, float(v) if v else None) for e, v in open_rates] == [
        (e["email_id"], e["rates"]["open_rate"]["value"]) for e in recent
    ]
    assert dict(open_rates)["newsletter-november"] and not dict(open_rates)["product-launch"]

    page.select_option("#email", "newsletter-november")
    loaded = wait_loaded(page, loaded, title="newsletter-november")
    stats = api(page, server, "/api/emails/newsletter-november/stats")
    assert page.locator("#rates-panel").is_visible()
    expected = {name: (rate["value"], rate["formula"]) for name, rate in stats["rates"].items()}
    expected.pop("click_to_open_rate")  # its own card, with the clicks
    assert shown_rates(page) == expected
    assert expected["open_rate"] == (
        round(stats["unique_human_openers"] / 50, 4),
        "unique_human_openers / recipients.tracked_opens",
    )
    assert page.inner_text("#recipients") == "sent to 60 · tracked for opens 50 · for clicks 60"

    # No recipients recorded: a dash for each rate over them, the shares still shown.
    page.select_option("#email", "product-launch")
    wait_loaded(page, loaded, title="product-launch")
    rates = shown_rates(page)
    assert [rates[n][0] for n in ("open_rate", "estimated_human_open_rate", "click_rate")] == [None] * 3
    assert rates["machine_click_share"][0] == round(4 / 13, 4)
    assert page.inner_text("#recipients").startswith("no recipient counts recorded")


def outage(page, pattern: str, message: str) -> None:
    """API requests matching `pattern` answer 503 with the API's JSON error."""
    body = json.dumps({"error": "unavailable", "message": message})
    page.route(pattern, lambda route: route.fulfill(status=503, content_type="application/json", body=body))


def test_an_id_with_a_slash_and_a_failing_panel_do_not_blank_the_page(
    page: Page, server: str, store, ddb, settings
):
    """Issue 11, item 2: one email named like the README's `newsletter/2026-11` among the recent
    ones blanked the overview (its 404 failed every fetch); one failing panel must not either."""
    slashed = "newsletter/2026-11"
    one_human_open(store, ddb, settings, slashed)
    loaded = log_in(page, server)
    assert metric(page, "opens") == 141
    assert page.locator(f'#recent tbody tr[data-email-id="{slashed}"]').count() == 1
    assert page.get_attribute("body", "data-failures") == "0"

    page.click(f'#recent tbody tr[data-email-id="{slashed}"]')
    loaded = wait_loaded(page, loaded, title=slashed)
    assert metric(page, "opens") == 1 and metric(page, "human_opens") == 1
    assert page.locator("#latest tbody tr").count() == 1

    # The opens panel fails (an injected outage): the figures and the chart are still drawn.
    outage(page, "**/opens?*", "injected outage")
    page.click("#refresh")
    loaded = wait_loaded(page, loaded, title=slashed)
    assert metric(page, "opens") == 1
    assert page.get_attribute("body", "data-failures") == "1"
    assert "injected outage" in page.inner_text("#status")

    # The stats fail instead: the figures and links say so, the chart and the opens are drawn.
    page.unroute("**/opens?*")
    outage(page, "**/stats", "stats outage")
    page.click("#refresh")
    wait_loaded(page, loaded, title=slashed)
    assert page.get_attribute("body", "data-failures") == "1"
    assert "stats outage" in page.inner_text("#status")
    assert page.inner_text("#links tbody") == "Could not load the links"
    assert rate(page) is None and page.inner_text('[data-metric="first_human_open"]') == "–"
    assert page.locator("#latest tbody tr").count() == 1
    assert page.locator("#timeline g[data-date]").count() == 30


@pytest.mark.parametrize("email_id", [".", ".."])
def test_emails_dot_and_dot_dot_are_shown(page: Page, server: str, store, ddb, settings, email_id):
    """Issue 18, item 14: `/api/emails/../stats` is `/api/stats` to a browser (`%2E%2E` too), so
    the page asks for these two IDs with the query form."""
    one_human_open(store, ddb, settings, email_id)
    loaded = log_in(page, server)
    assert page.get_attribute("body", "data-failures") == "0"  # the recent emails' opens loaded
    page.click(f'#recent tbody tr[data-email-id="{email_id}"]')
    wait_loaded(page, loaded, title=email_id)
    assert page.get_attribute("body", "data-failures") == "0"
    assert metric(page, "opens") == 1 and metric(page, "human_opens") == 1
    assert page.locator("#latest tbody tr").count() == 1
