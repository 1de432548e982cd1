"""The sourced click-sequence corpus through the real /click and click enrichment (DynamoDB
Local): scanners flagged >= 95%, people kept human >= 99%, every miss named (bench section 14
reports the same run)."""

from __future__ import annotations

from bench.click_sequences import SECRET, TARGETS, click_path, load_corpus, measure
from mailpixel.pixel.app import create_app
from tests.conftest import all_items


def test_corpus_floor(settings, table):
    result = measure(settings)
    for name, figure in result["figures"].items():
        assert figure["percent"] >= TARGETS[name], (name, figure["misses"])
    # Each rule earns its place in the corpus: the sequence rules catch what no per-click rule can.
    for rule in ("honeypot", "burst", "multi_source", "head_request"):
        assert result["rules"].get(rule), rule
    # Sequences span stream batches: some clicks were counted human, then revised.
    assert result["revised_after_counting"] > 0


def test_every_sequence_cites_a_source():
    corpus = load_corpus()
    names = [s["name"] for s in corpus["sequences"]]
    assert len(names) == len(set(names))
    for sequence in corpus["sequences"]:
        assert sequence["source"] in corpus["sources"], sequence["name"]
        assert sequence["what"]
    hard = {
        "person_one_click_20_minutes",
        "person_two_clicks_40s_apart",
        "outlook_open_then_click_2s",
        "m365_egress_hours_later",
    }
    assert hard <= set(names)


def test_click_stores_the_signed_honeypot_mark_and_refuses_a_forged_one(settings, table, ddb):
    app = create_app(settings.with_overrides(signing_secrets=(SECRET,))).test_client()
    trap, link = click_path("u1", "honeypot", 1), click_path("u1", 0, 1)
    assert app.get(trap).status_code == 302 and app.get(link).status_code == 302
    stored = {item["url"]: item for item in all_items(ddb, settings.clicks_table)}
    assert stored["https://shop.example.com/p/honeypot?utm_source=mail"]["honeypot"] is True
    assert "honeypot" not in stored["https://shop.example.com/p/0?utm_source=mail"]
    # hp is signed: added to a real link, or removed from the honeypot, the URL is refused.
    assert app.get(link + "&hp=1").status_code == 400
    stripped = trap.replace("&hp=1", "")
    assert stripped != trap and app.get(stripped).status_code == 400
    assert len(all_items(ddb, settings.clicks_table)) == 2
