"""The packaged template's click path: the routes, the clicks table, and the one write it may make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import packaged_template


@pytest.fixture(scope="module")
def template(packaged: Path) -> dict[str, Any]:
    return packaged_template(packaged)


def test_click_routes_go_to_the_pixel_function(template):
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]["Target"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert routes["GET /click"] == routes["HEAD /click"] == routes["GET /pixel"]


def test_clicks_table_is_apart_with_its_own_key(template):
    table = template["Resources"]["ClicksTable"]["Properties"]
    assert table["TableName"] == "mailpixel-test-clicks"
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["email_id", "click_key"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    env = template["Resources"]["PixelLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MAILPIXEL_CLICKS_TABLE"] == "mailpixel-test-clicks"


def test_who_may_write_clicks_and_how(template):
    """The click path and the drain put clicks; only the clicks' enrichment updates them. The
    enrichment also reads a recipient's clicks (settling sequences) and the webhooks function
    reads one click (is it still human after the settle window?)."""
    grants: dict[str, list[Any]] = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                if {"Fn::GetAtt": ["ClicksTable", "Arn"]} in statement["Resource"]:
                    grants.setdefault(name, []).append(statement["Action"])
    assert grants == {
        "PixelRole": [["dynamodb:PutItem"]],
        "DrainRole": [["dynamodb:PutItem"]],
        "ClickEnrichRole": [["dynamodb:UpdateItem", "dynamodb:BatchGetItem"]],
        "WebhooksRole": [["dynamodb:GetItem"]],
    }


def test_new_clicks_stream_into_their_enrichment(template):
    mappings = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["ClicksTable", "StreamArn"]}
    ]
    (mapping,) = mappings
    assert mapping["FunctionName"] == {"Fn::GetAtt": ["EnrichClicksLambdaFunction", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    handler = template["Resources"]["EnrichClicksLambdaFunction"]["Properties"]["Handler"]
    assert handler == "handler.enrich_clicks"


def test_webhooks_retry_for_about_a_day_then_dead_letter(template):
    queue = template["Resources"]["WebhookQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 20  # tests/unit/test_webhooks.py: ~24 h of backoff
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]}
    function = template["Resources"]["WebhooksLambdaFunction"]["Properties"]
    assert function["Handler"] == "handler.webhooks"
    enrich = template["Resources"]["EnrichLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert enrich["MAILPIXEL_WEBHOOKS"] == "off"  # off unless deployed with --param="webhooks=on"
