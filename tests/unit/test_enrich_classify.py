"""User-agent parsing and the machine/proxy rules, over a corpus of real user agents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mailpixel.enrich.classify.machine import Verdict, classify
from mailpixel.enrich.classify.ranges import shipped_ranges
from mailpixel.enrich.classify.user_agents import is_bare, parse_client
from mailpixel.enrich.handler import enrichment_for
from tests.conftest import FIXTURES

CORPUS: list[dict[str, Any]] = json.loads((FIXTURES / "user_agents.json").read_text())["cases"]
RULES_SEEN: set[str] = set()


@pytest.mark.parametrize("case", CORPUS, ids=[c["label"] for c in CORPUS])
def test_corpus_client_and_verdict(case):
    enrichment, lookup_ip = enrichment_for({"user_agent": case["ua"], "ip": case["ip"]}, shipped_ranges())
    assert lookup_ip == case["ip"]
    for key, expected in case["client"].items():
        assert enrichment["client"][key] == expected, (key, enrichment["client"])
    assert set(enrichment["client"]) == {"name", "version", "os", "device"}
    assert enrichment["machine_open"] is case["machine_open"]
    assert enrichment["machine_reason"] == case["machine_reason"]
    assert enrichment["proxy"] == case["proxy"]


def test_corpus_covers_every_rule():
    """Each rule in machine.classify fires for at least one real user agent of the corpus."""
    ranges = shipped_ranges()
    rules = set()
    for case in CORPUS:
        client = parse_client(case["ua"])
        rules.add(classify(case["ua"], case["ip"], client, ranges).rule.split(":")[0])
    assert rules >= {
        "apple_mpp",
        "gmail_proxy",
        "yahoo_proxy",
        "scanner_user_agent",
        "scanner_range",
        "empty_user_agent",
        "bot_user_agent",
        "bare_user_agent",
        "apple_relay",
        "human",
    }


def test_gmail_proxy_recognised_by_its_range_and_fixed_signature():
    ua = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0"
    verdict = classify(ua, "66.249.84.10", parse_client(ua), shipped_ranges())
    signature = "Windows NT 5.1; rv:11.0) Gecko Firefox/11.0"
    assert verdict == Verdict(False, None, "gmail", "gmail_proxy_range", signature, "google")
    assert classify(ua, "81.2.69.142", parse_client(ua), shipped_ranges()).proxy is None
    # Named Gmail, not Firefox: the browser part of the proxy's UA is fake (issue 13).
    enrichment, _ = enrichment_for({"user_agent": ua, "ip": "66.249.84.10"}, shipped_ranges())
    assert enrichment["client"] == {"name": "Gmail", "version": None, "os": None, "device": None}
    assert enrichment["evidence"] == {
        "rule": "gmail_proxy_range",
        "ua_token": signature,
        "range_owner": "google",
    }


def test_pending_ip_wins_over_the_truncated_ip():
    """With MAILPIXEL_IP_STORAGE=truncated the stored ip is a /24; the full one is pending_ip."""
    event = {"user_agent": "Mozilla/5.0", "ip": "17.58.101.0", "pending_ip": "17.58.101.7"}
    enrichment, lookup_ip = enrichment_for(event, shipped_ranges())
    assert lookup_ip == "17.58.101.7"
    assert enrichment["machine_reason"] == "apple_mpp"


def test_scanner_range_over_ipv6_and_ipv4_mapped():
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
    ranges = shipped_ranges()
    assert (
        classify(ua, "2a01:111:f400:fe00::1", parse_client(ua), ranges).machine_reason == "security_scanner"
    )
    assert (
        classify(ua, "::ffff:209.222.82.250", parse_client(ua), ranges).machine_reason == "security_scanner"
    )
    assert classify(ua, "not-an-ip", parse_client(ua), ranges) == Verdict(False)


@pytest.mark.parametrize("ua", ["", "   ", "Mozilla/5.0", "mozilla/5.0 "])
def test_bare_user_agents(ua):
    assert is_bare(ua)


def test_full_user_agent_is_not_bare():
    assert not is_bare("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")


def test_parse_is_cached_and_returns_fresh_dicts():
    first = parse_client("Outlook-Android/2.0")
    first["name"] = "changed"
    assert parse_client("Outlook-Android/2.0")["name"] == "Outlook"
