"""Settings from the environment: defaults, validation, and where the CLI points."""

from __future__ import annotations

import pytest

from mailpixel.config import ConfigError, Settings


def test_defaults():
    s = Settings.from_env({})
    assert (s.table, s.endpoint_url, s.retention_days, s.port, s.dynamodb_port) == (
        "mailpixel-local-events",
        None,
        400,
        5000,
        8000,
    )
    assert s.ip_storage == "full"
    assert s.signing_secrets == ()


def test_values_are_read():
    s = Settings.from_env(
        {
            "MAILPIXEL_TABLE": "t",
            "DYNAMODB_ENDPOINT_URL": "http://x:1",
            "AWS_REGION": "eu-west-1",
            "MAILPIXEL_RETENTION_DAYS": "30",
            "PORT": "8080",
            "DYNAMODB_PORT": "9000",
            "MAILPIXEL_SIGNING_SECRETS": " a , b ,",
            "MAILPIXEL_IP_STORAGE": "Truncated",
        }
    )
    assert (s.table, s.endpoint_url, s.region, s.retention_days, s.port, s.dynamodb_port) == (
        "t",
        "http://x:1",
        "eu-west-1",
        30,
        8080,
        9000,
    )
    assert s.signing_secrets == ("a", "b")
    assert s.ip_storage == "truncated"


def test_secrets_are_not_in_repr():
    assert "hunter2" not in repr(Settings.from_env({"MAILPIXEL_SIGNING_SECRETS": "hunter2"}))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAILPIXEL_RETENTION_DAYS": "forever"}, "MAILPIXEL_RETENTION_DAYS must be a whole number"),
        ({"MAILPIXEL_RETENTION_DAYS": "0"}, "at least 1"),
        ({"PORT": "-1"}, "PORT must be at least 1"),
        ({"MAILPIXEL_IP_STORAGE": "half"}, "MAILPIXEL_IP_STORAGE must be one of full, truncated, none"),
        ({"MAILPIXEL_LOG_LEVEL": "verbose"}, "MAILPIXEL_LOG_LEVEL must be one of DEBUG, INFO, WARNING"),
        ({"MAILPIXEL_WEBHOOKS": "yes"}, "MAILPIXEL_WEBHOOKS must be one of on, off"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_cli_defaults_to_the_local_stack():
    assert Settings.from_env({}, local_default=True).endpoint_url == "http://127.0.0.1:8000"
    assert (
        Settings.from_env({"DYNAMODB_PORT": "8123"}, local_default=True).endpoint_url
        == "http://127.0.0.1:8123"
    )


def test_cli_goes_to_aws_when_a_table_is_named_without_an_endpoint():
    s = Settings.from_env({"MAILPIXEL_TABLE": "mailpixel-prod-events"}, local_default=True)
    assert s.endpoint_url is None and s.table == "mailpixel-prod-events"


def test_log_level_is_one_logging_knows_in_any_case():
    assert Settings.from_env({"MAILPIXEL_LOG_LEVEL": "warning"}).log_level == "WARNING"
    assert Settings.from_env({}).log_level == "INFO"
