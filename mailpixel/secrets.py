"""Signing secrets from an SSM Parameter Store SecureString, read once per Lambda cold start.

Why at run time and not `${ssm:...}` in serverless.yml: a deploy-time lookup needs AWS
credentials to package, and it would copy the decrypted secrets into the CloudFormation
template and the function's environment, where anyone allowed to read either sees them.
Here the function's environment holds only the parameter's name
(`MAILPIXEL_SIGNING_SECRETS_PARAMETER`), and its role may call `ssm:GetParameter` on exactly
that parameter.

The pixel's `create_app` calls this only when a parameter name is configured and no secrets are
given directly. A failure raises here; `create_app` logs it as `signing_secrets_unavailable` and
keeps the pixel answering, recording opens with `signed=false` until the parameter is fixed.
"""

from __future__ import annotations

from typing import Any

from mailpixel.config import ConfigError, Settings


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
