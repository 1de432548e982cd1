"""`mailpixel instrument`: per-recipient HTML emails with their pixel and signed click URLs."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from mailpixel.config import Settings
from mailpixel.model.ids import id_problem
from mailpixel.ops.instrument import Instrumenter

USER_COLUMN = "user_id"
FILE_COLUMN = "file"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "instrument",
        help="write an HTML email per recipient with its pixel and signed click URLs",
        description="Adds the pixel before </body> and rewrites every trackable link to a signed click "
        "URL; every other byte of the HTML is kept.",
    )
    parser.add_argument("--html", required=True, help="the email's HTML file")
    parser.add_argument("--email-id", required=True)
    parser.add_argument("--recipients", help="CSV with a user_id column (other columns are kept)")
    parser.add_argument(
        "--out-dir", help="write N.html per recipient and recipients.csv (with a file column)"
    )
    parser.add_argument(
        "--jsonl", action="store_true", help="stream instead: one JSON line per recipient on stdout"
    )
    parser.add_argument(
        "--email-scoped",
        metavar="MERGE_TAG",
        help="one email for an ESP: signatures cover the email and links, user_id is this merge tag",
    )
    parser.add_argument(
        "--base-url", help="where mailpixel answers (default: MAILPIXEL_BASE_URL, local stack)"
    )
    parser.add_argument(
        "--with-time",
        action="store_true",
        help="add t, the issue time, to every URL so it can expire (always added when "
        "MAILPIXEL_SIGNATURE_MAX_AGE_DAYS is set)",
    )
    parser.set_defaults(func=cmd_instrument)


class RecipientsError(ValueError):
    """The recipients CSV (or an ID given) cannot be instrumented; the message says where."""


def recipients(fh: TextIO, source: str = "the recipients CSV") -> Iterator[dict[str, str]]:
    """The CSV's rows; a row whose user id the pixel and /click would cut or clean (or that has
    no user_id cell) raises RecipientsError naming it, before anything is made from it."""
    reader = csv.DictReader(fh)
    if USER_COLUMN not in (reader.fieldnames or []):
        raise RecipientsError(f"the recipients CSV needs a {USER_COLUMN} column")
    for number, row in enumerate(reader, start=1):
        user_id = row[USER_COLUMN]
        problem = f"has no {USER_COLUMN}" if user_id is None else id_problem(user_id)
        if problem:
            if user_id is not None:
                problem = f"{USER_COLUMN} {_shown(user_id)} {problem}"
            raise RecipientsError(f"{source}: row {number} (line {reader.line_num}): {problem}")
        yield row


def _shown(value: str, limit: int = 40) -> str:
    """An ID for a one-line message: its start, quoted, and its length."""
    return repr(value[:limit] + "…" if len(value) > limit else value) + f" ({len(value)} characters)"


def _instrumenter(args: argparse.Namespace, email_scoped: bool) -> Instrumenter:
    from mailpixel.ops.cli import signing_secret

    problem = id_problem(args.email_id)
    if problem:
        raise RecipientsError(f"--email-id {problem}")
    settings = Settings.from_env(local_default=True)
    text = Path(args.html).read_bytes().decode("utf-8", errors="surrogateescape")
    # With a maximum age the pixel and /click refuse a URL without `t`, so it is added whatever
    # the flag (as `mailpixel url` does).
    dated = args.with_time or bool(settings.signature_max_age_days)
    return Instrumenter(
        text,
        email_id=args.email_id,
        base_url=args.base_url or settings.public_base_url or f"http://127.0.0.1:{settings.port}",
        secret=signing_secret(settings, "these URLs are unsigned"),
        t=int(time.time()) if dated else None,
        email_scoped=email_scoped,
    )


def _bytes(text: str) -> bytes:
    """Back to the input's bytes: invalid UTF-8 in the template was kept as surrogate escapes."""
    return text.encode("utf-8", errors="surrogateescape")


def cmd_instrument(args: argparse.Namespace) -> int:
    # `mailpixel`'s main prints a traceback for a ValueError; what a person got wrong in their
    # CSV or flags is one line and exit status 2, as `mailpixel url` does.
    try:
        return _instrument(args)
    except RecipientsError as exc:
        print(f"mailpixel: {exc}", file=sys.stderr)
        return 2


def _instrument(args: argparse.Namespace) -> int:
    if args.email_scoped is not None:
        email = _instrumenter(args, email_scoped=True)
        rendered = email.render(args.email_scoped)
        if args.out_dir:
            Path(args.out_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.out_dir) / "email.html").write_bytes(_bytes(rendered))
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(_bytes(rendered))
            sys.stdout.buffer.flush()
        return 0
    if not args.recipients or bool(args.out_dir) == bool(args.jsonl):
        print(
            "mailpixel: give --recipients and one of --out-dir or --jsonl (or --email-scoped)",
            file=sys.stderr,
        )
        return 2
    email = _instrumenter(args, email_scoped=False)
    with open(args.recipients, encoding="utf-8-sig", newline="") as fh:
        if fh.seekable():
            # Every row checked before anything is written: a bad row stops the run with its
            # line named, not half a campaign. (A pipe is read once, and checked as it goes.)
            for _ in recipients(fh, args.recipients):
                pass
            fh.seek(0)
        rows = recipients(fh, args.recipients)
        if args.jsonl:
            for row in rows:
                sys.stdout.write(json.dumps({**row, "html": email.render(row[USER_COLUMN])}) + "\n")
            return 0
        from mailpixel.ops.cli import csv_cell

        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "recipients.csv").open("w", encoding="utf-8", newline="") as manifest:
            # Opened in a spreadsheet like `opens --format csv`, so written the same way: no cell
            # (a recipient's name, an ID from a signup form) can start a formula.
            writer = csv.writer(manifest)
            columns: list[str] | None = None
            for number, row in enumerate(rows, start=1):
                name = f"{number:06d}.html"
                (out / name).write_bytes(_bytes(email.render(row[USER_COLUMN])))
                if columns is None:
                    columns = [*row]
                    writer.writerow([csv_cell(column) for column in [*columns, FILE_COLUMN]])
                writer.writerow([csv_cell(row.get(column)) for column in columns] + [name])
    return 0
