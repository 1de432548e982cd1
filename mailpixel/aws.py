"""AWS clients, made once per process and handed to whatever needs them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

# DynamoDB Local accepts any credentials. Passing these explicitly for a local endpoint keeps
# botocore from searching for real ones (and from probing the EC2 metadata address).
LOCAL_CREDENTIALS = {
    "aws_access_key_id": "local",
    "aws_secret_access_key": "local",  # DynamoDB Local takes any value; not a secret  # nosec B105
}


def _client(service: str, settings: Settings, *, endpoint_url: str | None, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {"region_name": settings.region}
    if endpoint_url:
        kwargs.update(endpoint_url=endpoint_url, **LOCAL_CREDENTIALS)
    return boto3.session.Session().client(service, config=Config(**config), **kwargs)  # type: ignore[call-overload]


def dynamodb_client(settings: Settings, *, fast: bool = False) -> DynamoDBClient:
    """A DynamoDB client. `fast` is for the pixel: short timeouts, few retries, so a sick
    DynamoDB costs the reader milliseconds and the event goes to the fallback instead."""
    if fast:
        budget = settings.write_budget_seconds
        return _client(  # type: ignore[no-any-return]
            "dynamodb",
            settings,
            endpoint_url=settings.endpoint_url,
            connect_timeout=min(0.5, budget / 3),
            read_timeout=max(0.2, budget / 3),
            retries={"total_max_attempts": 3, "mode": "standard"},
            tcp_keepalive=True,
            # The local server runs a thread per request; Lambda runs one request at a time.
            max_pool_connections=64,
        )
    return _client(  # type: ignore[no-any-return]
        "dynamodb",
        settings,
        endpoint_url=settings.endpoint_url,
        connect_timeout=2,
        read_timeout=10,
        retries={"total_max_attempts": 5, "mode": "adaptive"},
    )


def streams_client(settings: Settings) -> DynamoDBStreamsClient:
    return _client("dynamodbstreams", settings, endpoint_url=settings.endpoint_url)  # type: ignore[no-any-return]


def sqs_client(settings: Settings) -> SQSClient:
    return _client(  # type: ignore[no-any-return]
        "sqs", settings, endpoint_url=settings.sqs_endpoint_url, connect_timeout=0.5, read_timeout=2
    )


def ssm_client(settings: Settings) -> SSMClient:
    return _client(  # type: ignore[no-any-return]
        "ssm",
        settings,
        endpoint_url=None,
        connect_timeout=1,
        read_timeout=2,
        retries={"total_max_attempts": 3, "mode": "standard"},
    )


def operator_client(service: str, settings: Settings) -> Any:
    """A client the operator tools read a deployment with (cloudformation for `--stage`;
    lambda, sns, dynamodb for `doctor`): AWS, or where `AWS_ENDPOINT_URL[_SERVICE]` points."""
    return _client(service, settings, endpoint_url=None, connect_timeout=2, read_timeout=10)
