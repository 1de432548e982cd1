"""Bad input, at scale: Hypothesis drives the real `handler.py` with API Gateway events.

Properties, for every input: no exception escapes, no 5xx; `GET /pixel` is always the 1x1 GIF
with the no-cache headers (`HEAD /pixel` the same headers), and the query API answers JSON with
a 2xx or 4xx. The app's own error counters stay at zero, so "no 500" is not a 500 caught and
dressed up as something else.
"""

from __future__ import annotations

import base64
import copy
import string
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_from_bytes, urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpixel.web import METRICS
from tests.conftest import http_api_event, load_event
from tests.pixel_asserts import assert_gif_bytes, assert_lambda_pixel, assert_pixel_headers

FUZZ = settings(
    max_examples=200,
    deadline=None,  # DynamoDB Local's latency varies with the machine's load
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
API_KEY = "fuzz-api-key-0123456789"
ERROR_COUNTERS = ("pixel_error", "unhandled_error")

METHODS = st.sampled_from(
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "BREW"]
)
PATHS = st.one_of(
    st.sampled_from(
        ["/pixel", "/pixel/", "/health", "/", "/api/emails", "/api/daily", "/dashboard", "/PIXEL"]
    ),
    st.builds(lambda s: "/" + s, st.text(max_size=40)),
)
PARAM_NAMES = st.one_of(st.sampled_from(["email_id", "user_id", "t", "sig"]), st.text(max_size=12))
TEXT = st.text(max_size=300)  # any Unicode scalar value (Hypothesis leaves out lone surrogates)
# Host is left out: API Gateway sets it to the API's own domain name. (Werkzeug answers 400
# for a Host with an empty DNS label, such as "." or "a..b", before any route runs: reachable
# only by talking to the local server directly.)
HEADER_NAMES = st.one_of(
    st.sampled_from(
        ["user-agent", "x-forwarded-for", "cookie", "content-type", "content-length", "authorization"]
    ),
    st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=20).filter(
        lambda name: name.lower() != "host"
    ),
)
# HTTP cannot carry CR or LF inside a header value (HTTP/1.1 and HTTP/2 both refuse them), so
# API Gateway never sends one; serverless-wsgi raises on them before the app runs. Nor does it
# send a lone surrogate (what it receives is bytes; its JSON event is valid UTF-8).
HEADER_VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=300)
HEADERS = st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=6)
EPOCHS = st.one_of(
    st.none(), st.integers(min_value=-(2**63), max_value=2**63), TEXT, st.floats(allow_nan=True)
)
IPS = st.one_of(
    st.sampled_from(["203.0.113.9", "2001:db8::1", "::ffff:8.8.8.8", "", "999.1.1.1", "127.0.0.1"]), TEXT
)


@pytest.fixture
def handler_module(lambda_handler: Callable[..., Any]) -> Any:
    return sys.modules["handler"]


@pytest.fixture
def keyed_handler(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """The real handler with a query API key configured, so fuzzing reaches past the 401."""
    monkeypatch.setenv("MAILPIXEL_API_KEYS", API_KEY)
    handler: Callable[..., Any] = request.getfixturevalue("lambda_handler")
    return handler


def no_errors_counted(module: Any) -> None:
    for app in (module.get_app(), module.get_api_app()):
        counters = app.extensions[METRICS].snapshot()
        assert not {name: counters[name] for name in ERROR_COUNTERS if counters.get(name)}


def response_headers(response: dict[str, Any]) -> dict[str, str]:
    if response.get("headers"):
        return {k.lower(): v for k, v in response["headers"].items()}
    return {k.lower(): v[0] for k, v in (response.get("multiValueHeaders") or {}).items()}


def check_answer(response: Any, method: str, path: str) -> None:
    assert isinstance(response, dict)
    status = response["statusCode"]
    assert isinstance(status, int) and 200 <= status < 500, (status, response.get("body"))
    if path == "/pixel" and method == "GET":
        assert_lambda_pixel(response)
    elif path == "/pixel" and method == "HEAD":
        assert status == 200
        assert_pixel_headers(response_headers(response))
    elif 300 <= status < 400:  # Werkzeug's redirect to the canonical path (e.g. "//" merged)
        assert response_headers(response)["location"]
    elif path.startswith("/api/") and status not in (404, 405):
        # A route of the API answers JSON; a path that is no route gets the plain 404/405.
        assert response_headers(response)["content-type"].startswith("application/json")


@FUZZ
@given(params=st.lists(st.tuples(PARAM_NAMES, st.binary(max_size=300)), max_size=6))
def test_percent_encoded_arbitrary_bytes_in_the_query(lambda_handler, handler_module, params):
    query = "&".join(f"{quote_from_bytes(name.encode())}={quote_from_bytes(value)}" for name, value in params)
    check_answer(lambda_handler(http_api_event(query), None), "GET", "/pixel")
    no_errors_counted(handler_module)


@FUZZ
@given(raw=st.text(max_size=400))
def test_raw_query_strings_as_api_gateway_passes_them(lambda_handler, handler_module, raw):
    check_answer(lambda_handler(http_api_event(raw), None), "GET", "/pixel")
    no_errors_counted(handler_module)


@FUZZ
@given(raw=st.binary(max_size=400))
def test_raw_query_bytes_through_wsgi(client: FlaskClient, raw: bytes) -> None:
    """What a WSGI server hands over for bytes that are not valid percent-encoding or UTF-8."""
    response = client.get("/pixel", environ_overrides={"QUERY_STRING": raw.decode("latin-1")})
    assert response.status_code == 200
    assert_pixel_headers(dict(response.headers))
    assert_gif_bytes(response.data)


@FUZZ
@given(headers=HEADERS, method=st.sampled_from(["GET", "HEAD"]))
def test_arbitrary_headers(lambda_handler, handler_module, headers, method):
    event = http_api_event("email_id=fuzz-headers&user_id=u", method=method, headers=headers)
    check_answer(lambda_handler(event, None), method, "/pixel")
    no_errors_counted(handler_module)


def _v2_event(
    method: str,
    path: str,
    raw_query: str,
    headers: dict[str, str],
    ip: str,
    request_id: str,
    epoch: Any,
    body: str | None,
    base64_body: bool,
    cookies: list[str] | None,
) -> dict[str, Any]:
    event = http_api_event(
        raw_query, method=method, path=path, headers=headers, request_id=request_id or None
    )
    event["requestContext"]["http"]["sourceIp"] = ip
    event["requestContext"]["timeEpoch"] = epoch
    event["queryStringParameters"] = None
    if body is not None:
        event["body"] = base64.b64encode(body.encode()).decode() if base64_body else body
        event["isBase64Encoded"] = base64_body
    if cookies is not None:
        event["cookies"] = cookies
    return event


V2_EVENTS = st.tuples(METHODS, PATHS).flatmap(
    lambda mp: st.tuples(
        st.just(mp[0]),
        st.just(mp[1]),
        st.builds(
            _v2_event,
            st.just(mp[0]),
            st.just(mp[1]),
            st.one_of(st.text(max_size=200), st.dictionaries(PARAM_NAMES, TEXT, max_size=4).map(urlencode)),
            HEADERS,
            IPS,
            st.text(max_size=60),
            EPOCHS,
            st.none() | st.text(max_size=200),
            st.booleans(),
            st.none() | st.lists(HEADER_VALUES, max_size=3),
        ),
    )
)


@FUZZ
@given(case=V2_EVENTS)
def test_whole_http_api_v2_events(lambda_handler, handler_module, case):
    method, path, event = case
    check_answer(lambda_handler(event, None), method, path)
    no_errors_counted(handler_module)


def _v1_event(
    method: str,
    path: str,
    multi: dict[str, list[str]],
    headers: dict[str, str],
    ip: str,
    request_id: str,
    epoch: Any,
    body: str | None,
) -> dict[str, Any]:
    event = copy.deepcopy(load_event("apigw_rest_v1.json"))
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["path"] = event["resource"] = path
    event["multiValueQueryStringParameters"] = multi or None
    event["queryStringParameters"] = {k: v[-1] for k, v in multi.items() if v} or None
    event["headers"] = {**event["headers"], **headers}
    event["multiValueHeaders"] = {**event["multiValueHeaders"], **{k: [v] for k, v in headers.items()}}
    event["requestContext"]["identity"]["sourceIp"] = ip
    event["requestContext"]["requestId"] = request_id
    event["requestContext"]["requestTimeEpoch"] = epoch
    event["body"] = body
    return event


V1_EVENTS = st.tuples(METHODS, PATHS).flatmap(
    lambda mp: st.tuples(
        st.just(mp[0]),
        st.just(mp[1]),
        st.builds(
            _v1_event,
            st.just(mp[0]),
            st.just(mp[1]),
            st.dictionaries(PARAM_NAMES, st.lists(TEXT, max_size=3), max_size=4),
            HEADERS,
            IPS,
            st.text(max_size=60),
            EPOCHS,
            st.none() | st.text(max_size=200),
        ),
    )
)


@FUZZ
@given(case=V1_EVENTS)
def test_whole_rest_api_v1_events(lambda_handler, handler_module, case):
    method, path, event = case
    check_answer(lambda_handler(event, None), method, path)
    no_errors_counted(handler_module)


API_PATHS = st.one_of(
    st.sampled_from(
        ["/api/emails", "/api/daily", "/api/emails/e1/stats", "/api/emails/e1/opens", "/api/users/u1/opens"]
    ),
    st.builds(
        lambda kind, ident, tail: (
            f"/api/{kind}/{quote_from_bytes(ident.encode('utf-8', 'surrogatepass'))}/{tail}"
        ),
        st.sampled_from(["emails", "users"]),
        st.text(min_size=1, max_size=300),
        st.sampled_from(["stats", "opens", "daily", "", "x"]),
    ),
)
API_QUERY = st.dictionaries(
    st.sampled_from(["since", "until", "limit", "cursor", "days", "x"]),
    st.one_of(
        TEXT,
        st.integers().map(str),
        st.sampled_from(["2026-11-24", "2026-11-24T10:00:00Z", "-1", "0", "1e9"]),
    ),
    max_size=4,
)
AUTH = st.one_of(
    st.just({"authorization": f"Bearer {API_KEY}"}),
    st.just({}),
    st.builds(lambda v: {"authorization": v}, HEADER_VALUES),
    st.just({"authorization": f"bearer {API_KEY}"}),
)


@FUZZ
@given(
    path=API_PATHS, query=API_QUERY, auth=AUTH, method=st.sampled_from(["GET", "GET", "GET", "POST", "HEAD"])
)
def test_query_api_answers_json_and_never_5xx(keyed_handler, path, query, auth, method):
    event = http_api_event(urlencode(query), method=method, path=path, headers=auth)
    response = keyed_handler(event, None)
    check_answer(response, method, path)
    scheme, _, key = auth.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or key.strip() != API_KEY:  # the scheme is case-insensitive (RFC 9110)
        assert response["statusCode"] in (401, 404, 405)
    no_errors_counted(sys.modules["handler"])
