"""`serverless package` output: the template's shape and what the Lambda zip holds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from mailpixel.model.keys import geo_key, geo_pk
from tests.conftest import package_service, packaged_template

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
    """docs/scale.md: nothing refused at 1,500 opens/s for one email and 5,000/s across
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


# Prints each .pyc's recorded source path (co_filename), read by the Python that wrote it.
SOURCE_PATHS = """
import marshal, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive:
    for name in archive.namelist():
        if name.endswith(".pyc"):
            print(name, marshal.loads(archive.read(name)[16:]).co_filename)
"""


def runtime_python() -> str:
    """The Lambda runtime's Python (3.13), found where deploy/bytecode.js finds it."""
    candidates = [os.environ.get("MAILPIXEL_BYTECODE_PYTHON"), shutil.which("python3.13")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        prefix = subprocess.run([pyenv, "prefix", "3.13.0"], capture_output=True, text=True, check=False)
        candidates.append(f"{prefix.stdout.strip()}/bin/python3.13" if prefix.returncode == 0 else None)
    for candidate in filter(None, candidates):
        version = [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        if subprocess.run(version, capture_output=True, text=True, check=False).stdout.strip() == "3.13":
            return candidate
    raise AssertionError("no Python 3.13: deploy/bytecode.js could not have compiled the zip either")


def test_two_packagings_give_the_same_zip(packaged: Path, tmp_path: Path):
    """Issue 16, item 3: every build differed (temporary .pyc paths, entry times), so every
    deploy uploaded and updated every function."""
    again = package_service(tmp_path / "again")
    first, second = (
        hashlib.sha256((f / "mailpixel.zip").read_bytes()).hexdigest() for f in (packaged, again)
    )
    assert first == second
    with zipfile.ZipFile(packaged / "mailpixel.zip") as archive:
        entries = archive.infolist()
    names = [e.filename for e in entries]
    assert names == sorted(names)
    assert {e.date_time for e in entries} == {(1980, 1, 1, 0, 0, 0)}
    assert {e.external_attr >> 16 for e in entries} == {0o100644, 0o100755}


def test_bytecode_names_its_source_under_var_task(packaged: Path):
    """Tracebacks on Lambda show /var/task/..., where the module is, not the build's /tmp folder."""
    result = subprocess.run(
        [runtime_python(), "-c", SOURCE_PATHS, str(packaged / "mailpixel.zip")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    recorded = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert len(recorded) > 200
    for pyc, source in recorded.items():
        compiled = PurePosixPath(pyc)  # <folder>/__pycache__/<module>.cpython-313.pyc
        module = compiled.name.split(".")[0]
        assert source == str(PurePosixPath("/var/task", compiled.parent.parent, f"{module}.py")), pyc


@pytest.mark.parametrize("role", ["EnrichRole", "ClickEnrichRole"])
def test_enrichment_batch_writes_only_geolocation_cache_items(template, role):
    """Issue 18, item 16: the enrichment roles could BatchWriteItem anywhere in the meta table;
    they use it only for the geolocation cache (pk `geo#<ip>`)."""
    meta = [
        s for s in _role_statements(template, role) if s["Resource"] == [{"Fn::GetAtt": ["MetaTable", "Arn"]}]
    ]
    (batch_write,) = [s for s in meta if "dynamodb:BatchWriteItem" in s["Action"]]
    assert batch_write["Action"] == ["dynamodb:BatchWriteItem"]
    assert batch_write["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{geo_pk.text}*"]}
    }
    assert geo_key("203.0.113.9")["pk"]["S"].startswith(geo_pk.text)  # the key the cache writes
    # Everything else they did on the meta table is still allowed, anywhere in it.
    (rest,) = [s for s in meta if "Condition" not in s]
    # Clicks only: a revision's ConditionCheck that the batch counting the click committed.
    revision = {"dynamodb:ConditionCheckItem"} if role == "ClickEnrichRole" else set()
    assert set(rest["Action"]) == {
        "dynamodb:BatchGetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        *revision,
    }
