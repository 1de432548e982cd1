"""(1) Pixel latency through the real handler, divided by one raw PutItem (the floor).

All are measured in the same loop, in random order, against the same DynamoDB Local, with the
same kind of client (`dynamodb_client(settings, fast=True)`, as the pixel's). The floor writes
an item of the same shape with no condition: the least any pixel could do. A third series
makes the pixel's own write, conditional on the key being new (what makes a retried request
idempotent), and a fourth is the pixel's whole path without the write (a request with no
`email_id`): the price of the edge (serverless-wsgi, Flask, validation, the log line, the GIF).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from bench.interleave import Calls, floor_fields, interleaved
from bench.lambda_pixel import invoker, load_handler, settings_env, stderr_to
from bench.stack import count_items, fresh_settings, http_api_event
from bench.stats import ratio, summary_ms
from mailpixel.aws import dynamodb_client
from mailpixel.model.events import build_open_event
from mailpixel.ops.local.stack import DynamoDBLocal

TARGET = 1.10
CONDITION = "attribute_not_exists(open_key)"  # as mailpixel.ddb.store.EventStore.put_event


def _measure(server: DynamoDBLocal, work: Path, samples: int = 2000, warmup: int = 200) -> dict[str, Any]:
    settings = fresh_settings(server, work / "latency-data")
    module = load_handler(settings_env(settings))
    invoke = invoker(module)
    client = dynamodb_client(settings, fast=True)

    # Each call's input is made before the clock starts: only the call itself is timed.
    def pixel_input(i: int) -> dict[str, Any]:
        return http_api_event(
            {"user_id": f"u{i % 50}", "email_id": f"e{i % 200}"}, request_id=uuid.uuid4().hex
        )

    def no_write_input(i: int) -> dict[str, Any]:
        return http_api_event({"user_id": f"u{i % 50}"}, request_id=uuid.uuid4().hex)

    def pixel_call(event: dict[str, Any]) -> None:
        assert invoke(event)["statusCode"] == 200

    def item_input(i: int) -> dict[str, Any]:
        return build_open_event(**floor_fields(i)).to_item()

    def floor_call(item: dict[str, Any]) -> None:
        client.put_item(TableName=settings.table, Item=item)

    def conditional_call(item: dict[str, Any]) -> None:
        client.put_item(TableName=settings.table, Item=item, ConditionExpression=CONDITION)

    calls: Calls = {
        "pixel": (pixel_input, pixel_call),
        "floor": (item_input, floor_call),
        "conditional": (item_input, conditional_call),
        # The pixel's whole path but the write: no email_id, so nothing to store.
        "pixel_no_write": (no_write_input, pixel_call),
    }
    before = count_items(settings) + warmup * 3
    times = interleaved(calls, samples=samples, warmup=warmup, seed=5)
    stored = count_items(settings) - before
    pixel, floor, conditional = (summary_ms(times[name]) for name in ("pixel", "floor", "conditional"))
    return {
        "samples": samples,
        "pixel_ms": pixel,
        "floor_ms": floor,
        "conditional_put_ms": conditional,
        "pixel_no_write_ms": summary_ms(times["pixel_no_write"]),
        "median_ratio": ratio(pixel["p50"], floor["p50"]),
        "p99_ratio": ratio(pixel["p99"], floor["p99"]),
        "conditional_over_floor_median": ratio(conditional["p50"], floor["p50"]),
        "pixel_over_conditional_median": ratio(pixel["p50"], conditional["p50"]),
        "target_median_ratio": TARGET,
        "meets_target": ratio(pixel["p50"], floor["p50"]) <= TARGET,
        "items_written": stored,
        "items_expected": 3 * samples,
    }


def run(server: DynamoDBLocal, work: Path, samples: int = 2000, warmup: int = 200) -> dict[str, Any]:
    with stderr_to(work / "latency.log"):
        return _measure(server, work, samples, warmup)
