"""Click verdicts against a corpus of people, link scanners and bots, with their evidence."""

from __future__ import annotations

import json

import pytest

from mailpixel.enrich.classify.clicks import classify_click, seconds_since_issue
from mailpixel.enrich.classify.ranges import shipped_ranges
from mailpixel.enrich.classify.user_agents import parse_client
from tests.conftest import FIXTURES

CORPUS = json.loads((FIXTURES / "click_corpus.json").read_text())["clicks"]


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_click_corpus(case):
    ranges = shipped_ranges()
    verdict = classify_click(
        case["ua"],
        case["ip"],
        parse_client(case["ua"]),
        ranges,
        method=case["method"],
        seconds=case["seconds"],
    )
    assert (verdict.machine_click, verdict.machine_reason, verdict.rule) == (
        case["machine_click"],
        case.get("machine_reason"),
        case["rule"],
    )
    evidence = verdict.evidence
    assert evidence["rule"] == case["rule"]
    assert evidence.get("ua_token") == case.get("ua_token")
    assert evidence.get("range_owner") == ranges.owner(case["ip"])
    assert evidence.get("seconds_since_issue") == case["seconds"]


def test_corpus_covers_every_rule_and_both_outcomes():
    rules = {c["rule"].split(":")[0] for c in CORPUS}
    assert rules >= {
        "human",
        "scanner_user_agent",
        "scanner_range",
        "head_request",
        "too_fast",
        "empty_user_agent",
        "bot_user_agent",
        "bare_user_agent",
    }


@pytest.mark.parametrize(
    ("issued", "at", "expected"),
    [(1_767_225_600, 1_767_225_603.9, 3), (1_767_225_600, None, None), (None, 1.0, None), ("12", 20.0, None)],
)
def test_seconds_since_issue(issued, at, expected):
    assert seconds_since_issue(issued, at) == expected
