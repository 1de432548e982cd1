"""Issue 11, the parts that need no server: CSV neutralisation, dates that overflow, expiry of
signed URLs, IDs bounded in bytes, metrics flushed at the end of an invocation, and the
runtime dependencies `pip install .` gets."""

from __future__ import annotations

import csv
import io
import json
import logging
import tomllib
from datetime import date
from pathlib import Path

import pytest

from mailpixel.api.stats import day_range
from mailpixel.logs import Metrics
from mailpixel.model.events import MAX_ID_BYTES, cut_id, id_fits
from mailpixel.model.keys import geo_key, opener_sk
from mailpixel.model.query import BadQuery, time_bound
from mailpixel.ops import cli, output
from mailpixel.pixel.validation import parse_pixel_params
from mailpixel.signing import make_url, verify
from tests.signed_urls import NEW, NOW, pairs_of, url_query

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400

# Item 4: CSV formula injection.

HOSTILE = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "=cmd|' /C calc'!A0"]


@pytest.mark.parametrize("cell", HOSTILE)
def test_csv_cells_that_a_spreadsheet_would_evaluate_are_neutralised(cell):
    out = io.StringIO()
    output.write_rows([{"user_agent": cell, "email_id": "e1"}], "csv", ("email_id", "user_agent"), out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[1] == ["e1", "'" + cell]
    # A delimiter or quote in the value cannot open another cell.
    out = io.StringIO()
    output.write_rows([{"user_agent": '=1,"=2"', "email_id": "e1"}], "csv", ("email_id", "user_agent"), out)
    assert list(csv.reader(io.StringIO(out.getvalue())))[1] == ["e1", '\'=1,"=2"']


def test_csv_leaves_ordinary_cells_alone():
    out = io.StringIO()
    output.write_rows(
        [{"opened_at": "2026-11-24T00:00:00.000Z", "ip": "2001:db8::"}], "csv", ("opened_at", "ip"), out
    )
    assert list(csv.reader(io.StringIO(out.getvalue())))[1] == ["2026-11-24T00:00:00.000Z", "2001:db8::"]


# Item 7: dates at the edges of datetime's range are a 400, never an OverflowError.

EDGE_DATES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("value", EDGE_DATES)
def test_time_bound_at_the_edges_is_a_bad_query(value):
    with pytest.raises(BadQuery, match="out of range|not an ISO"):
        time_bound(value)


@pytest.mark.parametrize(
    ("since", "until"), [(None, "0001-01-01"), ("9999-12-31", None), ("0001-01-01T00:00:00+14:00", None)]
)
def test_day_range_at_the_edges_is_a_bad_query(since, until):
    with pytest.raises(BadQuery):
        day_range(since, until, today=date(2026, 11, 25))


def test_cli_edge_date_is_a_clean_error(capsys):
    code = cli.main(
        ["opens", "--email-id", "e1", "--since", EDGE_DATES[0], "--endpoint-url", "http://127.0.0.1:9"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("mailpixel: ") and "Traceback" not in err


# Item 9: with a maximum age, `t` is required and cannot lie in the future.


def test_max_age_requires_t():
    undated = pairs_of(url_query(make_url("http://h", "e1", "u1", NEW)))
    assert verify(undated, [NEW], max_age_seconds=30 * DAY, now=NOW) == (False, "t_missing")
    assert verify(undated, [NEW], now=NOW) == (True, "ok")  # no maximum age: t stays optional


def test_max_age_bounds_t_in_the_future_by_a_small_skew():
    soon = pairs_of(url_query(make_url("http://h", "e1", "u1", NEW, t=NOW + 60)))
    millis = pairs_of(url_query(make_url("http://h", "e1", "u1", NEW, t=NOW * 1000)))
    later = pairs_of(url_query(make_url("http://h", "e1", "u1", NEW, t=NOW + DAY)))
    assert verify(soon, [NEW], max_age_seconds=30 * DAY, now=NOW) == (True, "ok")
    assert verify(millis, [NEW], max_age_seconds=30 * DAY, now=NOW) == (False, "t_future")
    assert verify(later, [NEW], max_age_seconds=30 * DAY, now=NOW) == (False, "t_future")


def test_cli_url_adds_t_when_a_maximum_age_is_set(monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", NEW)
    monkeypatch.setenv("MAILPIXEL_SIGNATURE_MAX_AGE_DAYS", "30")
    assert cli.main(["url", "--email-id", "e1", "--user-id", "u1", "--format", "json"]) == 0
    url = json.loads(capsys.readouterr().out)["url"]
    assert "t" in dict(pairs_of(url_query(url)))
    assert verify(pairs_of(url_query(url)), [NEW], max_age_seconds=30 * DAY)[0]


# Item 3: IDs are bounded in UTF-8 bytes, so every key that holds one fits DynamoDB's limits.

WIDE = "\U0001f600"  # four bytes in UTF-8


def test_every_key_built_from_a_longest_id_fits_dynamodb():
    longest = WIDE * (MAX_ID_BYTES // 4)
    assert id_fits(longest) and not id_fits(longest + "x")
    # Sort keys may hold 1024 bytes, partition keys 2048: the opener marker is the tightest.
    assert len(opener_sk(longest).encode()) <= 1024


def test_pixel_cuts_ids_by_bytes_at_a_character_boundary():
    params = parse_pixel_params({"email_id": [WIDE * 256], "user_id": ["é" * 400]})
    assert len(params.email_id.encode()) <= MAX_ID_BYTES and params.email_id == WIDE * (MAX_ID_BYTES // 4)
    assert len(params.user_id.encode()) <= MAX_ID_BYTES and set(params.user_id) == {"é"}
    assert "truncated:email_id" in params.reasons and "truncated:user_id" in params.reasons
    assert cut_id("a" * 10) == "a" * 10


def test_make_url_refuses_ids_the_pixel_would_cut():
    with pytest.raises(ValueError, match="bytes"):
        make_url("http://h", WIDE * 256, "u1", NEW)
    with pytest.raises(ValueError, match="bytes"):
        make_url("http://h", "e1", "x" * (MAX_ID_BYTES + 1), NEW)


def test_geo_key_is_unchanged_for_full_addresses():
    assert geo_key("203.0.113.7")["pk"]["S"] == "geo#203.0.113.7"


# Also: metrics are flushed at the end of an invocation once a minute has passed.


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_flush_if_due_emits_pending_tallies_after_the_interval():
    logger = logging.getLogger("mailpixel.test.metrics")
    lines = _Lines()
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        metrics = Metrics(logger, flush_seconds=0.0)
        metrics._flushed_at += 3600  # as if the last flush had just happened: nothing is due
        metrics.tally("open_stored")
        assert not lines.records
        metrics._flushed_at -= 7200  # a minute (and more) has passed, with no request since
        metrics.flush_if_due()
        assert [r.getMessage() for r in lines.records] == ["metrics"]
        assert lines.records[0].__dict__["open_stored"] == 1
        metrics.flush_if_due()
        assert len(lines.records) == 1  # nothing pending: no empty line
    finally:
        logger.removeHandler(lines)


# Also: `pip install .` gets a CLI that imports.


def test_pyproject_declares_the_runtime_dependencies_as_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        d.split(">")[0].split("<")[0].split("=")[0].split("~")[0].strip().lower()
        for d in project["dependencies"]
    }
    pinned = {
        line.split("==")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert pinned | {"boto3"} <= declared
    assert not any("==" in d for d in project["dependencies"])
