"""`serverless package` output: the template's shape and what the Lambda zip holds."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import packaged_template

ELF_MACHINE_AARCH64 = 183


@pytest.fixture(scope="module")
def template(packaged: Path) -> dict[str, Any]:
    return packaged_template(packaged)


@pytest.fixture(scope="module")
def zip_names(packaged: Path) -> list[str]:
    with zipfile.ZipFile(packaged / "mailpixel.zip") as archive:
        return archive.namelist()


def resources_of(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_http_api_routes_the_pixel(template):
    routes = {
        r["Properties"]["RouteKey"] for r in resources_of(template, "AWS::ApiGatewayV2::Route").values()
    }
    assert {"GET /pixel", "HEAD /pixel", "GET /health"} <= routes
    assert resources_of(template, "AWS::ApiGatewayV2::Api")["HttpApi"]["Properties"]["ProtocolType"] == "HTTP"


def test_events_table_has_ttl_stream_index_and_recovery(template):
    table = template["Resources"]["EventsTable"]["Properties"]
    assert table["TableName"] == "mailpixel-test-events"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["email_id", "open_key"]
    (index,) = [i for i in table["GlobalSecondaryIndexes"] if i["IndexName"] == "by_user"]
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["user_id", "open_key"]


def test_functions_run_the_chosen_runtime_and_table(template):
    functions = resources_of(template, "AWS::Lambda::Function")
    pixel = functions["PixelLambdaFunction"]["Properties"]
    assert pixel["Runtime"] == "python3.13"
    assert pixel["Architectures"] == ["arm64"]
    assert pixel["Handler"] == "handler.pixel"
    assert pixel["Environment"]["Variables"]["MAILPIXEL_TABLE"] == "mailpixel-test-events"


def test_zip_holds_the_app_and_its_dependencies_only(zip_names):
    tops = {name.split("/")[0] for name in zip_names}
    assert {"handler.py", "mailpixel", "flask", "werkzeug", "serverless_wsgi.py", "requests"} <= tops
    forbidden = {
        "boto3",
        "botocore",
        "tests",
        "node_modules",
        ".venv",
        ".data",
        "bench",
        "package.json",
        "bin",
    }
    assert not tops & forbidden
    # Bytecode for the runtime's Python only (deploy/bytecode.js), beside every module shipped.
    compiled = {n for n in zip_names if n.endswith(".pyc")}
    assert all(n.endswith(".cpython-313.pyc") and "/__pycache__/" in f"/{n}" for n in compiled)
    for module in (n for n in zip_names if n.startswith("mailpixel/") and n.endswith(".py")):
        folder, name = module.rsplit("/", 1)
        assert f"{folder}/__pycache__/{name[:-3]}.cpython-313.pyc" in compiled, module
    assert "mailpixel/local.py" not in zip_names


def test_compiled_dependencies_match_lambda_python_and_cpu(packaged: Path, zip_names):
    shared = [n for n in zip_names if n.endswith(".so")]
    assert shared, "expected compiled wheels (markupsafe, ua-parser-rs, ...)"
    with zipfile.ZipFile(packaged / "mailpixel.zip") as archive:
        for name in shared:
            assert "cpython-313" in name or "abi3" in name, name
            header = archive.read(name)[:20]
            assert header[:4] == b"\x7fELF", name
            (machine,) = struct.unpack_from("<H", header, 18)
            assert machine == ELF_MACHINE_AARCH64, name


def test_fallback_queue_feeds_the_drain_function(template):
    resources = template["Resources"]
    queue = resources["FallbackQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] == 1209600
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["FallbackDeadLetterQueue", "Arn"]}
    (mapping,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and "FallbackQueue" in json.dumps(r["Properties"]["EventSourceArn"])
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    pixel_env = resources["PixelLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert pixel_env["MAILPIXEL_FALLBACK_QUEUE_URL"] == {"Ref": "FallbackQueue"}


def _role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = template["Resources"][role]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def test_the_public_pixel_cannot_read_opens_or_api_keys(template):
    """Issue 11, item 6: the unauthenticated /pixel ran with the query API's permissions."""
    functions = resources_of(template, "AWS::Lambda::Function")
    assert functions["PixelLambdaFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["PixelRole", "Arn"]}
    assert functions["ApiLambdaFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["ApiRole", "Arn"]}
    pixel = _role_statements(template, "PixelRole")
    assert _actions(pixel) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:PutItem",
        "sqs:SendMessage",
        "ssm:GetParameter",
    }
    (ssm,) = [s for s in pixel if s["Action"] == ["ssm:GetParameter"]]
    assert "signing-secrets" in json.dumps(ssm["Resource"]) and "api-keys" not in json.dumps(ssm["Resource"])
    drain = _role_statements(template, "DrainRole")  # verifies quarantined opens
    assert "signing-secrets" in json.dumps([s for s in drain if s["Action"] == ["ssm:GetParameter"]])
    api_statements = _role_statements(template, "ApiRole")
    api = _actions(api_statements)
    assert {"dynamodb:Query", "dynamodb:GetItem", "dynamodb:BatchGetItem"} <= api
    assert not api & {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "sqs:SendMessage"}
    # Its one write, recipient counts (PUT /api/emails/{id}/recipients), reaches the meta table
    # only: the API can never write an open or a click.
    (put,) = [s for s in api_statements if "dynamodb:PutItem" in s["Action"]]
    assert put["Action"] == ["dynamodb:PutItem"] and put["Resource"] == [{"Fn::GetAtt": ["MetaTable", "Arn"]}]


def test_query_api_and_dashboard_routes_integrate_with_the_api_function(template):
    integrations = {
        name: json.dumps(r["Properties"]["IntegrationUri"])
        for name, r in resources_of(template, "AWS::ApiGatewayV2::Integration").items()
    }
    target_of: dict[str, str] = {}
    for route in resources_of(template, "AWS::ApiGatewayV2::Route").values():
        integration = json.dumps(route["Properties"]["Target"])
        (name,) = [n for n in integrations if f'"{n}"' in integration]
        target_of[route["Properties"]["RouteKey"]] = integrations[name]
    # Every method reaches the app, so an unanswered one is the app's 405 with `Allow`.
    for key in ("ANY /api/{proxy+}", "ANY /dashboard"):
        assert "ApiLambdaFunction" in target_of[key] and "PixelLambdaFunction" not in target_of[key], key
    for key in ("GET /pixel", "HEAD /pixel", "GET /health", "ANY /pixel", "ANY /click", "ANY /health"):
        assert "PixelLambdaFunction" in target_of[key], key


def test_campaign_sized_limits(template):
    """README "Scale design": nothing refused at 1,500 opens/s for one email and 5,000/s across
    emails, the query API kept low, the pixel's concurrency reserved, drain capped."""
    stage = resources_of(template, "AWS::ApiGatewayV2::Stage")["HttpApiStage"]["Properties"]
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] <= 200
    for route in ("GET /pixel", "HEAD /pixel"):
        limits = stage["RouteSettings"][route]
        assert limits["ThrottlingRateLimit"] >= 5000
        assert 1500 <= limits["ThrottlingBurstLimit"] <= 5000  # the account's default burst
    functions = resources_of(template, "AWS::Lambda::Function")
    assert functions["PixelLambdaFunction"]["Properties"]["ReservedConcurrentExecutions"] >= 200
    mappings = [r["Properties"] for r in resources_of(template, "AWS::Lambda::EventSourceMapping").values()]
    (drain,) = [m for m in mappings if "FallbackQueue" in json.dumps(m["EventSourceArn"])]
    assert drain["ScalingConfig"] == {"MaximumConcurrency": 2}
    (enrich,) = [m for m in mappings if "EventsTable" in json.dumps(m["EventSourceArn"])]
    assert enrich["ParallelizationFactor"] >= 2
    assert enrich["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
