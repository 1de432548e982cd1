"""`mailpixel clicks`: the clicks of an email or a user, or an email's click summary.

Reads the clicks table with a Query (by email: the table; by user: its `by_user` index), never a
scan. The summary is counted from the clicks as read (pending ones included), and for an email
adds its click-to-open rate from the kept aggregates (`api.stats.email_stats`: one GetItem and
one Query), since the rate needs the unique human openers, which the clicks do not tell.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from mailpixel.model.keys import USER_INDEX
from mailpixel.ops.output import rate_text, write_rows
from mailpixel.ops.stage import add_target_arguments, target_settings

CLICK_COLUMNS = ("clicked_at", "email_id", "user_id", "url", "method", "ip", "user_agent", "request_id")
TABLE_COLUMNS = ("clicked_at", "email_id", "user_id", "url", "click", "rule", "country")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("clicks", help="list clicks of an email or of a user, or an email's summary")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--email-id")
    who.add_argument("--user-id")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="totals, human clickers, clicks per link (and an email's click-to-open rate)",
    )
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument(
        "--clicks-table", help="default: MAILPIXEL_CLICKS_TABLE, the stage's, else the local one"
    )
    add_target_arguments(parser)
    parser.set_defaults(func=cmd_clicks)


def iter_clicks(
    client: Any, table: str, *, email_id: str | None = None, user_id: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every click of the email (or user), oldest first, as plain values."""
    from mailpixel.ddb.codec import plain_item
    from mailpixel.ddb.store import paged

    name, value = ("email_id", email_id) if email_id is not None else ("user_id", user_id)
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "#k = :k",
        "ExpressionAttributeNames": {"#k": name},
        "ExpressionAttributeValues": {":k": {"S": value}},
    }
    if user_id is not None:
        kwargs["IndexName"] = USER_INDEX
    return (plain_item(item) for item in paged(client.query, **kwargs))


def verdict_of(row: dict[str, Any]) -> str:
    if "machine_click" not in row:
        return "pending"
    return f"machine:{row.get('machine_reason') or '?'}" if row["machine_click"] else "human"


def summary(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Clicks, human and machine clicks (by reason), unique human clickers, human clicks per link."""
    verdicts: Counter[str] = Counter()
    links: Counter[str] = Counter()
    clickers: set[str] = set()
    for row in rows:
        verdict = verdict_of(row)
        verdicts[verdict] += 1
        if verdict == "human":
            links[str(row.get("url"))] += 1
            if row.get("user_id"):
                clickers.add(str(row["user_id"]))
    machine = {k.split(":", 1)[1]: v for k, v in verdicts.items() if k.startswith("machine:")}
    return {
        "clicks": sum(verdicts.values()),
        "human_clicks": verdicts["human"],
        "machine_clicks": sum(machine.values()),
        "machine_by_reason": machine,
        "pending": verdicts["pending"],
        "unique_human_clickers": len(clickers),
        "human_clicks_per_link": dict(links.most_common()),
    }


def cmd_clicks(args: argparse.Namespace) -> int:
    from mailpixel.aws import dynamodb_client

    settings = target_settings(args)
    if args.clicks_table:
        settings = settings.with_overrides(clicks_table=args.clicks_table)
    rows = iter_clicks(
        dynamodb_client(settings), settings.clicks_table, email_id=args.email_id, user_id=args.user_id
    )
    if args.summary:
        result = summary(rows)
        if args.email_id is not None:
            from mailpixel.api.stats import email_stats

            kept = email_stats(dynamodb_client(settings), settings.meta_table, args.email_id)
            result["click_to_open_rate"] = kept["click_to_open_rate"]
        if args.format == "json":
            print(json.dumps(result, indent=2))
        else:
            for name, value in result.items():
                if name == "click_to_open_rate":
                    value = rate_text(value)
                print(f"{name:>24}: {json.dumps(value) if isinstance(value, dict) else value}")
        return 0
    if args.format == "table":
        shown = (
            {
                **r,
                "click": verdict_of(r),
                "rule": (r.get("evidence") or {}).get("rule"),
                "country": (r.get("geo") or {}).get("country"),
            }
            for r in rows
        )
        write_rows(shown, "table", TABLE_COLUMNS, sys.stdout)
    else:
        write_rows(rows, args.format, CLICK_COLUMNS, sys.stdout)
    return 0
