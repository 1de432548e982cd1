"""Crashes injected into a real boto3 client with botocore event hooks (no mocks): a chosen kind
of DynamoDB call raises `Crash` before it is sent, or after DynamoDB has done it, as a Lambda
instance dying between two steps of a multi-step write would leave things."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from mailpixel.config import Settings

# Each step of the enrichment write, told apart by what its request asks for; clicks have one
# more, the revision of a counted click (`enrich/clicks.py`).
STEPS = ("claim", "adopt", "opener", "bound", "commit")
REVISE = "revise"


class Crash(RuntimeError):
    """The instance died here."""


def step_of(operation: str, params: dict[str, Any], settings: Settings) -> str | None:
    if operation == "TransactWriteItems":
        # A revision of a counted click checks its counting batch's marker; a batch's counters do not.
        items = params.get("TransactItems") or []
        return REVISE if any("ConditionCheck" in item for item in items) else "commit"
    if operation != "UpdateItem":
        return None
    names = set((params.get("ExpressionAttributeNames") or {}).values())
    if params.get("TableName") in (settings.table, settings.clicks_table):
        return "adopt" if "counted_by = :dead" in str(params.get("ConditionExpression")) else "claim"
    if "seen_by" in names:
        return "opener"
    if names & {"first_open_at", "last_open_at", "first_human_open_at"}:
        return "bound"
    return None


class CrashInjector:
    """Registers on `client`; crashes a share `rate` of the calls of `step`, `when` = before the
    call is sent or after DynamoDB answered it (the write done, the caller never told)."""

    def __init__(
        self,
        client: Any,
        settings: Settings,
        step: str,
        *,
        when: str = "after",
        rate: float = 0.3,
        seed: int = 1,
    ) -> None:
        self.settings, self.step, self.when, self.rate = settings, step, when, rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.crashes: Counter[str] = Counter()
        self.enabled = True
        events = client.meta.events
        events.register("provide-client-params.dynamodb", self._tag)
        events.register("before-call.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)

    def _tag(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["crash_step"] = step_of(model.name, params, self.settings)

    def _maybe(self, context: dict[str, Any], moment: str) -> None:
        if not self.enabled or moment != self.when or context.get("crash_step") != self.step:
            return
        with self.lock:
            hit = self.rng.random() < self.rate
            if hit:
                self.crashes[self.step] += 1
        if hit:
            raise Crash(f"crash {moment} {self.step}")

    def _before(self, context: dict[str, Any], **_: Any) -> None:
        self._maybe(context, "before")

    def _after(self, context: dict[str, Any], **_: Any) -> None:
        self._maybe(context, "after")
