"""Table definitions, read from `serverless.yml` so the schema is written in one place.

Local setup and tests create their tables from the same CloudFormation properties that
`serverless deploy` uses; nothing here repeats a key schema.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SERVERLESS_YML = Path(__file__).resolve().parents[3] / "serverless.yml"
EVENTS_TABLE = "EventsTable"
META_TABLE = "MetaTable"
CLICKS_TABLE = "ClicksTable"


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads `!Ref`, `!GetAtt` and friends as plain values: only the table shape matters here."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_CloudFormationLoader.add_multi_constructor("!", _any_tag)


@cache
def table_properties(resource: str = EVENTS_TABLE, path: Path = SERVERLESS_YML) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        # A SafeLoader subclass: nothing but plain YAML values and CloudFormation tags.
        document = yaml.load(fh, Loader=_CloudFormationLoader)  # noqa: S506  # nosec B506
    properties: dict[str, Any] = document["resources"]["Resources"][resource]["Properties"]
    return properties


def create_table_kwargs(name: str, resource: str = EVENTS_TABLE) -> dict[str, Any]:
    """`create_table` arguments for `resource`, named `name`."""
    props = table_properties(resource)
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    stream = props.get("StreamSpecification")
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return kwargs


def ensure_table(client: DynamoDBClient, name: str, resource: str = EVENTS_TABLE) -> bool:
    """Create the table as `serverless.yml` defines it, unless it exists. True if created."""
    try:
        client.describe_table(TableName=name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    try:
        client.create_table(**create_table_kwargs(name, resource))
    except client.exceptions.ResourceInUseException:
        return False
    for _ in range(100):
        if client.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE":
            break
        time.sleep(0.05)
    ttl = table_properties(resource).get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    return True


def ensure_tables(
    client: DynamoDBClient, events_table: str, meta_table: str, clicks_table: str | None = None
) -> list[str]:
    """mailpixel's tables (the clicks table when named); returns the names of those created now."""
    pairs = [(events_table, EVENTS_TABLE), (meta_table, META_TABLE)]
    if clicks_table:
        pairs.append((clicks_table, CLICKS_TABLE))
    return [name for name, resource in pairs if ensure_table(client, name, resource)]
