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
    (enrich,) = [m for m in mappings if "StreamArn" in json.dumps(m["EventSourceArn"])]
    assert enrich["ParallelizationFactor"] >= 2
    assert enrich["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
