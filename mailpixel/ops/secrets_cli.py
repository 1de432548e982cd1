"""The signing secrets for a command a person runs (`url`, `instrument`, `replay`): shared by
those commands' modules, below them."""

from __future__ import annotations

import sys
from typing import Any

from mailpixel.config import Settings


def signing_keys(settings: Settings) -> Any:
    """The signing secrets for a command a person runs: given, or read from SSM now (a failure
    is an error to report, not a reason to go on unsigned)."""
    from mailpixel.secrets import SigningKeys, load_signing_secrets

    if not settings.signing_secrets and settings.signing_secrets_parameter:
        settings = settings.with_overrides(signing_secrets=load_signing_secrets(settings))
    return SigningKeys(settings)


def signing_secret(settings: Settings, unsigned: str) -> str | None:
    """The secret that signs (the first one), from the environment or its SSM parameter; with
    none, a warning that says what is `unsigned`."""
    secrets = signing_keys(settings).current() or ()
    if not secrets:
        print(
            f"mailpixel: warning: no signing secret (MAILPIXEL_SIGNING_SECRETS): {unsigned} "
            "and only a mailpixel without signing secrets records them",
            file=sys.stderr,
        )
    return secrets[0] if secrets else None
