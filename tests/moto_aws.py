"""AWS on loopback for the operator tools (`--stage`, `doctor`): moto's standalone server, which
boto3 reaches through its own `AWS_ENDPOINT_URL` setting, exactly as it would reach AWS."""

from __future__ import annotations

import json
from typing import Any

import pytest

# moto's server on loopback (one module-wide instance answers every AWS service).
from tests.integration.test_fallback_queue import sqs_endpoint as moto_endpoint

__all__ = ["aws_env", "create_stack", "moto_endpoint"]


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every AWS client the code makes itself now talks to the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "MAILPIXEL_BASE_URL", "DYNAMODB_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return moto_endpoint


def create_stack(cloudformation: Any, name: str, outputs: dict[str, str]) -> None:
    """A stack with these outputs (and one queue: a template needs a resource)."""
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
