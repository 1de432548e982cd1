"""`mailpixel reenrich`: events that missed enrichment get it, once, from the table itself."""

from __future__ import annotations

import json

from mailpixel.ops.cli import main
from tests.conftest import all_items, http_api_event, target_args


def test_reenrich_enriches_what_the_stream_never_did(
    ipinfo, monkeypatch, request, settings, ddb, table, capsys
):
    monkeypatch.setenv("IPINFO_URL", ipinfo.url)
    lambda_handler = request.getfixturevalue("lambda_handler")
    for n in range(3):
        lambda_handler(
            http_api_event(f"email_id=e{n}&user_id=u", request_id=f"r{n}", source_ip="81.2.69.160"), None
        )
    assert all("enriched_at" not in i for i in all_items(ddb, table))
    args = ["reenrich", *target_args(settings)]

    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {"found": 3, "enriched": 3, "failed": 0}
    items = all_items(ddb, table)
    assert all(i["geo"]["country"] and i["client"]["name"] and "enriched_at" in i for i in items)
    assert ipinfo.requests == 1  # one address, looked up once, then cached

    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {"found": 0, "enriched": 0, "failed": 0}
