"""The query API: JSON under /api, behind a bearer key. The dashboard reads only this.
It writes one thing: an email's recipient counts (`PUT …/recipients`), the rates' denominators.

Registered by `create_api_app` (the api function's own app). Its DynamoDB client (normal
timeouts, not the pixel's fast one) and the API keys from SSM are made on the first /api
request, so a cold start that only serves the dashboard page never pays for them.

Every bad input is a 400 with a message a person can act on; the API never answers 500 to
anything a client sent.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.routing import PathConverter

from mailpixel.api import stats
from mailpixel.api.cursor import decode_cursor, encode_cursor
from mailpixel.config import Settings
from mailpixel.ddb.store import EventStore
from mailpixel.logs import get_logger
from mailpixel.model.ids import id_problem
from mailpixel.model.query import UPPER, BadQuery, named_time_bound

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = get_logger("api.routes")
EXTENSION = "mailpixel_api"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Kept in the table for the pipeline, never shown: the full IP awaiting enrichment, the key, and
# enrichment's bookkeeping (the sparse `unenriched` index attribute, the counting batch token).
HIDDEN_FIELDS = frozenset({"pending_ip", "open_key", "unenriched", "counted_by"})
NO_KEYS_MESSAGE = (
    "the query API has no keys configured: set MAILPIXEL_API_KEYS (comma-separated) "
    "or, in AWS, MAILPIXEL_API_KEYS_PARAMETER"
)

bp = Blueprint("api", __name__, url_prefix="/api")


class Unauthorized(Exception):
    """No valid bearer key; the message says what is missing."""


class Unavailable(Exception):
    """The API cannot answer now (keys or the store unreachable); the client may retry."""


@dataclass
class ApiState:
    """What the API makes on first use and keeps for the warm instance."""

    settings: Settings
    _client: DynamoDBClient | None = None
    _digests: tuple[bytes, ...] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def client(self) -> DynamoDBClient:
        with self._lock:
            if self._client is None:
                from mailpixel.aws import dynamodb_client

                self._client = dynamodb_client(self.settings)
            return self._client

    @property
    def store(self) -> EventStore:
        return EventStore(self.client, self.settings.table)

    def key_digests(self) -> tuple[bytes, ...]:
        with self._lock:
            if self._digests is None:
                self._digests = tuple(_digest(key) for key in self._load_keys())
            return self._digests

    def _load_keys(self) -> tuple[str, ...]:
        if self.settings.api_keys or not self.settings.api_keys_parameter:
            return self.settings.api_keys
        # Same SSM SecureString mechanism (and parsing: comma-separated) as the signing secrets.
        from mailpixel.secrets import load_secret_list

        try:
            return load_secret_list(
                self.settings,
                self.settings.api_keys_parameter,
                variable="MAILPIXEL_API_KEYS_PARAMETER",
                what="API key",
            )
        except Exception as error:  # noqa: BLE001 - not cached: the next request tries again
            log.exception("api_keys_unavailable", extra={"parameter": self.settings.api_keys_parameter})
            raise Unavailable("the API keys could not be loaded; try again shortly") from error


def _digest(key: str) -> bytes:
    # Hashing first makes every comparison the same length, so timing tells nothing of the key.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class IdConverter(PathConverter):
    """An email or user ID as a path segment: any ID the pixel accepts, `/` included.

    Whether a client sends `newsletter/2026-11` or `newsletter%2F2026-11`, the app sees the
    slash: serverless-wsgi unquotes API Gateway's `rawPath` into PATH_INFO, as Werkzeug's
    server does locally. So the ID takes every character up to the route's last fixed segment
    (`/stats`, `/daily`, `/opens`); unlike `path`, it may also start with `/` or hold `//`.
    It takes line breaks too (`.` alone would not): an ID with one is no ID any open can have,
    which `_id` answers with a 400 that says so, not a 404 for a route that exists.

    IDs `.` and `..` cannot travel in a path: browsers and most HTTP clients resolve them as
    dot segments (`%2E` too, per the WHATWG URL standard). Every per-ID route therefore also
    answers with the ID as a query parameter (`/api/emails/stats?email_id=..`), the form the
    dashboard uses."""

    regex = "(?s:.+?)"
    part_isolating = False  # Werkzeug would infer True from a regex without a `/`


def init_api(app: Flask, settings: Settings) -> None:
    app.extensions[EXTENSION] = ApiState(settings)
    app.url_map.converters["id"] = IdConverter
    # `a//b` is an ID, not a path to tidy up with a redirect.
    app.url_map.merge_slashes = False
    app.register_blueprint(bp)


def _state() -> ApiState:
    state: ApiState = current_app.extensions[EXTENSION]
    return state


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    response = jsonify(error=code, message=message)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="mailpixel"'
    return response, status


@bp.before_request
def require_key() -> None:
    digests = _state().key_digests()
    if not digests:
        raise Unauthorized(NO_KEYS_MESSAGE)
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the API key as `Authorization: Bearer <key>`")
    given = _digest(token.strip())
    matched = False
    for digest in digests:  # no early exit: the time taken does not say which key matched
        matched |= hmac.compare_digest(given, digest)
    if not matched:
        raise Unauthorized("the API key is not valid")


@bp.after_request
def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(Unauthorized)
def unauthorized(error: Unauthorized) -> tuple[Response, int]:
    return _error(401, "unauthorized", str(error))


@bp.errorhandler(BadQuery)
def bad_query(error: BadQuery) -> tuple[Response, int]:
    return _error(400, "bad_request", str(error))


@bp.errorhandler(Unavailable)
def unavailable(error: Unavailable) -> tuple[Response, int]:
    return _error(503, "unavailable", str(error))


@bp.errorhandler(Exception)
def unexpected(error: Exception) -> tuple[Response, int]:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    if code == "ValidationException":
        if request.args.get("cursor"):  # e.g. a cursor from a query with another since/until
            return _error(
                400, "bad_request", "the cursor does not belong to this query (same path, since and until)"
            )
        return _error(400, "bad_request", f"DynamoDB rejected the query: {error}")
    if code in ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"):
        return _error(503, "unavailable", "DynamoDB is throttling; try again shortly")
    status = getattr(error, "code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return _error(status, "http_error", str(getattr(error, "description", "")) or "request not allowed")
    log.exception("api_error", extra={"path": request.path})
    return _error(500, "internal_error", "something went wrong on our side; it has been logged")


def _id(value: str, name: str) -> str:
    problem = id_problem(value)  # the pixel would have cut or cleaned it: no open has it as given
    if problem:
        raise BadQuery(f"{name} {problem}, so no open can have it")
    return value


def _query_id(name: str) -> str:
    """The ID given as a query parameter (the form that carries `.` and `..`)."""
    values = request.args.getlist(name)
    if len(values) != 1:
        raise BadQuery(f"give {name} once, as a query parameter (`?{name}=…`)")
    return _id(values[0], name)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadQuery(f"{name} must be a whole number, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadQuery(f"{name} must be between {low} and {high}, got {value}")
    return value


def _start_key(cursor: str | None, key_name: str, key_value: str) -> dict[str, Any] | None:
    """The cursor's key; a cursor is only valid for the query that issued it: same email or user."""
    key = decode_cursor(cursor)
    if key is None:
        return None
    expected = {"email_id", "open_key"} | ({key_name} if key_name == "user_id" else set())
    if set(key) != expected or key[key_name].get("S") != key_value or "S" not in key["open_key"]:
        raise BadQuery("the cursor does not belong to this query (same path, since and until)")
    return key


def _opens(key_name: str, key_value: str) -> Response:
    since, until = request.args.get("since"), request.args.get("until")
    order = (request.args.get("order") or "asc").strip().lower()
    if order not in ("asc", "desc"):
        raise BadQuery(f"order must be asc or desc, got {order[:20]!r}")
    start_key = _start_key(request.args.get("cursor") or None, key_name, key_value)
    low, high = named_time_bound(since, "since"), named_time_bound(until, "until")
    if low and high and low > high + UPPER:
        raise BadQuery(f"since ({since}) is after until ({until})")
    page = _state().store.query_opens(
        **{key_name: key_value},
        since=since,
        until=until,
        limit=_int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        start_key=start_key,
        newest_first=order == "desc",
    )
    items = [{k: v for k, v in item.items() if k not in HIDDEN_FIELDS} for item in page.items]
    return jsonify(items=items, count=len(items), cursor=encode_cursor(page.last_key))


@bp.get("/emails")
def recent() -> Response:
    emails = stats.recent_emails(
        _state().client,
        _state().settings.meta_table,
        days=_int_arg("days", 7, 1, stats.MAX_DAYS),
        limit=_int_arg("limit", 50, 1, MAX_LIMIT),
    )
    return jsonify(emails=emails)


@bp.put("/emails/<id:email_id>/recipients")
def put_recipients(email_id: str) -> Response:
    """Record how many recipients the email went to and how many were tracked, for senders who
    instrument in code or through an ESP; replaces what was recorded (`ddb.recipients`)."""
    from mailpixel.ddb.recipients import FIELDS, MetaTable, checked_counts, record_recipients

    body: Any = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadQuery('send a JSON object such as {"sent": 1000, "tracked_opens": 950}')
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadQuery(f"unknown field(s) {', '.join(unknown)[:80]}; give {', '.join(FIELDS)}")
    if "sent" not in body:
        raise BadQuery("sent is required")
    # Tracked counts left out mean every recipient was tracked, as with the CLI.
    counts = checked_counts(*(body.get(name, body["sent"]) for name in FIELDS))
    state = _state()
    table = MetaTable.of(state.client, state.settings)
    return jsonify(record_recipients(table, _id(email_id, "email_id"), **counts))


@bp.get("/emails/<id:email_id>/stats")
def email_stats(email_id: str) -> Response:
    return _email_stats(_id(email_id, "email_id"))


@bp.get("/emails/stats")
def email_stats_by_query() -> Response:
    return _email_stats(_query_id("email_id"))


def _email_stats(email_id: str) -> Response:
    state = _state()
    return jsonify(stats.email_stats(state.client, state.settings.meta_table, email_id))


def _daily(email_id: str | None) -> Response:
    first, last = stats.day_range(request.args.get("since"), request.args.get("until"))
    state = _state()
    days = stats.daily(state.client, state.settings.meta_table, email_id, first, last)
    return jsonify(
        email_id=email_id,
        since=first.isoformat(),
        until=last.isoformat(),
        days=days,
        totals=stats.totals(days),
    )


@bp.get("/emails/<id:email_id>/daily")
def email_daily(email_id: str) -> Response:
    return _daily(_id(email_id, "email_id"))


@bp.get("/emails/daily")
def email_daily_by_query() -> Response:
    return _daily(_query_id("email_id"))


@bp.get("/daily")
def all_daily() -> Response:
    return _daily(None)


@bp.get("/emails/<id:email_id>/opens")
def email_opens(email_id: str) -> Response:
    return _opens("email_id", _id(email_id, "email_id"))


@bp.get("/emails/opens")
def email_opens_by_query() -> Response:
    return _opens("email_id", _query_id("email_id"))


@bp.get("/users/<id:user_id>/opens")
def user_opens(user_id: str) -> Response:
    return _opens("user_id", _id(user_id, "user_id"))


@bp.get("/users/opens")
def user_opens_by_query() -> Response:
    return _opens("user_id", _query_id("user_id"))


@bp.get("/users/<id:user_id>/stats")
def user_stats(user_id: str) -> Response:
    return _user_stats(_id(user_id, "user_id"))


@bp.get("/users/stats")
def user_stats_by_query() -> Response:
    return _user_stats(_query_id("user_id"))


def _user_stats(user_id: str) -> Response:
    state = _state()
    return jsonify(stats.user_stats(state.client, state.settings.table, user_id))
