"""A local stand-in for Lambda's DynamoDB stream event source mapping.

Reads the events table's stream from DynamoDB Local and calls the same `enrich` handler with
the event shape Lambda sends (`Records` with `eventName`, `dynamodb.NewImage`,
`SequenceNumber`, `ApproximateCreationDateTime` as epoch seconds, `eventSourceARN`, ...).
Failures follow Lambda's rules: a reported item is retried from its sequence number, up to
`max_attempts`; then the records go to `failures.jsonl` (the local on-failure destination).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailpixel.config import Settings
from mailpixel.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

log = get_logger("ops.local.stream_poller")
Handler = Callable[[dict[str, Any], Any], Mapping[str, Any]]


def lambda_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A record from `get_records` in the shape Lambda hands to the function."""
    data = dict(record["dynamodb"])
    created = data.get("ApproximateCreationDateTime")
    if created is not None and hasattr(created, "timestamp"):
        data["ApproximateCreationDateTime"] = float(created.timestamp())
    return {
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,  # DynamoDB Local says "ddblocal"; Lambda says the real region
        "dynamodb": data,
        "eventSourceARN": stream_arn,
    }


class StreamPoller:
    """Polls every shard of the table's stream; `poll_once` for tests, `start`/`stop` for a thread."""

    def __init__(
        self,
        settings: Settings,
        handler: Handler,
        *,
        ddb: DynamoDBClient | None = None,
        streams: DynamoDBStreamsClient | None = None,
        batch_size: int = 100,
        interval: float = 0.5,
        max_attempts: int = 5,
        retry_delay: float = 1.0,
        failure_log: Path | None = None,
        table: str | None = None,
    ) -> None:
        from mailpixel.aws import dynamodb_client, streams_client

        self.settings = settings
        self.table = table or settings.table  # whose stream: the events table unless told
        self.handler = handler
        self.ddb = ddb or dynamodb_client(settings)
        self.streams = streams or streams_client(settings)
        self.batch_size = batch_size
        self.interval = interval
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.failure_log = failure_log or Path(settings.data_dir) / "enrich" / "failures.jsonl"
        self.stream_arn: str | None = None
        self._iterators: dict[str, str | None] = {}  # shard id → iterator (None: closed and drained)
        self._retry: dict[
            str, tuple[list[dict[str, Any]], int, float]
        ] = {}  # shard → records, tries, not before
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.invocations = 0

    # -- thread API ------------------------------------------------------------------------------
    def start(self) -> StreamPoller:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stream-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.poll_once()
            except Exception:  # noqa: BLE001 - DynamoDB Local restarting, say: try again shortly
                log.warning("stream_poll_failed", exc_info=True)
                busy = 0
            if not busy:
                self._stop.wait(self.interval)

    # -- polling ---------------------------------------------------------------------------------
    def _discover(self) -> None:
        if self.stream_arn is None:
            table = self.ddb.describe_table(TableName=self.table)["Table"]
            arn = table.get("LatestStreamArn")
            if not arn:
                raise RuntimeError(f"table {self.table} has no stream")
            self.stream_arn = arn
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            description = self.streams.describe_stream(**kwargs)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id not in self._iterators:
                    self._iterators[shard_id] = self.streams.get_shard_iterator(
                        StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                    )["ShardIterator"]
            last = description.get("LastEvaluatedShardId")
            if not last:
                return
            kwargs["ExclusiveStartShardId"] = last

    def poll_once(self) -> int:
        """Read each shard once and hand what arrived to the handler. Returns records handed."""
        self._discover()
        assert self.stream_arn is not None  # narrows the type for mypy only  # nosec B101
        handed = 0
        for shard_id, iterator in list(self._iterators.items()):
            retry = self._retry.get(shard_id)
            if retry is not None:
                records, tries, not_before = retry
                if time.monotonic() < not_before:
                    continue
                del self._retry[shard_id]
                handed += self._invoke(shard_id, records, tries)
                continue
            if iterator is None:
                continue
            try:
                response = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
            except self.streams.exceptions.TrimmedDataAccessException:
                # DynamoDB Local, with more than one table streaming (events and clicks), can
                # refuse an iterator taken at TRIM_HORIZON while its shard was empty; one taken
                # again now reads from the oldest record still there, as Lambda's poller would.
                iterator = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                response = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
            self._iterators[shard_id] = response.get("NextShardIterator")
            # As the enrich function's filter pattern in serverless.yml: new events only, not the
            # MODIFY records that enrichment's own updates add to the stream.
            records = [
                lambda_record(r, self.stream_arn, self.settings.region)
                for r in response.get("Records", [])
                if r.get("eventName") == "INSERT"
            ]
            if records:
                handed += self._invoke(shard_id, records, 0)
        return handed

    def _invoke(self, shard_id: str, records: list[dict[str, Any]], tries: int) -> int:
        self.invocations += 1
        try:
            result = self.handler({"Records": records}, None)
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        except Exception:  # noqa: BLE001 - Lambda treats a raised error as "the whole batch failed"
            log.exception("enrich_handler_raised")
            failed = {records[0]["dynamodb"]["SequenceNumber"]}
        if failed:
            # Lambda resumes from the lowest failed sequence number; records before it are done.
            first = min(i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] in failed)
            rest = records[first:]
            if tries + 1 >= self.max_attempts:
                self._give_up(rest)
            else:
                self._retry[shard_id] = (rest, tries + 1, time.monotonic() + self.retry_delay * 2**tries)
        return len(records)

    def _give_up(self, records: list[dict[str, Any]]) -> None:
        from mailpixel.files import open_private

        with open_private(self.failure_log) as fh:
            for record in records:
                fh.write(json.dumps(_without_pending_ip(record), default=str, sort_keys=True) + "\n")
        log.error("enrich_gave_up", extra={"records": len(records), "failure_log": str(self.failure_log)})

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Poll until a read brings nothing new and no retry is pending (tests, scripts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.poll_once() and not self._retry:
                return
        raise TimeoutError("stream still busy")


class Pollers(list[StreamPoller]):
    """Several pollers stopped together."""

    def stop(self, timeout: float = 10.0) -> None:
        for poller in self:
            poller.stop(timeout)


def start_local_enrichment(settings: Settings) -> Pollers:
    """`make run`'s enrichment: the same handlers as the `enrich` and `enrichClicks` Lambdas,
    fed by one poller per stream (opens, clicks)."""
    from mailpixel.enrich.clicks import build_click_handler
    from mailpixel.enrich.handler import build_handler
    from mailpixel.enrich.webhooks import webhook_hooks

    on_open, on_click = webhook_hooks(settings)  # MAILPIXEL_WEBHOOK_URL and _SECRET: direct delivery
    pollers = Pollers([StreamPoller(settings, build_handler(settings, before_write=on_open)).start()])
    clicks_failures = Path(settings.data_dir) / "enrich" / "click-failures.jsonl"
    click_handler = build_click_handler(settings, before_write=on_click)
    pollers.append(
        StreamPoller(
            settings, click_handler, table=settings.clicks_table, failure_log=clicks_failures
        ).start()
    )
    print(
        f"Enriching new opens and clicks from the streams of {settings.table} and {settings.clicks_table} "
        f"(geolocation: {settings.geo_provider})",
        flush=True,
    )
    return pollers


def _without_pending_ip(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the failure file keeps it: no full address (the event in the table still
    has it for `mailpixel reenrich`, until enrichment or retention removes it)."""
    data = record.get("dynamodb")
    if not isinstance(data, dict) or not isinstance(data.get("NewImage"), dict):
        return record
    image = {k: v for k, v in data["NewImage"].items() if k != "pending_ip"}
    return {**record, "dynamodb": {**data, "NewImage": image}}
