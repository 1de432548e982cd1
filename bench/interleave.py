"""Timing several calls against each other: interleaved in random order, inputs made off the clock.

Shared by the pixel latency (`latency.py`) and click latency (`clicks.py`) benchmarks, so both
measure the same way against their floor.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from mailpixel.model.events import RequestFacts

# name → (make the input of call i, the call). Only the call is timed.
Calls = Mapping[str, tuple[Callable[[int], Any], Callable[[Any], None]]]


def interleaved(calls: Calls, *, samples: int, warmup: int, seed: int) -> dict[str, list[float]]:
    """Seconds per call, by name: `warmup` untimed rounds, then `samples` rounds, each round
    calling every entry once in a fresh random order (so drift and noise hit all alike)."""
    rng = random.Random(seed)  # noqa: S311 - ordering only
    for i in range(warmup):
        for make, call in calls.values():
            call(make(i))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup, warmup + samples):
        order = list(calls.items())
        rng.shuffle(order)
        for name, (make, call) in order:
            argument = make(i)
            start = time.perf_counter()
            call(argument)
            times[name].append(time.perf_counter() - start)
    return times


def floor_fields(i: int) -> dict[str, Any]:
    """The event builder's arguments for the floor's i-th item (`build_open_event(**…)`, or
    `build_click_event(**…, url=…)`): a fresh request id, a fixed address and user agent."""
    import uuid

    facts = RequestFacts(uuid.uuid4().hex, 1795528140123 + i, "203.0.113.9", "Mozilla/5.0 (bench)")
    return {
        "email_id": f"floor{i % 200}",
        "user_id": f"u{i % 50}",
        "facts": facts,
        "retention_seconds": 86_400,
        "stored_ip": facts.ip,
    }
