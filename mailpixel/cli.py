"""`mailpixel`: the command line for running the local stack and reading open events.

With neither `DYNAMODB_ENDPOINT_URL` nor `MAILPIXEL_TABLE` set, commands talk to the local
stack of `make run`. Give a table (`--table`, `--stage` or `MAILPIXEL_TABLE`) without an
endpoint to read a deployed stage in AWS with your usual AWS credentials.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from mailpixel.config import ConfigError, Settings

OPEN_COLUMNS = ("opened_at", "email_id", "user_id", "ip", "user_agent", "request_id")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(local_default=True)
    if getattr(args, "stage", None):
        settings = settings.with_overrides(table=f"mailpixel-{args.stage}-events", endpoint_url=None)
    if getattr(args, "table", None):
        settings = settings.with_overrides(table=args.table)
    if getattr(args, "endpoint_url", None):
        settings = settings.with_overrides(endpoint_url=args.endpoint_url)
    return settings


def _store(settings: Settings) -> Any:
    from mailpixel.aws import dynamodb_client
    from mailpixel.store import EventStore

    return EventStore(dynamodb_client(settings), settings.table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def write_rows(rows: Iterable[dict[str, Any]], fmt: str, columns: Sequence[str], out: TextIO) -> int:
    """Write rows as `table`, `json` (one array) or `csv`; streams for json and csv."""
    count = 0
    if fmt == "json":
        out.write("[")
        for count, row in enumerate(rows, start=1):
            out.write(("\n  " if count == 1 else ",\n  ") + json.dumps(row, sort_keys=True, default=str))
        out.write("\n]\n" if count else "]\n")
        return count
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        for count, row in enumerate(rows, start=1):
            writer.writerow([_cell(row.get(c)) for c in columns])
        return count
    table = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [min(40, max([len(c)] + [len(r[i]) for r in table])) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for r in table:
        cells = [(v if len(v) <= w else v[: w - 1] + "…").ljust(w) for v, w in zip(r, widths, strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")
    return len(table)


def cmd_run(args: argparse.Namespace) -> int:
    from mailpixel.local import run_stack

    return run_stack(Settings.from_env())


def cmd_opens(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = _store(settings)
    query = {"since": args.since, "until": args.until}
    if args.email_id is not None:
        query["email_id"] = args.email_id
    else:
        query["user_id"] = args.user_id
    write_rows(store.iter_opens(**query), args.format, OPEN_COLUMNS, sys.stdout)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from mailpixel.replay import replay_file, replay_log

    settings = _settings(args)
    store = _store(settings)
    if args.log:
        result = replay_log(store, args.log)
    else:
        from pathlib import Path

        path = Path(args.file) if args.file else Path(settings.data_dir) / "fallback" / "pending.jsonl"
        result = replay_file(store, path)
    print(json.dumps(result))
    return 0 if result["failed"] == 0 else 1


def _add_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the events are")
    group.add_argument("--table", help="table name (default: MAILPIXEL_TABLE, else the local table)")
    group.add_argument("--stage", help="read the deployed stage's table, mailpixel-STAGE-events, in AWS")
    group.add_argument("--endpoint-url", help="DynamoDB endpoint (default: DYNAMODB_ENDPOINT_URL or local)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailpixel", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the local stack (DynamoDB Local + the app), as `make run` does")
    run.set_defaults(func=cmd_run)

    opens = commands.add_parser("opens", help="list open events of an email or of a user, oldest first")
    who = opens.add_mutually_exclusive_group(required=True)
    who.add_argument("--email-id")
    who.add_argument("--user-id")
    opens.add_argument("--since", help="ISO date or date-time, inclusive")
    opens.add_argument("--until", help="ISO date or date-time, inclusive (a date covers the whole day)")
    opens.add_argument("--format", choices=("table", "json", "csv"), default="table")
    _add_target(opens)
    opens.set_defaults(func=cmd_opens)

    replay = commands.add_parser("replay", help="write opens kept in the fallback back into the table")
    replay.add_argument("--file", help="fallback file (default: DATA_DIR/fallback/pending.jsonl)")
    replay.add_argument("--log", help="a log file to scan for open_not_stored lines instead")
    _add_target(replay)
    replay.set_defaults(func=cmd_replay)
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
        from mailpixel.local import LocalStackError
        from mailpixel.store import BadQuery

        if isinstance(exc, LocalStackError | BadQuery):
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
