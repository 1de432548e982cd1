"""Signing secrets from an SSM Parameter Store SecureString, read once per Lambda cold start.

Why at run time and not `${ssm:...}` in serverless.yml: a deploy-time lookup needs AWS
credentials to package, and it would copy the decrypted secrets into the CloudFormation
template and the function's environment, where anyone allowed to read either sees them.
Here the function's environment holds only the parameter's name
(`MAILPIXEL_SIGNING_SECRETS_PARAMETER`), and its role may call `ssm:GetParameter` on exactly
that parameter.

`SigningKeys` holds them for a process (the pixel, the drain function). It fails closed: while
a configured parameter cannot be read (missing, denied, or throttled: SSM allows about 40
`GetParameter` a second, and a burst of cold starts exceeds that), there are no secrets, never
"no signing". The pixel then answers the GIF and quarantines the open unverified; the holder
tries again on a later request, after a backoff that doubles up to a minute, not on every one.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from mailpixel.config import ConfigError, Settings
from mailpixel.logs import Metrics, get_logger

log = get_logger("secrets")
UNAVAILABLE = "signing_secrets_unavailable"  # the log line and the metric an alarm watches


def parse_secrets(value: str) -> tuple[str, ...]:
    """Comma-separated, as `MAILPIXEL_SIGNING_SECRETS`: the first signs, all verify."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def load_secret_list(
    settings: Settings, name: str | None, *, variable: str, what: str, client: Any = None
) -> tuple[str, ...]:
    """Read and decrypt a comma-separated SecureString (`variable` names the setting, `what` the
    values, for the error messages): signing secrets and API keys are both kept this way."""
    if not name:
        raise ConfigError(f"{variable} is not set")
    if client is None:
        from mailpixel.aws import ssm_client

        client = ssm_client(settings)
    response = client.get_parameter(Name=name, WithDecryption=True)
    values = parse_secrets(str(response["Parameter"]["Value"]))
    if not values:
        raise ConfigError(f"SSM parameter {name} holds no {what}")
    return values


def load_signing_secrets(settings: Settings, client: Any = None) -> tuple[str, ...]:
    """Read and decrypt the parameter named by `settings.signing_secrets_parameter`."""
    return load_secret_list(
        settings,
        settings.signing_secrets_parameter,
        variable="MAILPIXEL_SIGNING_SECRETS_PARAMETER",
        what="signing secret",
        client=client,
    )


class SigningKeys:
    """The signing secrets of one process: given directly, or read from SSM and retried.

    `current()` answers `()` when signing is off (no secret and no parameter configured),
    the secrets once they are loaded, and `None` while a configured parameter cannot be read:
    the caller must not treat an open as verified, nor as unsigned-and-fine.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        client: Callable[[], Any] | None = None,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.parameter = None if settings.signing_secrets else settings.signing_secrets_parameter
        self._secrets = settings.signing_secrets
        self._metrics = metrics
        self._make_client = client
        self._client: Any = None
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._clock = clock
        self._failures = 0
        self._next_attempt = clock()
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """Whether opens must be verified: a secret or a parameter is configured."""
        return bool(self._secrets or self.parameter)

    def current(self) -> tuple[str, ...] | None:
        if self._secrets or not self.parameter:
            return self._secrets
        # One attempt at a time, and none before the backoff is over: the other requests of
        # this instance go on at once, unverified, instead of queueing up behind SSM.
        if self._clock() < self._next_attempt or not self._lock.acquire(blocking=False):
            return None
        try:
            if not self._secrets:
                self._load()
            return self._secrets or None
        finally:
            self._lock.release()

    def _load(self) -> None:
        try:
            if self._client is None and self._make_client is not None:
                self._client = self._make_client()
            self._secrets = load_signing_secrets(self.settings, self._client)
        except Exception as exc:  # noqa: BLE001 - any failure: no secrets yet, try again later
            self._failures += 1
            delay = min(self._max_delay, self._first_delay * 2 ** (self._failures - 1))
            # Jitter spreads the retries of a burst of instances started together.
            delay *= 0.5 + random.random() / 2  # nosec B311 - spreading retries, not a secret
            self._next_attempt = self._clock() + delay
            log.error(
                UNAVAILABLE,
                extra={
                    "parameter": self.parameter,
                    "error": repr(exc),
                    "attempt": self._failures,
                    "retry_in_seconds": round(delay, 3),
                    "detail": "opens are answered and quarantined unverified until the secrets load",
                },
            )
            if self._metrics is not None:
                self._metrics.count(UNAVAILABLE, attempt=self._failures)
            return
        log.info(
            "signing_secrets_loaded", extra={"parameter": self.parameter, "attempts": self._failures + 1}
        )
