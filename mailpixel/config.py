"""Settings, read from environment variables in this one module.

Everything else receives a `Settings` instance, so tests build their own and no code reads
`os.environ` at import time or behind the caller's back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

DEFAULT_LOCAL_TABLE = "mailpixel-local-events"
DEFAULT_LOCAL_META_TABLE = "mailpixel-local-meta"
IP_STORAGE_MODES = ("full", "truncated", "none")
GEO_PROVIDERS = ("auto", "ipinfo", "mmdb", "none")


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Every knob mailpixel has. Defaults suit local development."""

    table: str = DEFAULT_LOCAL_TABLE
    meta_table: str = DEFAULT_LOCAL_META_TABLE
    endpoint_url: str | None = None
    region: str = "us-east-1"
    retention_days: int = 400
    port: int = 5000
    dynamodb_port: int = 8000
    data_dir: str = ".data"
    log_level: str = "INFO"
    # Signing: the first secret signs, every one verifies (rotation).
    signing_secrets: tuple[str, ...] = field(default=(), repr=False)
    # In AWS: the SSM SecureString parameter holding the secrets, read once at cold start.
    signing_secrets_parameter: str | None = None
    # Signed URLs carrying `t` older than this many days are refused; 0 means they never expire.
    signature_max_age_days: int = 0
    ip_storage: str = "full"
    # Geolocation for the enrichment step.
    ipinfo_url: str = "https://ipinfo.io"
    ipinfo_token: str | None = field(default=None, repr=False)
    # In AWS: the SSM parameter holding the ipinfo token, read once per enrich cold start.
    ipinfo_token_parameter: str | None = None
    geoip_db_path: str | None = None
    geo_timeout_seconds: float = 2.0
    # auto (a .mmdb when GEOIP_DB_PATH is set, else ipinfo), ipinfo, mmdb or none.
    geo_provider: str = "auto"
    # How long after an open enrichment keeps retrying a failing geolocation before it writes
    # the event without a location (geo.source = "unavailable").
    geo_max_wait_seconds: float = 20.0
    # Query API keys.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    # In AWS: the SSM SecureString parameter holding the API keys, read on the first /api request.
    api_keys_parameter: str | None = None
    # Write path: total time the pixel may spend on its one DynamoDB write.
    write_budget_seconds: float = 1.5
    fallback_queue_url: str | None = None
    sqs_endpoint_url: str | None = None
    public_base_url: str | None = None

    @property
    def is_local(self) -> bool:
        """True when the store is a DynamoDB Local (or other non-AWS) endpoint."""
        return self.endpoint_url is not None

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * 86_400

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed, for tests and CLI flags."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, local_default: bool = False) -> Settings:
        """Build settings from environment variables.

        `local_default` is for tools a person runs next to `make run` (the CLI): with no
        `DYNAMODB_ENDPOINT_URL` and no `MAILPIXEL_TABLE`, they talk to the local stack. Once
        a table name is given without an endpoint, they talk to AWS, as Lambda does.
        """
        env = os.environ if env is None else env
        dynamodb_port = _int(env, "DYNAMODB_PORT", 8000, minimum=1)
        endpoint_url = _optional(env, "DYNAMODB_ENDPOINT_URL")
        table = _optional(env, "MAILPIXEL_TABLE")
        if local_default and endpoint_url is None and table is None:
            endpoint_url = f"http://127.0.0.1:{dynamodb_port}"
        ip_storage = env.get("MAILPIXEL_IP_STORAGE", "full").strip().lower() or "full"
        if ip_storage not in IP_STORAGE_MODES:
            raise ConfigError(
                f"MAILPIXEL_IP_STORAGE must be one of {', '.join(IP_STORAGE_MODES)}, got {ip_storage!r}"
            )
        return cls(
            table=table or DEFAULT_LOCAL_TABLE,
            meta_table=_optional(env, "MAILPIXEL_META_TABLE") or DEFAULT_LOCAL_META_TABLE,
            endpoint_url=endpoint_url,
            region=_optional(env, "AWS_REGION") or _optional(env, "AWS_DEFAULT_REGION") or "us-east-1",
            retention_days=_int(env, "MAILPIXEL_RETENTION_DAYS", 400, minimum=1),
            port=_int(env, "PORT", 5000, minimum=1),
            dynamodb_port=dynamodb_port,
            data_dir=_optional(env, "MAILPIXEL_DATA_DIR") or ".data",
            log_level=(_optional(env, "MAILPIXEL_LOG_LEVEL") or "INFO").upper(),
            signing_secrets=_list(env, "MAILPIXEL_SIGNING_SECRETS"),
            signing_secrets_parameter=_optional(env, "MAILPIXEL_SIGNING_SECRETS_PARAMETER"),
            signature_max_age_days=_int(env, "MAILPIXEL_SIGNATURE_MAX_AGE_DAYS", 0),
            ip_storage=ip_storage,
            ipinfo_url=(_optional(env, "IPINFO_URL") or "https://ipinfo.io").rstrip("/"),
            ipinfo_token=_optional(env, "IPINFO_TOKEN"),
            ipinfo_token_parameter=_optional(env, "IPINFO_TOKEN_PARAMETER"),
            geoip_db_path=_optional(env, "GEOIP_DB_PATH"),
            geo_timeout_seconds=_float(env, "MAILPIXEL_GEO_TIMEOUT", 2.0),
            geo_provider=_choice(env, "MAILPIXEL_GEO_PROVIDER", GEO_PROVIDERS, "auto"),
            geo_max_wait_seconds=_float(env, "MAILPIXEL_GEO_MAX_WAIT", 20.0),
            api_keys=_list(env, "MAILPIXEL_API_KEYS"),
            api_keys_parameter=_optional(env, "MAILPIXEL_API_KEYS_PARAMETER"),
            write_budget_seconds=_float(env, "MAILPIXEL_WRITE_BUDGET", 1.5),
            fallback_queue_url=_optional(env, "MAILPIXEL_FALLBACK_QUEUE_URL"),
            sqs_endpoint_url=_optional(env, "SQS_ENDPOINT_URL"),
            public_base_url=_optional(env, "MAILPIXEL_BASE_URL"),
        )
