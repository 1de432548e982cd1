"""The vocabulary every reader of opens shares (the query API, the CLI, the store): time bounds
over the `open_key` sort key, and the error a bad query raises."""

from __future__ import annotations

from datetime import UTC, date, datetime

from mailpixel.model.events import iso_millis

# Sorts after every character of an ISO timestamp and after '#', so a bound such as
# "2026-11-24" + UPPER includes every open key that starts with that day.
UPPER = "~"


class BadQuery(ValueError):
    """A query parameter (date, cursor, limit) cannot be used; the message says why."""


def time_bound(value: str | None) -> str | None:
    """Normalise an ISO date or date-time to the prefix it covers in `open_key`.

    A date stays a date ("2026-11-24" covers the whole day); a date-time is converted to UTC
    with milliseconds. Naive date-times are taken as UTC.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadQuery(f"not an ISO-8601 date or date-time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return iso_millis(int(moment.timestamp() * 1000))
    except (OverflowError, ValueError, OSError):  # in UTC it falls before year 1 or after 9999
        raise BadQuery(f"date-time out of range once converted to UTC: {value!r}") from None


def named_time_bound(value: str | None, name: str) -> str | None:
    """`time_bound`, with the parameter's name in the error message."""
    try:
        return time_bound(value)
    except BadQuery as error:
        raise BadQuery(f"{name}: {error}") from None
