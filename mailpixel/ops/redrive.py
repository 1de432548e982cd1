"""Re-drive enrichment for events that never got it (`mailpixel reenrich`).

The stream keeps records for 24 hours, and the enrich function's failure queue holds only
pointers into it. The events themselves are always in the table, so the dependable way to
re-drive is to find events without `enriched_at` and hand them to the same handler, shaped as
the stream's INSERT records. The handler's conditional write keeps this idempotent.

They are found through the sparse `unenriched` index (keys only, 16 partitions), which holds
exactly the events the pixel wrote and enrichment has not yet claimed: the cost of a run is
the unenriched events, never the table. The index is eventually consistent, so each event is
read back from the table (consistently) and skipped if enriched meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mailpixel.ddb.batch import batch_get, chunks
from mailpixel.ddb.store import paged
from mailpixel.model.keys import UNENRICHED, UNENRICHED_INDEX, UNENRICHED_SHARDS, event_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH = 100


def unenriched(client: DynamoDBClient, table: str) -> Iterator[dict[str, Any]]:
    """Raw items without `enriched_at`, from the `unenriched` index, 100 at a time."""
    for shard in range(UNENRICHED_SHARDS):
        kwargs: dict[str, Any] = {
            "TableName": table,
            "IndexName": UNENRICHED_INDEX,
            "KeyConditionExpression": "#u = :shard",
            "ExpressionAttributeNames": {"#u": UNENRICHED},
            "ExpressionAttributeValues": {":shard": {"S": str(shard)}},
        }
        keys = (event_key(i["email_id"]["S"], i["open_key"]["S"]) for i in paged(client.query, **kwargs))
        for chunk in chunks(list(keys), BATCH):
            found = batch_get(client, table, chunk, consistent=True)
            yield from sorted(
                (item for item in found if "enriched_at" not in item), key=lambda i: i["open_key"]["S"]
            )


def as_stream_record(item: Mapping[str, Any], number: int) -> dict[str, Any]:
    return {
        "eventID": f"reenrich-{number}",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"email_id": item["email_id"], "open_key": item["open_key"]},
            "NewImage": dict(item),
            "SequenceNumber": f"{number:021d}",
            "StreamViewType": "NEW_IMAGE",
        },
    }


def reenrich(
    client: DynamoDBClient, table: str, handler: Callable[[dict[str, Any], Any], dict[str, Any]]
) -> dict[str, int]:
    """Enrich every unenriched event; returns how many were found and how many still failed."""
    found = failed = 0
    batch: list[dict[str, Any]] = []

    def flush() -> int:
        result = handler({"Records": batch}, None)
        return len(result.get("batchItemFailures", []))

    for item in unenriched(client, table):
        found += 1
        batch.append(as_stream_record(item, found))
        if len(batch) == BATCH:
            failed += flush()
            batch = []
    if batch:
        failed += flush()
    return {"found": found, "enriched": found - failed, "failed": failed}
