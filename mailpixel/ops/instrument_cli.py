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
    parser.add_argument("--with-time", action="store_true", help="add t, the issue time, to every URL")
    parser.set_defaults(func=cmd_instrument)


def recipients(fh: TextIO) -> Iterator[dict[str, str]]:
    reader = csv.DictReader(fh)
    if USER_COLUMN not in (reader.fieldnames or []):
        raise ValueError(f"the recipients CSV needs a {USER_COLUMN} column")
    yield from reader


def _instrumenter(args: argparse.Namespace, email_scoped: bool) -> Instrumenter:
    from mailpixel.ops.cli import signing_secret

    settings = Settings.from_env(local_default=True)
    text = Path(args.html).read_bytes().decode("utf-8", errors="surrogateescape")
    return Instrumenter(
        text,
        email_id=args.email_id,
        base_url=args.base_url or settings.public_base_url or f"http://127.0.0.1:{settings.port}",
        secret=signing_secret(settings, "these URLs are unsigned"),
        t=int(time.time()) if args.with_time else None,
        email_scoped=email_scoped,
    )


def _bytes(text: str) -> bytes:
    """Back to the input's bytes: invalid UTF-8 in the template was kept as surrogate escapes."""
    return text.encode("utf-8", errors="surrogateescape")


def cmd_instrument(args: argparse.Namespace) -> int:
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
        rows = recipients(fh)
        if args.jsonl:
            for row in rows:
                sys.stdout.write(json.dumps({**row, "html": email.render(row[USER_COLUMN])}) + "\n")
            return 0
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "recipients.csv").open("w", encoding="utf-8", newline="") as manifest:
            writer: csv.DictWriter[str] | None = None
            for number, row in enumerate(rows, start=1):
                name = f"{number:06d}.html"
                (out / name).write_bytes(_bytes(email.render(row[USER_COLUMN])))
                if writer is None:
                    writer = csv.DictWriter(manifest, fieldnames=[*row, FILE_COLUMN])
                    writer.writeheader()
                writer.writerow({**row, FILE_COLUMN: name})
    return 0
