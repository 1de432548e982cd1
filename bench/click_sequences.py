"""(14) Click sequences: the sourced corpus `tests/fixtures/click_sequences.json` through the real
`/click` (and `/pixel` for opens) of the Lambda app (serverless-wsgi with API Gateway HTTP API
events, each with its own arrival time and source address), the clicks table's stream through
the local poller into the real click enrichment (per-click verdicts, then the sequence rules and
their revisions), against DynamoDB Local.

Two figures, each with every miss listed: scanner clicks flagged (target >= 95%) and human clicks
kept human (target >= 99%). A unit of measure is one click; a sequence's clicks are one
recipient's clicks of one email. The floor is checked by tests/integration/test_click_sequences.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import serverless_wsgi

from bench.lambda_pixel import LambdaContext
from bench.stack import fresh_settings, http_api_event
from mailpixel.aws import dynamodb_client
from mailpixel.config import Settings
from mailpixel.ddb.codec import plain_item
from mailpixel.ddb.store import paged
from mailpixel.enrich.clicks import build_click_handler
from mailpixel.ops.local.stack import DynamoDBLocal
from mailpixel.ops.local.stream_poller import StreamPoller
from mailpixel.pixel.app import create_app
from mailpixel.signing import ClickSigner, make_url

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "click_sequences.json"
NAMES = ("click_sequences",)
# Small stream batches, so a sequence's clicks arrive in several batches, as they do in AWS when a
# scanner's clicks span the function's 2 s batching window: later clicks revise earlier ones.
BATCH_SIZE = 4
TARGETS = {"scanner_flagged": 95.0, "human_kept": 99.0}
SECRET = "bench-sequence-secret"
BASE = "https://px.example.com"
EMAIL = "sequences-2026-12"
# The URLs were made (`t`) this long before delivery.
ISSUED_BEFORE_DELIVERY = 30


def load_corpus(path: Path = CORPUS) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def link_url(link: Any) -> str:
    return f"https://shop.example.com/p/{link}?utm_source=mail"


def click_path(user: str, link: Any, issued: int) -> str:
    """A signed click URL's path and query, made as `instrument` makes them; the honeypot link
    carries the signed `hp=1`."""
    signer = ClickSigner(BASE, EMAIL, SECRET, issued, scoped=False)
    parts = urlsplit(signer.url(link_url(link), user, honeypot=link == "honeypot"))
    return f"{parts.path}?{parts.query}"


def lambda_event(
    path: str, *, request_id: str, ip: str, ua: str, epoch_ms: int, method: str
) -> dict[str, Any]:
    """API Gateway's HTTP API event for one request that arrived at `epoch_ms` from `ip`."""
    route, query = path.split("?", 1)
    event = http_api_event({}, request_id=request_id, source_ip=ip)
    event["rawPath"] = event["requestContext"]["http"]["path"] = route
    event["rawQueryString"], event["queryStringParameters"] = query, None
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {route}"
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["timeEpoch"] = epoch_ms
    event["headers"]["user-agent"] = event["requestContext"]["http"]["userAgent"] = ua
    return event


def send(settings: Settings, corpus: Mapping[str, Any], delivered: int) -> dict[str, dict[str, Any]]:
    """Every request of the corpus through the real app; the expected verdict per request id."""
    app = create_app(settings.with_overrides(signing_secrets=(SECRET,)))
    agents = corpus["user_agents"]
    issued = delivered - ISSUED_BEFORE_DELIVERY
    expected: dict[str, dict[str, Any]] = {}
    for n, sequence in enumerate(corpus["sequences"]):
        user = f"seq-{n:02d}"
        for i, step in enumerate(sorted(sequence["events"], key=lambda s: s["at"])):
            request_id = f"{sequence['name']}-{i}"
            if step.get("kind") == "open":
                url = make_url(BASE, EMAIL, user, SECRET, t=issued)
                path = f"{urlsplit(url).path}?{urlsplit(url).query}"
            else:
                path = click_path(user, step["link"], issued)
                expected[request_id] = {"sequence": sequence["name"], "step": i, **step}
            method = step.get("method", "GET")
            event = lambda_event(
                path,
                request_id=request_id,
                ip=step["ip"],
                ua=agents[step["ua"]],
                epoch_ms=int((delivered + step["at"]) * 1000),
                method=method,
            )
            status = serverless_wsgi.handle_request(app, event, LambdaContext())["statusCode"]
            if status not in (200, 302):
                raise RuntimeError(f"{request_id}: HTTP {status}")
    return expected


def measure(settings: Settings, corpus: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the corpus on `settings`' (existing, empty) tables; the two figures and their misses."""
    corpus = corpus or load_corpus()
    ddb = dynamodb_client(settings)
    delivered = int(time.time()) - 86_400
    started = time.perf_counter()
    expected = send(settings, corpus, delivered)
    handler = build_click_handler(settings, ddb=ddb, provider=None, backoff_sleep_limit_seconds=0)
    poller = StreamPoller(
        settings, handler, ddb=ddb, table=settings.clicks_table, batch_size=BATCH_SIZE, retry_delay=0.01
    )
    poller.wait_idle(120)
    stored = {
        item["request_id"]: item
        for item in map(plain_item, paged(ddb.scan, TableName=settings.clicks_table, ConsistentRead=True))
    }
    figures: dict[str, dict[str, Any]] = {}
    for figure, want in (("scanner_flagged", "machine"), ("human_kept", "human")):
        cases = {rid: case for rid, case in expected.items() if case["expect"] == want}
        misses = []
        for rid, case in cases.items():
            item = stored.get(rid, {})
            got = (
                "machine"
                if item.get("machine_click")
                else ("human" if item.get("enriched_at") else "missing")
            )
            if got != want:
                rule = (item.get("evidence") or {}).get("rule")
                misses.append({"sequence": case["sequence"], "step": case["step"], "got": got, "rule": rule})
        right = len(cases) - len(misses)
        figures[figure] = {
            "clicks": len(cases),
            "percent": round(100 * right / len(cases), 2) if cases else None,
            "target": TARGETS[figure],
            "misses": misses,
        }
    rules: dict[str, int] = {}
    for item in stored.values():
        rule = str((item.get("evidence") or {}).get("rule"))
        rules[rule] = rules.get(rule, 0) + 1
    return {
        "sequences": len(corpus["sequences"]),
        "figures": figures,
        "rules": dict(sorted(rules.items())),
        "revised_after_counting": sum(1 for item in stored.values() if item.get("verdict_version")),
        "meets_targets": all(
            f["percent"] is not None and f["percent"] >= f["target"] for f in figures.values()
        ),
        "seconds": round(time.perf_counter() - started, 2),
    }


def run(server: DynamoDBLocal, work: Path) -> dict[str, Any]:
    return measure(fresh_settings(server, work / "sequence-data"))


def steps(on_fresh_dynamodb: Any, work: Path, quick: bool) -> dict[str, Any]:
    """`bench/__main__.py`'s steps for this module (`--quick` changes nothing: the corpus is small)."""
    return {"click_sequences": on_fresh_dynamodb(lambda db: run(db, work))}


def report(results: Mapping[str, Any]) -> list[str]:
    r = results.get("click_sequences")
    if not r or "error" in r:
        return []
    lines = [
        f"14. Click sequences: {r['sequences']} sourced sequences through the real /click and click "
        "enrichment (tests/fixtures/click_sequences.json)"
    ]
    for name, f in r["figures"].items():
        met = "met" if f["percent"] is not None and f["percent"] >= f["target"] else "MISSED"
        lines.append(f"  {name}: {f['percent']}% of {f['clicks']} clicks (target >= {f['target']}%: {met})")
        for miss in f["misses"]:
            lines.append(
                f"    miss: {miss['sequence']} step {miss['step']}: got {miss['got']} ({miss['rule']})"
            )
    lines.append("  final rules: " + ", ".join(f"{k} {v}" for k, v in r["rules"].items()))
    lines.append(f"  clicks counted human, then revised by a later click: {r['revised_after_counting']}")
    return ["\n".join(lines) + "\n"]
