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


DEFAULT = Backoff()
