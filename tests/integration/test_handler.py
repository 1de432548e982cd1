"""The real `handler.py` entry, fed stored API Gateway events, against DynamoDB Local."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from tests.conftest import all_items, http_api_event, load_event
from tests.pixel_asserts import assert_lambda_pixel


def rest_event(query: dict[str, list[str]] | None = None, **context: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("apigw_rest_v1.json"))
    if query is not None:
        event["multiValueQueryStringParameters"] = query
        event["queryStringParameters"] = {k: v[-1] for k, v in query.items()}
    event["requestContext"].update(context)
    return event


def test_http_api_v2_event_stores_the_open(lambda_handler, ddb, table):
    response = lambda_handler(http_api_event("user_id=u1&email_id=e1"), None)
    assert_lambda_pixel(response)
    (item,) = all_items(ddb, table)
    assert item["email_id"] == "e1"
    assert item["user_id"] == "u1"
    assert item["ip"] == "203.0.113.9"
    assert item["request_id"] == "Bq3xYhKfIAMEb3Q="
    assert item["opened_at"] == "2026-11-24T13:49:00.123Z"
    assert item["user_agent"].startswith("Mozilla/5.0 (Macintosh")


def test_rest_v1_event_stores_the_open(lambda_handler, ddb, table):
    response = lambda_handler(rest_event(), None)
    assert_lambda_pixel(response)
    (item,) = all_items(ddb, table)
    assert (item["email_id"], item["user_id"], item["ip"]) == ("e1", "u1", "198.51.100.7")
    assert item["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert item["opened_at"] == "2026-11-24T13:49:00.456Z"
    assert "Outlook" in item["user_agent"]


def test_retried_invocation_with_the_same_request_id_stores_one_item(lambda_handler, ddb, table):
    event = http_api_event("user_id=u1&email_id=e1")
    for _ in range(3):
        assert_lambda_pixel(lambda_handler(copy.deepcopy(event), None))
    assert len(all_items(ddb, table)) == 1


def test_distinct_requests_in_the_same_millisecond_are_distinct_opens(lambda_handler, ddb, table):
    for request_id in ("req-a", "req-b"):
        lambda_handler(http_api_event("email_id=e1", request_id=request_id), None)
    assert sorted(i["request_id"] for i in all_items(ddb, table)) == ["req-a", "req-b"]


def test_client_sent_forwarded_for_is_ignored(lambda_handler, ddb, table):
    event = http_api_event(
        "email_id=e1", headers={"X-Forwarded-For": "6.6.6.6, 7.7.7.7"}, source_ip="192.0.2.44"
    )
    lambda_handler(event, None)
    (item,) = all_items(ddb, table)
    assert item["ip"] == "192.0.2.44"


@pytest.mark.parametrize(
    "raw",
    ["", "user_id=u1", "email_id=%E9%ZZ%", "email_id=" + "y" * 10_240, "email_id=a&email_id=b", "%%%&&&==="],
)
def test_bad_query_strings_still_get_the_pixel(lambda_handler, ddb, table, raw):
    assert_lambda_pixel(lambda_handler(http_api_event(raw), None))
    for item in all_items(ddb, table):
        assert len(item["email_id"]) <= 256


def test_rest_event_with_repeated_and_overlong_parameters(lambda_handler, ddb, table):
    response = lambda_handler(rest_event({"email_id": ["first", "second"], "user_id": ["z" * 10_240]}), None)
    assert_lambda_pixel(response)
    (item,) = all_items(ddb, table)
    assert item["email_id"] == "first"
    assert item["user_id"] == "z" * 256


def test_head_through_http_api(lambda_handler, ddb, table):
    response = lambda_handler(http_api_event("email_id=e1", method="HEAD"), None)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "image/gif"
    assert all_items(ddb, table) == []


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_odd_methods_through_http_api(lambda_handler, method):
    response = lambda_handler(http_api_event("email_id=e1", method=method), None)
    assert response["statusCode"] == 405


def test_health_through_http_api(lambda_handler):
    response = lambda_handler(http_api_event("", path="/health"), None)
    assert response["statusCode"] == 200
    body = response["body"]
    text = base64.b64decode(body).decode() if response.get("isBase64Encoded") else body
    assert '"status":"ok"' in text.replace(" ", "")


def test_event_the_wsgi_layer_cannot_translate_still_gets_the_gif(lambda_handler, ddb, table):
    """serverless-wsgi raises on a header value with CR/LF, before the app runs."""
    event = http_api_event("email_id=e1", headers={"X-Evil": "a\r\nb"})
    assert_lambda_pixel(lambda_handler(event, None))


def test_other_paths_still_raise_when_untranslatable(lambda_handler):
    event = http_api_event("", path="/health", headers={"X-Evil": "a\r\nb"})
    with pytest.raises(ValueError):
        lambda_handler(event, None)
