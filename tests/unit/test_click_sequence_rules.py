"""The sequence rules on their own (`sequence_verdicts`): what each catches, the hard negatives
each must leave alone, and the thresholds read from the environment."""

from __future__ import annotations

from typing import Any

import pytest

from mailpixel.config import ConfigError, Settings
from mailpixel.enrich.classify.clicks import SequenceClick, classify_click, sequence_verdicts
from mailpixel.enrich.classify.ranges import shipped_ranges
from mailpixel.enrich.clicks import sequence_rules

RULES = sequence_rules(Settings())  # the defaults


def clicks(
    *steps: tuple[float, str, str | None] | tuple[float, str, str | None, bool],
) -> list[SequenceClick]:
    return [
        SequenceClick(f"k{n}", step[0], step[1], step[2], bool(step[3]) if len(step) > 3 else False)
        for n, step in enumerate(steps)
    ]


def rules_of(found: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {key: evidence["rule"] for key, evidence in found.items()}


def test_burst_needs_k_distinct_links_within_s_seconds():
    assert rules_of(sequence_verdicts(clicks((0, "a", "x"), (0.5, "b", "x"), (1.9, "c", "x")), RULES)) == {
        "k0": "burst",
        "k1": "burst",
        "k2": "burst",
    }
    # Two links (tabs) are no burst; three over more than S seconds are none either.
    assert sequence_verdicts(clicks((0, "a", "x"), (0.5, "b", "x")), RULES) == {}
    assert sequence_verdicts(clicks((0, "a", "x"), (1.5, "b", "x"), (3.1, "c", "x")), RULES) == {}
    # The same link three times is one link.
    assert sequence_verdicts(clicks((0, "a", "x"), (0.1, "a", "x"), (0.2, "a", "x")), RULES) == {}


def test_multi_source_is_one_link_from_two_addresses_within_a_second():
    found = sequence_verdicts(clicks((10, "a", "x"), (10.6, "a", "y")), RULES)
    assert rules_of(found) == {"k0": "multi_source", "k1": "multi_source"}
    assert found["k0"]["other_click"] == "k1"
    assert sequence_verdicts(clicks((10, "a", "x"), (10.6, "a", "x")), RULES) == {}  # a double click
    assert sequence_verdicts(clicks((10, "a", "x"), (600, "a", "y")), RULES) == {}  # wifi, then cellular
    assert sequence_verdicts(clicks((10, "a", None), (10.2, "a", "y")), RULES) == {}  # no address stored


def test_honeypot_marks_the_recipients_clicks_within_its_window_only():
    found = sequence_verdicts(
        clicks(
            (100, "a", "x"), (120, "hp", "x", True), (140, "b", "x"), (151, "c", "y"), (3 * 3600, "a", "z")
        ),
        RULES,
    )
    assert rules_of(found) == {"k0": "honeypot", "k2": "honeypot"}
    assert found["k0"]["honeypot_click"] == "k1" and found["k0"]["seconds_from_honeypot"] == -20
    # The honeypot click itself is judged on its own (the `honeypot` per-click rule), not here.
    assert "k1" not in found


def test_the_hard_negatives_stay_human():
    for sequence in (
        clicks((1200, "a", "x")),  # one click 20 minutes after delivery
        clicks((600, "a", "x"), (640, "b", "x")),  # two clicks 40 s apart
        clicks((5 * 3600, "a", "20.98.1.10")),  # behind Microsoft 365 egress, hours later
    ):
        assert sequence_verdicts(sequence, RULES) == {}


def test_a_honeypot_link_is_a_machine_click_whatever_its_user_agent():
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"
    )
    verdict = classify_click(chrome, "81.2.69.142", {"name": "Chrome"}, shipped_ranges(), honeypot=True)
    assert (verdict.machine_click, verdict.machine_reason, verdict.rule) == (
        True,
        "security_scanner",
        "honeypot",
    )
    assert not classify_click(chrome, "81.2.69.142", {"name": "Chrome"}, shipped_ranges()).machine_click


def test_thresholds_come_from_the_environment():
    settings = Settings.from_env(
        {
            "MAILPIXEL_CLICK_BURST_LINKS": "4",
            "MAILPIXEL_CLICK_BURST_SECONDS": "3",
            "MAILPIXEL_CLICK_MULTI_SOURCE_SECONDS": "0.5",
            "MAILPIXEL_CLICK_HONEYPOT_WINDOW_SECONDS": "10",
            "MAILPIXEL_WEBHOOK_SETTLE_SECONDS": "120",
        }
    )
    assert (settings.click_burst_links, settings.click_burst_seconds) == (4, 3.0)
    assert (settings.click_multi_source_seconds, settings.click_honeypot_window_seconds) == (0.5, 10.0)
    assert settings.webhook_settle_seconds == 120
    with pytest.raises(ConfigError, match="MAILPIXEL_CLICK_BURST_LINKS"):  # one link would flag every click
        Settings.from_env({"MAILPIXEL_CLICK_BURST_LINKS": "1"})
