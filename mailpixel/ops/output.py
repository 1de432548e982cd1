"""How the CLI writes what it reads: rows as a table, JSON or CSV (with cells no spreadsheet
runs), a progress line on a terminal, text safe to print.

Shared by every command that prints rows (`opens`, `clicks`, `stats`, `instrument`'s manifest),
below all of them, so none imports another command's module for it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, TextIO, get_args

# A spreadsheet evaluates a cell that starts with one of these as a formula, and every recipient
# writes their own User-Agent (and a sender's IDs reach here too).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def csv_cell(value: Any) -> str:
    """A cell no spreadsheet runs (OWASP, CSV injection): a leading formula character gets a
    `'` before it, which spreadsheets read as "this is text" and do not show."""
    text = _cell(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


RowFormat = Literal["table", "json", "csv"]
ROW_FORMATS: tuple[str, ...] = get_args(RowFormat)


def write_rows(rows: Iterable[dict[str, Any]], fmt: RowFormat, columns: Sequence[str], out: TextIO) -> int:
    """Write rows as `table`, `json` (one array) or `csv`; streams for json and csv."""
    count = 0
    if fmt == "json":
        out.write("[")
        for count, row in enumerate(rows, start=1):
            out.write(("\n  " if count == 1 else ",\n  ") + json.dumps(row, sort_keys=True, default=str))
        out.write("\n]\n" if count else "]\n")
        return count
    if fmt == "csv":
        # RFC 4180 quoting (a cell with a comma, quote or line break is quoted, quotes doubled),
        # so no delimiter or quote in a value can open a new cell.
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([csv_cell(row.get(c)) for c in columns])
            count += 1
        return count
    table = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [min(40, max([len(c)] + [len(r[i]) for r in table])) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for r in table:
        cells = [(v if len(v) <= w else v[: w - 1] + "…").ljust(w) for v, w in zip(r, widths, strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")
    return len(table)


def progress(
    rows: Iterable[dict[str, Any]], out: TextIO, total: int | None = None
) -> Iterator[dict[str, Any]]:
    """Pass rows through, redrawing a one-line progress report on `out` (a terminal)."""
    import time

    count, started, drawn = 0, time.monotonic(), 0.0

    def draw(final: bool = False) -> None:
        rate = count / max(time.monotonic() - started, 1e-6)
        line = f"{count:,} rows · {rate:,.0f} rows/s"
        if total:
            done = min(count / total, 1.0)
            line = f"[{'#' * int(done * 30):<30}] {done:4.0%} " + line
        out.write("\r" + line + ("\n" if final else ""))
        out.flush()

    for row in rows:
        count += 1
        if time.monotonic() - drawn > 0.1:
            drawn = time.monotonic()
            draw()
        yield row
    draw(final=True)


def printable(text: str) -> str:
    """Text for a terminal: a control character (an escape sequence in a URL or an ID) is
    shown escaped, never sent to the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate} ({rate:.2%})"
