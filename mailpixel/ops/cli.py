"""`mailpixel`: the command line for running the local stack and reading open events.

With neither `DYNAMODB_ENDPOINT_URL` nor `MAILPIXEL_TABLE` set, commands talk to the local
stack of `make run`. Give a table (`--table`, `--stage` or `MAILPIXEL_TABLE`) without an
endpoint to read a deployed stage in AWS with your usual AWS credentials.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from mailpixel.config import ConfigError, Settings
from mailpixel.ops.output import ROW_FORMATS, printable, progress, rate_text, write_rows
from mailpixel.ops.secrets_cli import signing_keys, signing_secret
from mailpixel.ops.stage import add_target_arguments
from mailpixel.ops.stage import target_settings as _settings

OPEN_COLUMNS = ("opened_at", "email_id", "user_id", "ip", "user_agent", "request_id")
# The table format shows enrichment in three short columns instead of the raw maps.
TABLE_COLUMNS = ("opened_at", "email_id", "user_id", "ip", "client", "open", "country", "request_id")


def table_row(row: dict[str, Any]) -> dict[str, Any]:
    """An open as the table shows it: client name, machine/human (with the reason), country."""
    client: dict[str, Any] = row["client"] if isinstance(row.get("client"), dict) else {}
    geo: dict[str, Any] = row["geo"] if isinstance(row.get("geo"), dict) else {}
    if "machine_open" not in row:
        kind = "pending"
    elif row["machine_open"]:
        kind = f"machine:{row.get('machine_reason') or '?'}"
    else:
        kind = "human"
    if row.get("proxy"):
        kind += f" via {row['proxy']}"
    return {**row, "client": client.get("name"), "open": kind, "country": geo.get("country")}


def _store(settings: Settings) -> Any:
    from mailpixel.aws import dynamodb_client
    from mailpixel.ddb.store import EventStore

    return EventStore(dynamodb_client(settings), settings.table, settings.clicks_table)


def cmd_run(args: argparse.Namespace) -> int:
    from mailpixel.ops.local.stack import run_stack

    return run_stack(Settings.from_env())


def cmd_opens(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = _store(settings)
    query = {"since": args.since, "until": args.until}
    if args.email_id is not None:
        query["email_id"] = args.email_id
    else:
        query["user_id"] = args.user_id
    rows = store.iter_opens(**query)
    if args.format != "table" and sys.stderr.isatty():
        rows = progress(rows, sys.stderr, _expected_rows(settings, args))
    if args.format == "table":
        write_rows((table_row(r) for r in rows), args.format, TABLE_COLUMNS, sys.stdout)
    else:
        write_rows(rows, args.format, OPEN_COLUMNS, sys.stdout)
    return 0


def cmd_ranges(args: argparse.Namespace) -> int:
    from mailpixel.ops.ranges_refresh import refresh

    result = refresh(out=sys.stdout)
    return 1 if result["failed"] else 0


def _expected_rows(settings: Settings, args: argparse.Namespace) -> int | None:
    """The email's enriched open count, which sizes the progress bar; None when unknown."""
    if args.email_id is None or args.since or args.until:
        return None
    from mailpixel.api.stats import email_stats
    from mailpixel.aws import dynamodb_client

    try:
        stats = email_stats(dynamodb_client(settings), settings.meta_table, args.email_id)
        return int(stats["opens"]) or None
    except Exception:  # noqa: BLE001 - a bar without a total is still a progress report
        return None


# `mailpixel stats` in a table: opens, then clicks, recipients, one line per rate with its
# formula, then the breakdowns, then one line per link.
STATS_ORDER = (
    "email_id",
    "opens",
    "human_opens",
    "machine_opens",
    "unique_openers",
    "unique_human_openers",
    "first_open_at",
    "first_human_open_at",
    "last_open_at",
    "clicks",
    "human_clicks",
    "machine_clicks",
    "unique_clickers",
    "unique_human_clickers",
    "estimated_human_openers",
    "recipients",
    "rates",
)


def stats_lines(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) lines of an email's stats: figures, breakdown maps (largest first), and a
    `link` line per destination (human clicks, all clicks, URL), most human clicks first."""
    names = [n for n in STATS_ORDER if n in result]
    # The top-level click_to_open_rate is shown among the rates.
    names += [n for n in result if n not in STATS_ORDER and n not in ("links", "click_to_open_rate")]
    lines = []
    for name in names:
        value = result[name]
        if name == "rates":
            for rate, shown in value.items():
                lines.append((rate, f"{rate_text(shown['value'])}  = {shown['formula']}"))
            continue
        if name == "recipients":
            text = (
                ", ".join(f"{k} {v}" for k, v in value.items())
                if value
                else "- (not recorded: mailpixel recipients --email-id E --sent N)"
            )
        elif isinstance(value, dict):
            text = ", ".join(f"{k} {v}" for k, v in sorted(value.items(), key=lambda kv: -kv[1])) or "-"
        else:
            text = "-" if value is None else str(value)
        lines.append((name, printable(text)))
    links = result.get("links") or []
    if not links:
        lines.append(("links", "-"))
    for link in links:
        counts = f"{link['human_clicks']} human / {link['clicks']} clicks"
        lines.append(("link", f"{counts:<24}{printable(str(link['url']))}"))
    return lines


def cmd_stats(args: argparse.Namespace) -> int:
    from mailpixel.api.stats import email_stats
    from mailpixel.aws import dynamodb_client

    settings = _settings(args)
    result = email_stats(dynamodb_client(settings), settings.meta_table, args.email_id)
    if args.format == "json":
        print(json.dumps(result, sort_keys=True))
        return 0
    lines = stats_lines(result)
    width = max(len(name) for name, _ in lines) + 2
    for name, text in lines:
        print(f"{name:<{width}}{text}")
    return 0


def cmd_recipients(args: argparse.Namespace) -> int:
    from mailpixel.aws import dynamodb_client
    from mailpixel.ddb.recipients import MetaTable, record_recipients

    settings = _settings(args)
    recorded = record_recipients(
        MetaTable.of(dynamodb_client(settings), settings),
        args.email_id,
        args.sent,
        args.sent if args.tracked_opens is None else args.tracked_opens,
        args.sent if args.tracked_clicks is None else args.tracked_clicks,
    )
    print(json.dumps(recorded, sort_keys=True))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from mailpixel.ops.replay import replay_file, replay_log

    settings = _settings(args)
    store = _store(settings)
    keys = signing_keys(settings)
    if args.queue_url:
        from mailpixel.aws import sqs_client
        from mailpixel.ops.replay import replay_queue

        result = replay_queue(sqs_client(settings), args.queue_url, store, keys=keys)
    elif args.log:
        result = replay_log(store, args.log, keys)
    else:
        from pathlib import Path

        path = Path(args.file) if args.file else Path(settings.data_dir) / "fallback" / "pending.jsonl"
        result = replay_file(store, path, keys)
    print(json.dumps(result))
    if result["unverified"]:
        print(
            "mailpixel: quarantined opens kept: they need the signing secrets to be verified "
            "(MAILPIXEL_SIGNING_SECRETS or MAILPIXEL_SIGNING_SECRETS_PARAMETER)",
            file=sys.stderr,
        )
    return 0 if result["failed"] == 0 and result["unverified"] == 0 else 1


def cmd_url(args: argparse.Namespace) -> int:
    import html
    import time

    from mailpixel.ops.stage import base_url as resolve_base_url
    from mailpixel.signing import make_url

    settings = Settings.from_env(local_default=True)
    base_url = resolve_base_url(settings, given=args.base_url, stage=args.stage)
    secret = signing_secret(settings, "this URL is unsigned")
    # With a maximum age the pixel refuses a URL without `t`, so it is added whatever the flag.
    issued = int(time.time()) if args.with_time or settings.signature_max_age_days else None
    try:
        url = make_url(base_url, args.email_id, args.user_id, secret, t=issued)
    except ValueError as exc:  # an ID the pixel would cut
        print(f"mailpixel: {exc}", file=sys.stderr)
        return 2
    img = (
        f'<img src="{html.escape(url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;" />'
    )
    if args.format == "json":
        print(json.dumps({"url": url, "img": img}))
    else:
        print(url)
        print(img)
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mailpixel.aws import dynamodb_client
    from mailpixel.ops.erasure import Eraser, forget_in_files, local_data_files

    settings = _settings(args)
    eraser = Eraser(dynamodb_client(settings), settings.table, settings.meta_table, settings.clicks_table)
    if args.user_id is not None:
        who, result = {"user_id": args.user_id}, eraser.forget_user(args.user_id)
    else:
        who, result = {"email_id": args.email_id}, eraser.forget_email(args.email_id)
    ((kind, name),) = who.items()
    # The local stack's files (the fallback, enrichment failures) are reached too.
    lines = forget_in_files(local_data_files(Path(settings.data_dir)), kind, name) if settings.is_local else 0
    if args.format == "json":
        print(json.dumps({**who, **result.to_json(), "local_lines": lines}, sort_keys=True))
    else:
        print(
            f"deleted {result.events} events and {result.meta} derived items of {kind} {name}"
            + (f", and {lines} lines of local files" if lines else "")
        )
    return 0


def cmd_reenrich(args: argparse.Namespace) -> int:
    from mailpixel.aws import dynamodb_client
    from mailpixel.enrich.handler import build_handler
    from mailpixel.ops.redrive import reenrich

    settings = _settings(args)
    client = dynamodb_client(settings)
    result = reenrich(client, settings.table, build_handler(settings, ddb=client))
    print(json.dumps(result))
    return 0 if result["failed"] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    from mailpixel.ops.clicks_cli import add_parser as add_clicks_command
    from mailpixel.ops.doctor import add_parser as add_doctor_command
    from mailpixel.ops.instrument_cli import add_parser as add_instrument_command
    from mailpixel.ops.reclassify import add_parser as add_reclassify_command
    from mailpixel.ops.stage import add_base_url_arguments
    from mailpixel.ops.webhooks_cli import add_parser as add_webhooks_command

    parser = argparse.ArgumentParser(prog="mailpixel", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run the local stack (DynamoDB Local + the app), as `make run` does"
    )
    run.set_defaults(func=cmd_run)

    opens = commands.add_parser("opens", help="list open events of an email or of a user, oldest first")
    who = opens.add_mutually_exclusive_group(required=True)
    who.add_argument("--email-id")
    who.add_argument("--user-id")
    opens.add_argument("--since", help="ISO date or date-time, inclusive")
    opens.add_argument("--until", help="ISO date or date-time, inclusive (a date covers the whole day)")
    opens.add_argument("--format", choices=ROW_FORMATS, default="table")
    add_target_arguments(opens)
    opens.set_defaults(func=cmd_opens)

    stats = commands.add_parser(
        "stats",
        help="print an email's aggregates: opens, unique (human) openers, clicks, the click-to-open "
        "rate, first human open, clicks per link",
    )
    stats.add_argument("--email-id", required=True)
    stats.add_argument("--format", choices=("table", "json"), default="table")
    add_target_arguments(stats)
    stats.set_defaults(func=cmd_stats)

    recipients = commands.add_parser(
        "recipients",
        help="record how many recipients an email was sent to and how many were tracked (the "
        "rates' denominators); replaces what was recorded before",
    )
    recipients.add_argument("--email-id", required=True)
    recipients.add_argument("--sent", type=int, required=True, help="recipients the email was sent to")
    recipients.add_argument(
        "--tracked-opens", type=int, help="recipients whose copy carried the pixel (default: --sent)"
    )
    recipients.add_argument(
        "--tracked-clicks", type=int, help="recipients whose links were rewritten (default: --sent)"
    )
    add_target_arguments(recipients)
    recipients.set_defaults(func=cmd_recipients)

    replay = commands.add_parser("replay", help="write opens kept in the fallback back into the table")
    replay.add_argument("--file", help="fallback file (default: DATA_DIR/fallback/pending.jsonl)")
    replay.add_argument("--log", help="a log file to scan for open_not_stored lines instead")
    replay.add_argument(
        "--queue-url", help="an SQS queue to drain instead (in AWS: the fallback dead-letter queue)"
    )
    add_target_arguments(replay)
    replay.set_defaults(func=cmd_replay)

    again = commands.add_parser(
        "reenrich", help="enrich events that never were (after an outage or the failure queue)"
    )
    add_target_arguments(again)
    again.set_defaults(func=cmd_reenrich)

    url = commands.add_parser("url", help="print a (signed) pixel URL and its <img> tag")
    url.add_argument("--email-id", required=True)
    url.add_argument("--user-id", required=True)
    add_base_url_arguments(url)
    url.add_argument(
        "--with-time",
        action="store_true",
        help="add t, the issue time, so the URL can expire (always added when "
        "MAILPIXEL_SIGNATURE_MAX_AGE_DAYS is set)",
    )
    url.add_argument("--format", choices=("text", "json"), default="text")
    url.set_defaults(func=cmd_url)

    add_instrument_command(commands)
    add_doctor_command(commands)
    add_webhooks_command(commands)
    add_clicks_command(commands)
    add_reclassify_command(commands)

    forget = commands.add_parser("forget", help="delete every item about one user or one email (erasure)")
    subject = forget.add_mutually_exclusive_group(required=True)
    subject.add_argument("--user-id")
    subject.add_argument("--email-id")
    forget.add_argument("--format", choices=("text", "json"), default="text")
    add_target_arguments(forget)
    forget.set_defaults(func=cmd_forget)
    ranges = commands.add_parser("ranges", help="proxy and scanner IP ranges used by enrichment")
    ranges_commands = ranges.add_subparsers(dest="ranges_command", required=True, metavar="ACTION")
    refresh = ranges_commands.add_parser("refresh", help="download the published lists into mailpixel/data/")
    refresh.set_defaults(func=cmd_ranges)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"mailpixel: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a person reads this: one line, not a traceback
        from mailpixel.model.query import BadQuery
        from mailpixel.ops.local.stack import LocalStackError
        from mailpixel.ops.stage import StageError

        if isinstance(exc, LocalStackError | BadQuery | StageError):
            print(f"mailpixel: {exc}", file=sys.stderr)
            return 2
        name = type(exc).__name__
        if name in ("EndpointConnectionError", "ConnectionClosedError"):
            print(f"mailpixel: cannot reach DynamoDB ({exc}). Is `make run` running?", file=sys.stderr)
            return 1
        if name in ("ResourceNotFoundException", "ClientError", "NoCredentialsError"):
            print(f"mailpixel: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
