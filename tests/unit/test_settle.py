"""What a webhook does when its settle window has passed (`model.webhooks.settled`), given the
click as stored then."""

from __future__ import annotations

from mailpixel.model.webhooks import DROP, SEND, WAIT, click_payload, settled, stored_click_key

EVENT = {"email_id": "e1", "request_id": "r1", "clicked_at": "2026-12-07T10:00:00.000Z", "user_id": "u1"}
HUMAN = {"machine_click": False, "client": {"name": "Chrome"}}


def test_a_click_is_sent_only_if_still_human_and_enriched():
    payload = click_payload(EVENT, HUMAN)
    assert stored_click_key(payload) == {
        "email_id": {"S": "e1"},
        "click_key": {"S": "2026-12-07T10:00:00.000Z#r1"},
    }
    enriched = {"enriched_at": "2026-12-07T10:00:01.000Z"}
    assert settled(payload, {**enriched, "machine_click": False}) == SEND
    assert settled(payload, {**enriched, "machine_click": True}) == DROP  # revised meanwhile
    assert settled(payload, None) == DROP  # erased meanwhile
    assert settled(payload, {"machine_click": False}) == WAIT  # its enrichment is being retried


def test_other_events_are_not_held():
    assert stored_click_key({"id": "open_x", "type": "first_human_open"}) is None
    assert settled({"id": "open_x", "type": "first_human_open"}, None) == SEND
    assert settled({"id": "test_1", "type": "human_click", "test": True}, None) == SEND  # no time: a sample
