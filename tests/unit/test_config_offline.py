"""Under `serverless offline` (IS_OFFLINE=true) serverless.yml's AWS environment is read as the
local stack's: DynamoDB Local, secrets from the environment, the file fallback; nothing in AWS."""

from __future__ import annotations

from mailpixel.config import OFFLINE_IGNORED, Settings

# What serverless-offline hands handler.py from serverless.yml's `provider.environment`.
OFFLINE_ENV = {
    "IS_OFFLINE": "true",
    "MAILPIXEL_TABLE": "mailpixel-local-events",
    "MAILPIXEL_SIGNING_SECRETS_PARAMETER": "/mailpixel/local/signing-secrets",
    "MAILPIXEL_API_KEYS_PARAMETER": "/mailpixel/local/api-keys",
    "MAILPIXEL_FALLBACK_QUEUE_URL": "FallbackQueue",  # offline's rendering of `!Ref FallbackQueue`
    "MAILPIXEL_SIGNING_SECRETS": "s1",
}


def test_offline_reads_the_aws_environment_as_the_local_stacks():
    settings = Settings.from_env(OFFLINE_ENV)
    assert settings.offline and settings.is_local
    assert settings.endpoint_url == "http://127.0.0.1:8000"
    assert settings.signing_secrets == ("s1",)
    assert settings.signing_secrets_parameter is None and settings.api_keys_parameter is None
    assert settings.fallback_queue_url is None
    assert {"MAILPIXEL_FALLBACK_QUEUE_URL", "MAILPIXEL_SIGNING_SECRETS_PARAMETER"} <= OFFLINE_IGNORED


def test_without_is_offline_the_same_environment_is_aws():
    settings = Settings.from_env({k: v for k, v in OFFLINE_ENV.items() if k != "IS_OFFLINE"})
    assert not settings.offline and not settings.is_local
    assert settings.signing_secrets_parameter == "/mailpixel/local/signing-secrets"
    assert settings.fallback_queue_url == "FallbackQueue"
