"""(7) Verdict accuracy on real traffic: the sourced corpus `tests/fixtures/ua_corpus.json`
through the real classification (`mailpixel.enrich.handler.enrichment_for`, which parses the
client and runs the rules against the shipped IP ranges).

Four figures, each with every miss listed so a regression names its case:
- verdict: machine or person (`machine_open`), over every case;
- reason: `machine_reason`, over every case (null for people);
- proxy: `proxy`, over every case;
- client family: `client.name`, over people, image proxies and prefetchers: the cases whose client
  mailpixel names and counts. A machine fetcher's client name is counted nowhere (the aggregates
  count clients over human opens only), so it is not scored.

No I/O but reading the corpus: it runs in the unit tests (with floors) and in `make bench`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mailpixel.enrich.classify.ranges import IpRanges, shipped_ranges
from mailpixel.enrich.handler import enrichment_for

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ua_corpus.json"
FAMILY_SCORED = frozenset(
    {"mail_client_desktop", "mail_client_mobile", "webmail_browser", "image_proxy", "prefetch"}
)
MACHINE_FETCHERS = frozenset({"scanner", "prefetch", "link_preview", "http_library", "headless", "crawler"})
MAIL_CLIENTS = frozenset({"mail_client_desktop", "mail_client_mobile", "webmail_browser"})
# (figure, expected key, enrichment getter)
FIGURES: tuple[tuple[str, str, Callable[[Mapping[str, Any]], Any]], ...] = (
    ("verdict", "machine_open", lambda e: e["machine_open"]),
    ("reason", "machine_reason", lambda e: e["machine_reason"]),
    ("proxy", "proxy", lambda e: e["proxy"]),
    ("client_family", "client_family", lambda e: e["client"]["name"]),
)


def load_corpus(path: Path = CORPUS) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def address_of(case: Mapping[str, Any], owners: Mapping[str, Any]) -> str:
    """The address a case is scored from: the source's own, else its owner's representative."""
    return str(case.get("ip") or owners[case["ip_owner"]]["ip"])


def scored(figure: str, case: Mapping[str, Any]) -> bool:
    return figure != "client_family" or case["category"] in FAMILY_SCORED


def measure(corpus: Mapping[str, Any] | None = None, ranges: IpRanges | None = None) -> dict[str, Any]:
    """Accuracy per figure (percent, two decimals) and the misses, in corpus order."""
    corpus = corpus or load_corpus()
    ranges = ranges or shipped_ranges()
    cases = corpus["cases"]
    right = {name: 0 for name, _, _ in FIGURES}
    total = {name: 0 for name, _, _ in FIGURES}
    misses: list[dict[str, Any]] = []
    for case in cases:
        ip = address_of(case, corpus["owners"])
        enrichment, _ = enrichment_for({"user_agent": case["ua"], "ip": ip}, ranges)
        for name, key, get in FIGURES:
            if not scored(name, case):
                continue
            total[name] += 1
            got, want = get(enrichment), case["expected"][key]
            if got == want:
                right[name] += 1
            else:
                misses.append(
                    {
                        "figure": name,
                        "label": case["label"],
                        "expected": want,
                        "got": got,
                        "rule": enrichment["evidence"]["rule"],
                        "ip": ip,
                        "ua": case["ua"],
                    }
                )
    categories = [c["category"] for c in cases]
    return {
        "cases": len(cases),
        "machine_fetchers": sum(1 for c in categories if c in MACHINE_FETCHERS),
        "mail_clients": sum(1 for c in categories if c in MAIL_CLIENTS),
        "accuracy_percent": {name: round(100 * right[name] / total[name], 2) for name in right},
        "right": right,
        "scored": total,
        "misses": misses,
    }


def run() -> dict[str, Any]:
    return measure()


def report(result: Mapping[str, Any]) -> str:
    """The figures as a table, then one line per miss."""
    from bench.stats import table

    rows = [
        [name, result["right"][name], result["scored"][name], result["accuracy_percent"][name]]
        for name, _, _ in FIGURES
    ]
    text = table(
        f"10. Verdict accuracy: {result['cases']} real user agents from named public sources "
        f"({result['machine_fetchers']} machine fetchers, {result['mail_clients']} mail clients), "
        "tests/fixtures/ua_corpus.json",
        ["figure", "right", "scored", "accuracy %"],
        rows,
    )
    lines = [
        f"- {m['figure']}: {m['label']}: expected {m['expected']!r}, got {m['got']!r} "
        f"(rule {m['rule']}, ip {m['ip']})"
        for m in result["misses"]
    ]
    return text + "misses:\n" + ("\n".join(lines) if lines else "- none") + "\n"
