"""Issue 11, item 8: the API keeps its own contract. Real responses of the real apps, over
DynamoDB Local, with real enrichment output (an unknown device, a reserved address: nulls; an
open of a URL with `t`: its seconds since issue), are validated against the schemas in
openapi.yaml, and every field of a stats answer (click aggregates and links included) is one the
document names; every 405 carries `Allow`, and under /api it is the JSON error the document
promises."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from docs_hooks.openapi import resolve
from mailpixel.api.app import create_api_app
from mailpixel.enrich.handler import build_handler
from mailpixel.model.events import RequestFacts, build_open_event
from mailpixel.pixel.app import create_app
from tests.conftest import ROOT
from tests.integration.test_api import seed_click_aggregates
from tests.integration.test_enrich_stream import stream_batch

KEY = "contract-key-0123456789"
DOCUMENT: dict[str, Any] = yaml.safe_load((ROOT / "openapi.yaml").read_text())
URI = "urn:mailpixel:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(URI, Resource.opaque(DOCUMENT))


def deref(node: dict[str, Any]) -> dict[str, Any]:
    return resolve(DOCUMENT, node)


def check(path: str, method: str, status: int, body: Any) -> None:
    """Validate a body against the document's schema for this operation and status."""
    responses = DOCUMENT["paths"][path][method]["responses"]
    response = deref(responses[str(status)])
    pointer = f"#/paths/{path.replace('~', '~0').replace('/', '~1')}/{method}/responses/{status}"
    if "$ref" in responses[str(status)]:
        pointer = responses[str(status)]["$ref"]
    schema = {"$ref": f"{URI}{pointer}/content/application~1json/schema"}
    assert "application/json" in response["content"]
    Draft202012Validator(schema, registry=REGISTRY).validate(body)


def error_schema_check(body: Any) -> None:
    Draft202012Validator({"$ref": f"{URI}#/components/schemas/Error"}, registry=REGISTRY).validate(body)


def documented_names(node: dict[str, Any]) -> set[str]:
    """Every property name a schema documents, through `$ref` and `allOf`."""
    node = deref(node)
    names = set(node.get("properties", {}))
    for part in node.get("allOf", []):
        names |= documented_names(part)
    return names


def undocumented(body: dict[str, Any], schema: str) -> set[str]:
    """The fields of an answer that `#/components/schemas/<schema>` does not name (a schema
    that is not closed validates any extra field: this catches a field the document misses)."""
    return set(body) - documented_names(DOCUMENT["components"]["schemas"][schema])


USER_AGENTS = {
    "u-odd": "SomethingNobodyKnows/0.1",  # client name Other, version/os/device null
    "u-mail": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "u-signed": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
}
# Reserved: every geo field null.
ADDRESSES = {"u-odd": "10.1.2.3", "u-mail": "192.168.7.7", "u-signed": "10.9.8.7"}
ISSUED_AGO = 90  # u-signed opened a URL whose `t` was this many seconds before the open
LINKS = {"https://shop.example/sale?utm_source=mail#top": (2, 1), "https://shop.example/": (1, 3)}


@pytest.fixture
def api(settings, store, ddb):
    now = int(time.time() * 1000)
    for n, (user, agent) in enumerate(USER_AGENTS.items()):
        facts = RequestFacts(request_id=f"c{n}", epoch_ms=now + n, ip=ADDRESSES[user], user_agent=agent)
        store.put_event(
            build_open_event(
                email_id="news/2026-11",
                user_id=user,
                facts=facts,
                retention_seconds=settings.retention_seconds,
                stored_ip=ADDRESSES[user],
                signed=user == "u-signed",
                issued_t=(now + n) // 1000 - ISSUED_AGO if user == "u-signed" else None,
            )
        )
    handler = build_handler(settings, ddb=ddb, provider=None)
    assert handler({"Records": stream_batch(settings, ddb)}, None) == {"batchItemFailures": []}
    today = time.strftime("%Y-%m-%d", time.gmtime(now / 1000))
    seed_click_aggregates(
        ddb, settings.meta_table, "news/2026-11", LINKS, clickers=3, human_clickers=2, day=today
    )
    return create_api_app(settings.with_overrides(api_keys=(KEY,))).test_client()


AUTH = {"Authorization": f"Bearer {KEY}"}
ROUTES = [
    ("/api/emails", "/api/emails"),
    ("/api/daily", "/api/daily"),
    ("/api/emails/{email_id}/stats", "/api/emails/news%2F2026-11/stats"),
    ("/api/emails/{email_id}/daily", "/api/emails/news%2F2026-11/daily"),
    ("/api/emails/{email_id}/opens", "/api/emails/news%2F2026-11/opens"),
    ("/api/users/{user_id}/opens", "/api/users/u-odd/opens"),
    ("/api/users/{user_id}/stats", "/api/users/u-odd/stats"),
]


@pytest.mark.parametrize(("template", "path"), ROUTES, ids=[r[0] for r in ROUTES])
def test_real_answers_match_the_documented_schemas(api, template, path):
    response = api.get(path, headers=AUTH)
    assert response.status_code == 200, response.data
    check(template, "get", 200, response.get_json())
    refused = api.get(path)
    assert refused.status_code == 401
    check(template, "get", 401, refused.get_json())


def test_open_records_with_nulls_are_valid_and_have_them(api):
    body = api.get("/api/emails/news%2F2026-11/opens", headers=AUTH).get_json()
    check("/api/emails/{email_id}/opens", "get", 200, body)
    odd = next(item for item in body["items"] if item["user_id"] == "u-odd")
    assert odd["client"]["version"] is None and odd["geo"]["country"] is None  # the nulls are real


def test_an_open_of_a_url_with_t_has_issued_t_and_seconds_since_issue(api):
    body = api.get("/api/emails/news%2F2026-11/opens", headers=AUTH).get_json()
    check("/api/emails/{email_id}/opens", "get", 200, body)
    signed = next(item for item in body["items"] if item["user_id"] == "u-signed")
    assert isinstance(signed["issued_t"], int) and signed["signed"] is True
    assert ISSUED_AGO <= signed["evidence"]["seconds_since_issue"] <= ISSUED_AGO + 1
    others = [item for item in body["items"] if item["user_id"] != "u-signed"]
    assert others and all("seconds_since_issue" not in item["evidence"] for item in others)


def test_stats_with_click_aggregates_and_links_are_documented_field_by_field(api):
    stats = api.get("/api/emails/news%2F2026-11/stats", headers=AUTH).get_json()
    check("/api/emails/{email_id}/stats", "get", 200, stats)
    # The answer really has what is being checked: clicks, a rate, a first human open, links.
    assert (stats["clicks"], stats["human_clicks"], stats["machine_clicks"]) == (7, 3, 4)
    assert (stats["unique_clickers"], stats["unique_human_clickers"]) == (3, 2)
    assert stats["unique_human_openers"] == 3 and stats["click_to_open_rate"] == round(2 / 3, 4)
    assert stats["first_human_open_at"] is not None
    assert [link["url"] for link in stats["links"]] == list(LINKS)
    assert undocumented(stats, "EmailStats") == set()
    for link in stats["links"]:
        assert undocumented(link, "Link") == set()

    (row,) = api.get("/api/emails", headers=AUTH).get_json()["emails"]
    check("/api/emails", "get", 200, {"emails": [row]})
    assert "links" not in row and row["click_to_open_rate"] == stats["click_to_open_rate"]
    assert undocumented(row, "EmailStats") == set()

    daily = api.get("/api/emails/news%2F2026-11/daily", headers=AUTH).get_json()
    check("/api/emails/{email_id}/daily", "get", 200, daily)
    assert daily["totals"]["clicks"] == 7
    assert undocumented(daily["totals"], "Counts") == set()
    assert all(undocumented(day, "Counts") == {"date"} for day in daily["days"])


def test_recipients_and_rates_are_documented_field_by_field(api):
    path = "/api/emails/news%2F2026-11/recipients"
    recorded = api.put(path, json={"sent": 10, "tracked_opens": 6, "tracked_clicks": 8}, headers=AUTH)
    assert recorded.status_code == 200
    check("/api/emails/{email_id}/recipients", "put", 200, recorded.get_json())
    refused = api.put(path, json={"sent": 1, "tracked_opens": 2}, headers=AUTH)
    assert refused.status_code == 400
    check("/api/emails/{email_id}/recipients", "put", 400, refused.get_json())
    assert api.put(path, json={"sent": 1}).status_code == 401

    stats = api.get("/api/emails/news%2F2026-11/stats", headers=AUTH).get_json()
    check("/api/emails/{email_id}/stats", "get", 200, stats)
    assert stats["recipients"] == {"sent": 10, "tracked_opens": 6, "tracked_clicks": 8}
    # Three people opened (real enrichment); the seeded clicks: 2 human clickers, 4 of 7 by machines.
    values = {name: rate["value"] for name, rate in stats["rates"].items()}
    assert values == {
        "open_rate": 0.5,
        "estimated_human_open_rate": 0.5,
        "click_rate": 0.25,
        "click_to_open_rate": 0.6667,
        "machine_open_share": 0.0,
        "machine_click_share": 0.5714,
    }
    schemas = DOCUMENT["components"]["schemas"]
    rates = schemas["EmailStats"]["allOf"][1]["properties"]["rates"]
    assert set(stats["rates"]) == set(rates["properties"]) == set(rates["required"])
    # Each rate's description opens with the formula the answer gives.
    for name, rate in stats["rates"].items():
        assert rates["properties"][name]["description"].startswith(f"`{rate['formula']}`")
    assert undocumented(stats["recipients"], "Recipients") == set()
    (row,) = api.get("/api/emails", headers=AUTH).get_json()["emails"]
    check("/api/emails", "get", 200, {"emails": [row]})
    assert row["rates"] == stats["rates"]


def test_no_human_opener_is_a_null_rate_the_document_allows(api, ddb, settings):
    seed_click_aggregates(
        ddb, settings.meta_table, "no-opens", {"https://a.example/": (1, 0)}, clickers=1, human_clickers=1
    )
    stats = api.get("/api/emails/no-opens/stats", headers=AUTH).get_json()
    assert stats["click_to_open_rate"] is None and stats["first_human_open_at"] is None
    check("/api/emails/{email_id}/stats", "get", 200, stats)


def test_bad_input_answers_match_the_error_schema(api):
    response = api.get("/api/emails/e1/opens?since=0001-01-01T00:00:00%2B14:00", headers=AUTH)
    assert response.status_code == 400
    check("/api/emails/{email_id}/opens", "get", 400, response.get_json())


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/api/emails/e1/stats"), ("POST", "/api/daily")])
def test_405_under_api_is_the_json_error_with_allow(api, method, path):
    response = api.open(path, method=method, headers=AUTH)
    assert response.status_code == 405 and "GET" in response.headers["Allow"]
    assert response.mimetype == "application/json"
    error_schema_check(response.get_json())


@pytest.mark.parametrize(("method", "path"), [("TRACE", "/health"), ("DELETE", "/pixel"), ("PUT", "/pixel")])
def test_405_elsewhere_carries_allow(settings, table, method, path):
    response = create_app(settings).test_client().open(path, method=method)
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


def test_health_matches_its_schema_locally_and_in_aws(settings, store):
    for variant in (settings, settings.with_overrides(endpoint_url=None)):
        body = create_app(variant, store=store).test_client().get("/health").get_json()
        check("/health", "get", 200, body)
