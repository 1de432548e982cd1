"""(9) Click latency through the real handler vs one raw PutItem, and (10) instrumenting throughput.

9. As `latency.py` does for the pixel: `/click` with a signed URL through the real
   `handler.pixel` (HTTP API v2 event: serverless-wsgi, Flask, the signature check, the
   conditional write into the clicks table, the 302), interleaved in random order with one raw
   `PutItem` of a same-shaped click item into the same table with the same kind of client (the
   floor). Same target as the pixel: median ratio <= 1.10.
10. `mailpixel.ops.instrument.Instrumenter` on a 50-link email for 10,000 recipients: the
   template is tokenized once, then each recipient's email is rendered (50 signed click URLs and
   a signed pixel). The floor, measured in the same run, is one bare HMAC-SHA256 per URL over the
   same canonical strings: what any signer must at least compute.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.interleave import Calls, floor_fields, interleaved
from bench.lambda_pixel import invoker, load_handler, settings_env, stderr_to
from bench.stack import fresh_settings, http_api_event
from bench.stats import ratio, summary_ms, table
from mailpixel.aws import dynamodb_client
from mailpixel.model.clicks import build_click_event
from mailpixel.ops.instrument import Instrumenter
from mailpixel.ops.local.stack import DynamoDBLocal
from mailpixel.signing import canonical, make_click_url

TARGET = 1.10
NAMES = ("click_latency", "instrument")
SECRET = "bench-click-secret"
DESTINATION = "https://shop.example.com/sale/2026?utm_source=mail&utm_campaign=bench#offer"


def _click_event(i: int) -> dict[str, Any]:
    url = make_click_url("https://px.example.com", f"e{i % 200}", f"u{i % 50}", DESTINATION, SECRET)
    event = http_api_event({}, request_id=uuid.uuid4().hex)
    event["rawQueryString"] = url.split("?", 1)[1]
    event["queryStringParameters"] = None
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/click"
    event["routeKey"] = "GET /click"
    return event


def _latency(server: DynamoDBLocal, work: Path, samples: int, warmup: int) -> dict[str, Any]:
    settings = fresh_settings(server, work / "click-data")
    env = {**settings_env(settings), "MAILPIXEL_CLICKS_TABLE": settings.clicks_table}
    invoke = invoker(load_handler({**env, "MAILPIXEL_SIGNING_SECRETS": SECRET}))
    client = dynamodb_client(settings, fast=True)

    def click_call(event: dict[str, Any]) -> None:
        assert invoke(event)["statusCode"] == 302

    def item_input(i: int) -> dict[str, Any]:
        return build_click_event(**floor_fields(i), url=DESTINATION, method="GET", signed=True).to_item()

    def floor_call(item: dict[str, Any]) -> None:
        client.put_item(TableName=settings.clicks_table, Item=item)

    calls: Calls = {"click": (_click_event, click_call), "floor": (item_input, floor_call)}
    times = interleaved(calls, samples=samples, warmup=warmup, seed=7)
    click, floor = summary_ms(times["click"]), summary_ms(times["floor"])
    return {
        "samples": samples,
        "click_ms": click,
        "floor_ms": floor,
        "median_ratio": ratio(click["p50"], floor["p50"]),
        "p99_ratio": ratio(click["p99"], floor["p99"]),
        "target_median_ratio": TARGET,
        "meets_target": ratio(click["p50"], floor["p50"]) <= TARGET,
    }


def run_latency(server: DynamoDBLocal, work: Path, samples: int = 2000, warmup: int = 200) -> dict[str, Any]:
    with stderr_to(work / "click-latency.log"):
        return _latency(server, work, samples, warmup)


def email_html(links: int) -> str:
    rows = "\n".join(
        f'<tr><td><a href="https://shop.example.com/p/{n}?utm_source=mail&amp;utm_content=l{n}" '
        f'style="color:#0a66c2">Product {n}</a> &mdash; only today</td></tr>'
        for n in range(links)
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Bench</title></head>\n'
        f'<body><table role="presentation">\n{rows}\n</table>'
        '<a href="mailto:help@example.com">help</a>\n'
        '<a href="{{unsubscribe}}">unsubscribe</a>\n</body></html>\n'
    )


def run_instrument(recipients: int = 10_000, links: int = 50) -> dict[str, Any]:
    source = email_html(links)
    users = [f"user-{n}@example.com" for n in range(recipients)]
    started = time.perf_counter()
    email = Instrumenter(source, email_id="bench-2026-11", base_url="https://px.example.com", secret=SECRET)
    parsed = time.perf_counter() - started
    size = 0
    started = time.perf_counter()
    for user in users:
        size += len(email.render(user))
    rendered = time.perf_counter() - started
    # The floor: one HMAC-SHA256 per URL of the same canonical strings, nothing else.
    messages = [
        canonical({"email_id": "bench-2026-11", "url": link.destination, "user_id": user}).encode()
        for user in users[: max(1, recipients // 10)]
        for link in email.template.links
    ]
    key = SECRET.encode()
    started = time.perf_counter()
    for message in messages:
        hmac.new(key, message, hashlib.sha256).digest()
    floor_per_url = (time.perf_counter() - started) / len(messages)
    urls = recipients * (len(email.template.links) + 1)
    floor_seconds = floor_per_url * urls
    return {
        "recipients": recipients,
        "links_per_email": len(email.template.links),
        "tokenize_ms": round(parsed * 1000, 3),
        "render_seconds": round(rendered, 3),
        "recipients_per_second": round(recipients / rendered),
        "signed_urls_per_second": round(urls / rendered),
        "output_megabytes": round(size / 1e6, 1),
        "floor_hmac_seconds": round(floor_seconds, 3),
        "ratio_to_floor": ratio(rendered, floor_seconds),
    }


def steps(
    on_fresh_dynamodb: Callable[[Callable[[DynamoDBLocal], dict[str, Any]]], Callable[[], dict[str, Any]]],
    work: Path,
    quick: bool,
) -> dict[str, Callable[[], dict[str, Any]]]:
    """`bench/__main__.py`'s steps for this module."""
    return {
        "click_latency": on_fresh_dynamodb(
            lambda db: run_latency(db, work, samples=300 if quick else 2000, warmup=50 if quick else 200)
        ),
        "instrument": lambda: run_instrument(recipients=1000 if quick else 10_000),
    }


def report(results: dict[str, Any]) -> list[str]:
    out = []
    r = results.get("click_latency")
    if r and "error" not in r:
        series = (("handler.pixel GET /click", r["click_ms"]), ("raw PutItem (floor)", r["floor_ms"]))
        rows = [[label, s["p50"], s["p90"], s["p99"], s["mean"]] for label, s in series]
        rows.append(["ratio", r["median_ratio"], "", r["p99_ratio"], ""])
        out.append(
            table(
                "12. Click latency: real handler.pixel (/click, signed, 302) vs one raw PutItem into the "
                f"clicks table, {r['samples']} each, interleaved",
                ["", "median ms", "p90 ms", "p99 ms", "mean ms"],
                rows,
            )
            + f"target median ratio <= {r['target_median_ratio']}: "
            + f"{'met' if r['meets_target'] else 'MISSED'}\n"
        )
    r = results.get("instrument")
    if r and "error" not in r:
        out.append(
            table(
                f"13. Instrumenting: {r['recipients']} recipients x {r['links_per_email']}-link email",
                [
                    "tokenize ms",
                    "render s",
                    "recipients/s",
                    "signed URLs/s",
                    "MB out",
                    "HMAC floor s",
                    "ratio",
                ],
                [
                    [
                        r["tokenize_ms"],
                        r["render_seconds"],
                        r["recipients_per_second"],
                        r["signed_urls_per_second"],
                        r["output_megabytes"],
                        r["floor_hmac_seconds"],
                        r["ratio_to_floor"],
                    ]
                ],
            )
        )
    return out
