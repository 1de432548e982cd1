"""BatchGetItem and BatchWriteItem with their limits and the retry of what DynamoDB leaves
unprocessed (throttled partitions, size limits), under the one policy of `ddb.retry`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mailpixel.ddb.retry import DEFAULT, Backoff

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

GET_LIMIT = 100
WRITE_LIMIT = 25


class BatchIncomplete(RuntimeError):
    """DynamoDB kept returning unprocessed items; running the command again finishes the job."""


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch_get(
    client: DynamoDBClient,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    consistent: bool = False,
    attributes: Sequence[str] = (),
    policy: Backoff = DEFAULT,
) -> Iterator[dict[str, Any]]:
    """Every item found among `keys`, as raw attribute values (in no particular order)."""
    for chunk in chunks(keys, GET_LIMIT):
        request: dict[str, Any] = {"Keys": list(chunk), "ConsistentRead": consistent}
        if attributes:
            names = {f"#p{i}": name for i, name in enumerate(attributes)}
            request.update(ProjectionExpression=", ".join(names), ExpressionAttributeNames=names)
        for attempt in range(policy.attempts):
            response = client.batch_get_item(RequestItems={table: request})  # type: ignore[dict-item]
            yield from response.get("Responses", {}).get(table, [])
            unprocessed = (response.get("UnprocessedKeys") or {}).get(table)
            if not unprocessed:
                break
            request = dict(unprocessed)
            policy.wait(attempt)
        else:
            raise BatchIncomplete(f"{table}: reads still unprocessed after {policy.attempts} attempts")


def batch_write(
    client: DynamoDBClient, table: str, requests: Iterable[Mapping[str, Any]], *, policy: Backoff = DEFAULT
) -> None:
    """PutRequest / DeleteRequest entries, 25 a call, retrying what comes back unprocessed."""
    for chunk in chunks(list(requests), WRITE_LIMIT):
        pending: list[Any] = list(chunk)
        for attempt in range(policy.attempts):
            response = client.batch_write_item(RequestItems={table: pending})
            pending = list((response.get("UnprocessedItems") or {}).get(table, []))
            if not pending:
                break
            policy.wait(attempt)
        else:
            raise BatchIncomplete(f"{table}: writes still unprocessed after {policy.attempts} attempts")
