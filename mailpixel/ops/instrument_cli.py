"""`mailpixel instrument`: per-recipient HTML emails with their pixel and signed click URLs."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mailpixel.config import Settings
from mailpixel.model.ids import id_problem
from mailpixel.ops.instrument import (
    GMAIL_CLIP_BYTES,
    PIXEL_BOTTOM,
    PIXEL_POSITIONS,
    TRACK_ALL,
    TRACK_CLICKS,
    TRACK_NONE,
    TRACKING_VALUES,
    Instrumenter,
)
from mailpixel.ops.output import csv_cell
from mailpixel.ops.secrets_cli import signing_secret
from mailpixel.ops.stage import add_base_url_arguments, target_settings
from mailpixel.ops.stage import base_url as resolve_base_url

USER_COLUMN = "user_id"
FILE_COLUMN = "file"
CONSENT_COLUMN = "tracking"
SUMMARY_FILE = "summary.json"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "instrument",
        help="write an HTML email per recipient with its pixel and signed click URLs",
        description="Adds the pixel before </body> (or after <body>), rewrites every trackable link to a "
        "signed click URL and adds a hidden honeypot link; every other byte of the HTML is kept. "
        "Prints a summary (recipients, tracked for opens, tracked for clicks) on stderr.",
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
    add_base_url_arguments(parser)
    parser.add_argument(
        "--with-time",
        action="store_true",
        help="add t, the issue time, to every URL so it can expire (always added when "
        "MAILPIXEL_SIGNATURE_MAX_AGE_DAYS is set)",
    )
    parser.add_argument(
        "--no-honeypot",
        dest="honeypot",
        action="store_false",
        help="leave out the hidden link that catches security scanners' clicks",
    )
    parser.add_argument(
        "--pixel-position",
        choices=PIXEL_POSITIONS,
        default=PIXEL_BOTTOM,
        help="bottom: before </body> (default); top: right after <body>, so Gmail's clipping of "
        f"emails over {GMAIL_CLIP_BYTES:,} bytes cannot cut it off",
    )
    parser.add_argument(
        "--consent-column",
        metavar="NAME",
        help=f"the recipients CSV's consent column (default: {CONSENT_COLUMN}, used when present): "
        f"{TRACK_ALL}, {TRACK_CLICKS} (no pixel) or {TRACK_NONE} (the email as written)",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="also record the summary's counts as the email's recipients (the rates' denominators) "
        "in the local stack's meta table, or --stage's; replaces an earlier record",
    )
    parser.add_argument("--meta-table", help="with --record: the meta table (default: MAILPIXEL_META_TABLE)")
    parser.add_argument("--endpoint-url", help="with --record: the DynamoDB endpoint (default: local)")
    parser.set_defaults(func=cmd_instrument)


class RecipientsError(ValueError):
    """The recipients CSV (or an ID given) cannot be instrumented; the message says where."""


def recipients(
    fh: TextIO,
    source: str = "the recipients CSV",
    consent_column: str | None = None,
) -> Iterator[tuple[dict[str, str], str]]:
    """The CSV's rows, each with what its recipient agreed to (`all`, `clicks`, `none`).

    A row whose user id the pixel and /click would cut or clean (or that has no user_id cell),
    or whose consent cell is not one of the three values (an empty one included: tracking nobody
    agreed to is not a default), raises RecipientsError naming it, before anything is made from
    it. The consent column is `consent_column` (which must then exist), else `tracking` when the
    CSV has it; without one, every recipient is tracked.
    """
    reader = csv.DictReader(fh)
    fields = reader.fieldnames or []
    if USER_COLUMN not in fields:
        raise RecipientsError(f"the recipients CSV needs a {USER_COLUMN} column")
    if consent_column is not None and consent_column not in fields:
        raise RecipientsError(f"the recipients CSV has no {consent_column} column (--consent-column)")
    column = consent_column or (CONSENT_COLUMN if CONSENT_COLUMN in fields else None)
    for number, row in enumerate(reader, start=1):
        user_id = row[USER_COLUMN]
        tracking = TRACK_ALL if column is None else (row[column] or "").strip().lower()
        id_wrong = f"has no {USER_COLUMN}" if user_id is None else id_problem(user_id)
        if id_wrong:
            problem = id_wrong if user_id is None else f"{USER_COLUMN} {_shown(user_id)} {id_wrong}"
        elif tracking not in TRACKING_VALUES:
            problem = f"{column} {_shown(row[column] or '')} is not one of {', '.join(TRACKING_VALUES)}"
        else:
            yield row, tracking
            continue
        raise RecipientsError(f"{source}: row {number} (line {reader.line_num}): {problem}")


def _shown(value: str, limit: int = 40) -> str:
    """An ID for a one-line message: its start, quoted, and its length."""
    return repr(value[:limit] + "…" if len(value) > limit else value) + f" ({len(value)} characters)"


def _instrumenter(args: argparse.Namespace, email_scoped: bool) -> Instrumenter:
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
        base_url=resolve_base_url(settings, given=args.base_url, stage=args.stage),
        secret=signing_secret(settings, "these URLs are unsigned"),
        t=int(time.time()) if dated else None,
        email_scoped=email_scoped,
        honeypot=args.honeypot,
        pixel_position=args.pixel_position,
    )


def _bytes(text: str) -> bytes:
    """Back to the input's bytes: invalid UTF-8 in the template was kept as surrogate escapes."""
    return text.encode("utf-8", errors="surrogateescape")


@dataclass
class InstrumentSummary:
    """What one `instrument` run made: the counts the rates are computed over.

    `recipients` is every email written; `tracked_opens` those with the pixel (consent `all`),
    `tracked_clicks` those with signed links (`all` and `clicks`), `untracked` those sent as
    written (`none`). `honeypots` counts emails carrying the hidden link, `over_gmail_clip` those
    larger than Gmail's clipping size. `warnings` are the template's (links left alone that look
    as if they should be tracked), said once.
    """

    email_id: str
    recipients: int = 0
    tracked_opens: int = 0
    tracked_clicks: int = 0
    untracked: int = 0
    honeypots: int = 0
    over_gmail_clip: int = 0
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.email_id}: {self.recipients} recipients: {self.tracked_opens} tracked for opens "
            f"(pixel), {self.tracked_clicks} for clicks (links), {self.untracked} untracked; "
            f"honeypot in {self.honeypots}"
        )


Write = Callable[[int, dict[str, str], str], None]


def instrument_rows(
    email: Instrumenter, rows: Iterable[tuple[dict[str, str], str]], write: Write, email_id: str
) -> InstrumentSummary:
    """Render each (row, consent) and hand it to `write(number, row, html)`, counting as it goes
    and warning (stderr) for each recipient whose email Gmail would clip."""
    summary = InstrumentSummary(email_id=email_id, warnings=list(email.warnings))
    for number, (row, tracking) in enumerate(rows, start=1):
        made = email.rendered(row[USER_COLUMN], tracking)
        rendered = made.html
        summary.recipients += 1
        summary.tracked_opens += tracking == TRACK_ALL
        summary.tracked_clicks += tracking != TRACK_NONE
        summary.untracked += tracking == TRACK_NONE
        summary.honeypots += made.honeypot
        size = len(_bytes(rendered))
        if size > GMAIL_CLIP_BYTES:
            summary.over_gmail_clip += 1
            who = f"row {number} ({USER_COLUMN} {_shown(row[USER_COLUMN])})"
            _warn(f"{who}: {_clipped(email, size, tracking)}")
        write(number, row, rendered)
    return summary


def _clipped(email: Instrumenter, size: int, tracking: str) -> str:
    lost = (
        "; the pixel at the bottom may never load (--pixel-position top)"
        if tracking == TRACK_ALL and email.template.pixel_position == PIXEL_BOTTOM
        else ""
    )
    return f"{size:,} bytes, over Gmail's clipping size ({GMAIL_CLIP_BYTES:,}): Gmail clips it{lost}"


def _warn(message: str) -> None:
    print(f"mailpixel: warning: {message}", file=sys.stderr)


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
        if args.record:
            print(
                "mailpixel: --record needs the recipients; with --email-scoped, record them with "
                "`mailpixel recipients` or PUT /api/emails/{id}/recipients when the ESP has sent",
                file=sys.stderr,
            )
            return 2
        email = _instrumenter(args, email_scoped=True)
        for warning in email.warnings:
            _warn(warning)
        rendered = email.render(args.email_scoped)
        if len(_bytes(rendered)) > GMAIL_CLIP_BYTES:
            _warn(_clipped(email, len(_bytes(rendered)), TRACK_ALL))
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
            for _ in recipients(fh, args.recipients, args.consent_column):
                pass
            fh.seek(0)
        for warning in email.warnings:
            _warn(warning)
        rows = recipients(fh, args.recipients, args.consent_column)
        if args.jsonl:

            def line(number: int, row: dict[str, str], rendered: str) -> None:
                sys.stdout.write(json.dumps({**row, "html": rendered}) + "\n")

            summary = instrument_rows(email, rows, line, args.email_id)
        else:
            summary = _write_out_dir(email, rows, Path(args.out_dir), args.email_id)
            (Path(args.out_dir) / SUMMARY_FILE).write_text(
                json.dumps(asdict(summary), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
    print(f"mailpixel: {summary.line()}", file=sys.stderr)
    return _record(args, summary) if args.record else 0


def _record(args: argparse.Namespace, summary: InstrumentSummary) -> int:
    """The summary's counts as the email's recipients; the emails are written already, so a
    failure says how to record them later instead of losing the counts."""
    from mailpixel.aws import dynamodb_client
    from mailpixel.ddb.recipients import MetaTable, record_recipients

    settings = target_settings(args)
    try:
        record_recipients(
            MetaTable.of(dynamodb_client(settings), settings),
            summary.email_id,
            summary.recipients,
            summary.tracked_opens,
            summary.tracked_clicks,
        )
    except Exception as exc:  # noqa: BLE001 - botocore's errors and BadQuery: one line for a person
        print(
            f"mailpixel: the emails are written, but recording their recipients failed ({exc}); "
            f"record them later with: mailpixel recipients --email-id {summary.email_id} "
            f"--sent {summary.recipients} --tracked-opens {summary.tracked_opens} "
            f"--tracked-clicks {summary.tracked_clicks}",
            file=sys.stderr,
        )
        return 1
    print(f"mailpixel: recorded as the recipients of {summary.email_id}", file=sys.stderr)
    return 0


def _write_out_dir(
    email: Instrumenter, rows: Iterable[tuple[dict[str, str], str]], out: Path, email_id: str
) -> InstrumentSummary:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "recipients.csv").open("w", encoding="utf-8", newline="") as manifest:
        # Opened in a spreadsheet like `opens --format csv`, so written the same way: no cell
        # (a recipient's name, an ID from a signup form) can start a formula.
        writer = csv.writer(manifest)
        columns: list[str] = []

        def write(number: int, row: dict[str, str], rendered: str) -> None:
            name = f"{number:06d}.html"
            (out / name).write_bytes(_bytes(rendered))
            if not columns:
                columns.extend(row)
                writer.writerow([csv_cell(column) for column in [*columns, FILE_COLUMN]])
            writer.writerow([csv_cell(row.get(column)) for column in columns] + [name])

        return instrument_rows(email, rows, write, email_id)
