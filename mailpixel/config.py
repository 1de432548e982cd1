"""Settings, read from environment variables in this one module.

Everything else receives a `Settings` instance, so tests build their own and no code reads
`os.environ` at import time or behind the caller's back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar, get_args

IpStorage = Literal["full", "truncated", "none"]
GeoProviderChoice = Literal["auto", "ipinfo", "mmdb", "none"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Switch = Literal["on", "off"]
IP_STORAGE_MODES: tuple[str, ...] = get_args(IpStorage)
GEO_PROVIDERS: tuple[str, ...] = get_args(GeoProviderChoice)
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
SWITCH: tuple[str, ...] = get_args(Switch)
# What serverless.yml's environment sets for AWS that means nothing under `serverless offline`.
OFFLINE_IGNORED = frozenset(
    {
        "MAILPIXEL_SIGNING_SECRETS_PARAMETER",
        "MAILPIXEL_API_KEYS_PARAMETER",
        "IPINFO_TOKEN_PARAMETER",
        "MAILPIXEL_WEBHOOK_PARAMETER",
        "MAILPIXEL_FALLBACK_QUEUE_URL",
        "MAILPIXEL_WEBHOOK_QUEUE_URL",
    }
)
Choice = TypeVar("Choice", bound=str)
Number = TypeVar("Number", int, float)


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


def _parsed(
    env: Mapping[str, str], name: str, default: Number, parse: Callable[[str], Number], what: str
) -> Number:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    value = _parsed(env, name, default, int, "a whole number")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = _parsed(env, name, default, float, "a number")
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _choice(
    env: Mapping[str, str],
    name: str,
    choices: tuple[str, ...],
    default: Choice,
    case: Callable[[str], str] = str.lower,
) -> Choice:
    value = case(env.get(name, "").strip()) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value  # type: ignore[return-value]  # checked against the Literal's values just above


@dataclass(frozen=True)
class Settings:
    """Every knob mailpixel has. Defaults suit local development."""

    table: str = "mailpixel-local-events"
    meta_table: str = "mailpixel-local-meta"
    # Clicks live in their own table, so a query of the events table returns opens only.
    clicks_table: str = "mailpixel-local-clicks"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    retention_days: int = 400
    port: int = 5000
    dynamodb_port: int = 8000
    data_dir: str = ".data"
    log_level: LogLevel = "INFO"
    # Signing: the first secret signs, every one verifies (rotation).
    signing_secrets: tuple[str, ...] = field(default=(), repr=False)
    # In AWS: the SSM SecureString parameter holding the secrets, read once at cold start.
    signing_secrets_parameter: str | None = None
    # Signed URLs carrying `t` older than this many days are refused; 0 means they never expire.
    signature_max_age_days: int = 0
    ip_storage: IpStorage = "full"
    # Geolocation for the enrichment step.
    ipinfo_url: str = "https://ipinfo.io"
    ipinfo_token: str | None = field(default=None, repr=False)
    # In AWS: the SSM parameter holding the ipinfo token, read once per enrich cold start.
    ipinfo_token_parameter: str | None = None
    geoip_db_path: str | None = None
    geo_timeout_seconds: float = 2.0
    # auto (a .mmdb when GEOIP_DB_PATH is set, else ipinfo), ipinfo, mmdb or none.
    geo_provider: GeoProviderChoice = "auto"
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
    # Webhooks (docs/tracking/webhooks.md): where to POST and the signing secret; in AWS both live in
    # one SecureString "URL,SECRET" named by `webhook_parameter`, read by the delivery function.
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_parameter: str | None = None
    # The queue enrichment puts webhook events on (in AWS); unset: delivered directly (local).
    webhook_queue_url: str | None = None
    # In AWS, webhooks are sent only when deployed with `--param="webhooks=on"`.
    webhooks: Switch = "off"
    # Webhooks for clicks on email-scoped links (docs/tracking/instrumenting.md): off, since
    # their user id is not signed and anyone holding such a link can set it to anyone.
    webhook_scoped_clicks: Switch = "off"
    # Under `serverless offline` (it sets IS_OFFLINE): serverless.yml's environment, made for
    # AWS, is read as the local stack's (see `from_env`), and API Gateway's request id, the
    # same on every request there, is not trusted (handler.py).
    offline: bool = False
    # Click sequence rules (docs/enrichment/click-verdicts.md): `burst` is K distinct
    # links of one email clicked by one recipient within S seconds; `multi_source` one link of
    # one recipient clicked from two addresses within this many seconds; a honeypot hit marks
    # the recipient's other clicks of the email within this many seconds before and after it.
    click_burst_links: int = 3
    click_burst_seconds: float = 2.0
    click_multi_source_seconds: float = 1.0
    click_honeypot_window_seconds: float = 30.0
    # Human-click webhooks wait this long, then go out only if the click is still human then
    # (docs/tracking/webhooks.md, "Settle window").
    webhook_settle_seconds: int = 60

    @property
    def is_local(self) -> bool:
        """True when the store is a DynamoDB Local (or other non-AWS) endpoint."""
        return self.endpoint_url is not None

    @property
    def signature_max_age_seconds(self) -> int | None:
        return self.signature_max_age_days * 86_400 or None

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
        d = cls()  # the defaults, written once: in the fields above
        dynamodb_port = _int(env, "DYNAMODB_PORT", d.dynamodb_port, minimum=1)
        endpoint_url = _optional(env, "DYNAMODB_ENDPOINT_URL")
        table = _optional(env, "MAILPIXEL_TABLE")
        offline = _optional(env, "IS_OFFLINE") == "true"
        if endpoint_url is None and (offline or (local_default and table is None)):
            endpoint_url = f"http://127.0.0.1:{dynamodb_port}"
        if offline:
            # serverless.yml names SSM parameters and a queue (`!Ref`, which offline cannot
            # resolve) for AWS: offline, secrets come from the environment and the fallback is
            # the local file, as under `make run`, and nothing reaches AWS.
            env = {k: v for k, v in env.items() if k not in OFFLINE_IGNORED}
        return cls(
            table=table or d.table,
            meta_table=_optional(env, "MAILPIXEL_META_TABLE") or d.meta_table,
            clicks_table=_optional(env, "MAILPIXEL_CLICKS_TABLE") or d.clicks_table,
            endpoint_url=endpoint_url,
            region=_optional(env, "AWS_REGION") or _optional(env, "AWS_DEFAULT_REGION") or d.region,
            retention_days=_int(env, "MAILPIXEL_RETENTION_DAYS", d.retention_days, minimum=1),
            port=_int(env, "PORT", d.port, minimum=1),
            dynamodb_port=dynamodb_port,
            data_dir=_optional(env, "MAILPIXEL_DATA_DIR") or d.data_dir,
            log_level=_choice(env, "MAILPIXEL_LOG_LEVEL", LOG_LEVELS, d.log_level, case=str.upper),
            signing_secrets=_list(env, "MAILPIXEL_SIGNING_SECRETS"),
            signing_secrets_parameter=_optional(env, "MAILPIXEL_SIGNING_SECRETS_PARAMETER"),
            signature_max_age_days=_int(env, "MAILPIXEL_SIGNATURE_MAX_AGE_DAYS", d.signature_max_age_days),
            ip_storage=_choice(env, "MAILPIXEL_IP_STORAGE", IP_STORAGE_MODES, d.ip_storage),
            ipinfo_url=(_optional(env, "IPINFO_URL") or d.ipinfo_url).rstrip("/"),
            ipinfo_token=_optional(env, "IPINFO_TOKEN"),
            ipinfo_token_parameter=_optional(env, "IPINFO_TOKEN_PARAMETER"),
            geoip_db_path=_optional(env, "GEOIP_DB_PATH"),
            geo_timeout_seconds=_float(env, "MAILPIXEL_GEO_TIMEOUT", d.geo_timeout_seconds),
            geo_provider=_choice(env, "MAILPIXEL_GEO_PROVIDER", GEO_PROVIDERS, d.geo_provider),
            geo_max_wait_seconds=_float(env, "MAILPIXEL_GEO_MAX_WAIT", d.geo_max_wait_seconds),
            api_keys=_list(env, "MAILPIXEL_API_KEYS"),
            api_keys_parameter=_optional(env, "MAILPIXEL_API_KEYS_PARAMETER"),
            write_budget_seconds=_float(env, "MAILPIXEL_WRITE_BUDGET", d.write_budget_seconds),
            fallback_queue_url=_optional(env, "MAILPIXEL_FALLBACK_QUEUE_URL"),
            sqs_endpoint_url=_optional(env, "SQS_ENDPOINT_URL"),
            public_base_url=_optional(env, "MAILPIXEL_BASE_URL"),
            webhook_url=_optional(env, "MAILPIXEL_WEBHOOK_URL"),
            webhook_secret=_optional(env, "MAILPIXEL_WEBHOOK_SECRET"),
            webhook_parameter=_optional(env, "MAILPIXEL_WEBHOOK_PARAMETER"),
            webhook_queue_url=_optional(env, "MAILPIXEL_WEBHOOK_QUEUE_URL"),
            webhooks=_choice(env, "MAILPIXEL_WEBHOOKS", SWITCH, d.webhooks),
            webhook_scoped_clicks=_choice(
                env, "MAILPIXEL_WEBHOOK_SCOPED_CLICKS", SWITCH, d.webhook_scoped_clicks
            ),
            offline=offline,
            click_burst_links=_int(env, "MAILPIXEL_CLICK_BURST_LINKS", d.click_burst_links, minimum=2),
            click_burst_seconds=_float(env, "MAILPIXEL_CLICK_BURST_SECONDS", d.click_burst_seconds),
            click_multi_source_seconds=_float(
                env, "MAILPIXEL_CLICK_MULTI_SOURCE_SECONDS", d.click_multi_source_seconds
            ),
            click_honeypot_window_seconds=_float(
                env, "MAILPIXEL_CLICK_HONEYPOT_WINDOW_SECONDS", d.click_honeypot_window_seconds
            ),
            webhook_settle_seconds=_int(env, "MAILPIXEL_WEBHOOK_SETTLE_SECONDS", d.webhook_settle_seconds),
        )
