"""Erasure (`mailpixel forget`) against DynamoDB Local: what goes, what stays, and a second run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailpixel.ddb.store import EventStore
from mailpixel.model.events import RequestFacts, build_open_event
from mailpixel.ops import cli
from mailpixel.ops.erasure import Eraser, ErasureResult
from tests.conftest import all_items, target_args

EPOCH_MS = 1_795_528_140_123
EXPIRES = EPOCH_MS // 1000 + 400 * 86_400


def put_open(store: EventStore, email_id: str, user_id: str, n: int) -> None:
    facts = RequestFacts(
        request_id=f"r-{email_id}-{user_id}-{n}", epoch_ms=EPOCH_MS + n, ip="198.51.100.7", user_agent="UA"
    )
    store.put_event(
        build_open_event(
            email_id=email_id,
            user_id=user_id,
            facts=facts,
            retention_seconds=400 * 86_400,
            stored_ip="198.51.100.7",
        )
    )


def put_meta(ddb, meta_table: str, pk: str, sk: str, **extra: str) -> None:
    item = {"pk": {"S": pk}, "sk": {"S": sk}, "expires_at": {"N": str(EXPIRES)}}
    item.update({k: {"S": v} for k, v in extra.items()})
    ddb.put_item(TableName=meta_table, Item=item)


@pytest.fixture
def seeded(store, ddb, settings):
    """u1 opened e1 (twice), e2 and e3; u2 opened e1; someone unnamed opened e1 and e4."""
    for email, user, n in [
        ("e1", "u1", 1),
        ("e1", "u1", 2),
        ("e2", "u1", 3),
        ("e3", "u1", 4),
        ("e1", "u2", 5),
    ]:
        put_open(store, email, user, n)
    put_open(store, "e1", "", 6)
    put_open(store, "e4", "", 7)
    meta = settings.meta_table
    put_meta(ddb, meta, "user#u1", "stats", user_id="u1")
    put_meta(ddb, meta, "user#u1", "prefs", user_id="u1")
    put_meta(ddb, meta, "user#u2", "stats", user_id="u2")
    put_meta(ddb, meta, "email#e1", "stats")
    put_meta(ddb, meta, "email#e1", "day#2026-11-24")
    put_meta(ddb, meta, "email#e1", "opener#u1", user_id="u1")
    put_meta(ddb, meta, "email#e1", "opener#u2", user_id="u2")
    put_meta(ddb, meta, "email#e2", "opener#u1", user_id="u1")
    put_meta(ddb, meta, "email#e3", "stats")
    put_meta(ddb, meta, "all", "day#2026-11-24")
    put_meta(ddb, meta, "geo#198.51.100.7", "geo")
    return Eraser(ddb, settings.table, settings.meta_table)


def meta_keys(ddb, settings) -> set[tuple[str, str]]:
    return {(i["pk"], i["sk"]) for i in all_items(ddb, settings.meta_table)}


def test_forget_user_deletes_events_found_only_through_the_user_index(seeded, ddb, table, settings):
    assert seeded.forget_user("u1") == ErasureResult(events=4, meta=4, emails=3)
    events = {(i["email_id"], i.get("user_id")) for i in all_items(ddb, table)}
    assert events == {("e1", "u2"), ("e1", None), ("e4", None)}
    assert meta_keys(ddb, settings) == {
        ("user#u2", "stats"),
        ("email#e1", "stats"),
        ("email#e1", "day#2026-11-24"),
        ("email#e1", "opener#u2"),
        ("email#e3", "stats"),
        ("all", "day#2026-11-24"),
        ("geo#198.51.100.7", "geo"),
    }
    assert not [i for i in all_items(ddb, settings.meta_table) if i.get("user_id") == "u1"]
    assert seeded.forget_user("u1") == ErasureResult(events=0, meta=0, emails=0)


def test_forget_email_deletes_its_events_and_derived_items(seeded, ddb, table, settings):
    assert seeded.forget_email("e1") == ErasureResult(events=4, meta=4, emails=1)
    events = {(i["email_id"], i.get("user_id")) for i in all_items(ddb, table)}
    assert events == {("e2", "u1"), ("e3", "u1"), ("e4", None)}
    assert not [k for k in meta_keys(ddb, settings) if k[0] == "email#e1"]
    assert ("user#u1", "stats") in meta_keys(ddb, settings)
    assert seeded.forget_email("e1") == ErasureResult(events=0, meta=0, emails=0)


def test_forget_user_in_batches_beyond_one_request(store, ddb, table, settings):
    """130 events in 130 emails: several BatchGetItem (100) and BatchWriteItem (25) calls."""
    for n in range(130):
        put_open(store, f"bulk-{n:03d}", "heavy", n)
        put_meta(ddb, settings.meta_table, f"email#bulk-{n:03d}", "opener#heavy", user_id="heavy")
    put_open(store, "bulk-000", "light", 999)
    eraser = Eraser(ddb, settings.table, settings.meta_table)
    assert eraser.forget_user("heavy") == ErasureResult(events=130, meta=130, emails=130)
    assert [i["user_id"] for i in all_items(ddb, table)] == ["light"]
    assert all_items(ddb, settings.meta_table) == []


def test_cli_forget_prints_counts_and_zero_the_second_time(seeded, settings, monkeypatch, capsys):
    monkeypatch.setenv("MAILPIXEL_TABLE", settings.table)
    monkeypatch.setenv("MAILPIXEL_META_TABLE", settings.meta_table)
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", settings.endpoint_url or "")
    assert cli.main(["forget", "--user-id", "u1"]) == 0
    assert capsys.readouterr().out == "deleted 4 events and 4 derived items of user_id u1\n"
    assert cli.main(["forget", "--user-id", "u1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "user_id": "u1",
        "events": 0,
        "meta": 0,
        "emails": 0,
        "clicks": 0,
        "local_lines": 0,
    }
    assert cli.main(["forget", "--email-id", "e1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "email_id": "e1",
        "events": 2,
        "meta": 3,
        "emails": 1,
        "clicks": 0,
        "local_lines": 0,
    }


def test_cli_forget_needs_exactly_one_subject(capsys):
    with pytest.raises(SystemExit):
        cli.main(["forget"])
    with pytest.raises(SystemExit):
        cli.main(["forget", "--user-id", "u", "--email-id", "e"])
    assert "one of the arguments" in capsys.readouterr().err


class Interrupted(RuntimeError):
    """The operator's Ctrl-C, or a lost connection, in the middle of a run."""


@pytest.mark.parametrize("subject", ["user", "email"])
def test_an_interrupted_forget_finishes_when_run_again(store, ddb, table, settings, monkeypatch, subject):
    """Keys are deleted a page at a time: a run stopped after its first page leaves the rest,
    and nothing it needs to find it, for the next run; the counts of both runs add up."""
    from mailpixel.ops import erasure

    monkeypatch.setattr(erasure, "PAGE", 50)
    for n in range(130):
        email = f"bulk-{n % 7}" if subject == "user" else "campaign"
        put_open(store, email, "heavy" if subject == "user" else f"u{n}", n)
        put_meta(
            ddb,
            settings.meta_table,
            f"email#{email}",
            f"opener#{'heavy' if subject == 'user' else n}",
            user_id="x",
        )
    writes = {"n": 0}

    def stop_on_third_write(**_: object) -> None:
        writes["n"] += 1
        if writes["n"] == 3:
            raise Interrupted

    ddb.meta.events.register("before-call.dynamodb.BatchWriteItem", stop_on_third_write)
    eraser = Eraser(ddb, settings.table, settings.meta_table)
    forget = eraser.forget_user if subject == "user" else eraser.forget_email
    with pytest.raises(Interrupted):
        forget("heavy" if subject == "user" else "campaign")
    left = len(all_items(ddb, table))
    assert 0 < left < 130
    ddb.meta.events.unregister("before-call.dynamodb.BatchWriteItem", stop_on_third_write)
    second = forget("heavy" if subject == "user" else "campaign")
    assert second.events == left
    assert all_items(ddb, table) == []
    assert all_items(ddb, settings.meta_table) == []


def test_forget_reaches_click_failures_and_undelivered_webhooks(settings, table, capsys, monkeypatch):
    """`make run` keeps failed click enrichments and undelivered webhooks (user id, location) on
    disk; `forget` removes their lines as it does the fallback's."""
    from mailpixel.enrich.webhooks import DirectOutbox, outbox_for
    from mailpixel.files import open_private
    from mailpixel.ops.local.stack import free_port

    monkeypatch.setenv("MAILPIXEL_DATA_DIR", settings.data_dir)
    # A real undelivered webhook: nothing listens on the port, every try fails.
    # No settle window: the undelivered webhook is written at once (the window is tested apart).
    local = settings.with_overrides(
        webhook_url=f"http://127.0.0.1:{free_port()}/hook", webhook_secret="s", webhook_settle_seconds=0
    )
    outbox = outbox_for(local)
    assert isinstance(outbox, DirectOutbox)
    outbox.delays = ()
    outbox.put({"id": "click_1", "email_id": "e1", "user_id": "gone", "geo": {"city": "Paris"}})
    outbox.put({"id": "click_2", "email_id": "e1", "user_id": "stays", "geo": {"city": "Lyon"}})
    # What the clicks stream poller writes when enrichment gives up (stream records).
    click_failures = Path(settings.data_dir) / "enrich" / "click-failures.jsonl"
    record = {"dynamodb": {"NewImage": {"email_id": {"S": "e1"}, "user_id": {"S": "gone"}}}}
    with open_private(click_failures) as fh:
        fh.write(json.dumps(record) + "\n")
    assert cli.main(["forget", "--user-id", "gone", "--format", "json", *target_args(settings)]) == 0
    assert json.loads(capsys.readouterr().out)["local_lines"] == 2
    assert "gone" not in outbox.failed.read_text() + click_failures.read_text()
    assert "stays" in outbox.failed.read_text()
