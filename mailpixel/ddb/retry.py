"""The one retry policy for DynamoDB work the SDK does not retry itself: unprocessed items of
batch calls, and cancelled transactions (botocore's standard mode retries neither).

Exponential backoff with full jitter, so callers that collided (two enrichment batches on one
counter item, a burst of erasures) do not collide again in step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
# Error codes worth another attempt after a pause: capacity and item contention. botocore retries
# the throttling codes itself (a few times); it never retries a cancelled transaction, and a plain
# write to an item inside someone's transaction fails with TransactionConflict.
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "TransactionInProgressException",
        "InternalServerError",
    }
)
RETRYABLE_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


def error_code(error: BaseException) -> str:
    response = getattr(error, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def cancellation_codes(error: BaseException) -> list[str]:
    """The per-item reasons of a TransactionCanceledException (empty for other errors)."""
    response = getattr(error, "response", None)
    reasons = (response or {}).get("CancellationReasons") if isinstance(response, dict) else None
    return [str(r.get("Code") or "None") for r in reasons or []]


def retryable(error: BaseException) -> bool:
    """Throttled or in conflict: the same call may succeed after a pause."""
    if error_code(error) in RETRYABLE_CODES:
        return True
    codes = cancellation_codes(error)
    return bool(RETRYABLE_REASONS.intersection(codes)) and "ConditionalCheckFailed" not in codes


@dataclass(frozen=True)
class Backoff:
    attempts: int = 8
    base_seconds: float = 0.05
    cap_seconds: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security  # nosec B311

    def wait(self, attempt: int, sleep: Callable[[float], None] = time.sleep) -> None:
        sleep(self.delay(attempt))

    def call(self, operation: Callable[[], T]) -> T:
        """`operation()`, again after a jittered pause while it fails with a retryable error."""
        for attempt in range(self.attempts):
            try:
                return operation()
            except Exception as error:
                if not retryable(error) or attempt == self.attempts - 1:
                    raise
            self.wait(attempt)
        raise AssertionError("unreachable")


DEFAULT = Backoff()
