"""`mailpixel doctor` (issue 16): it passes on a healthy local stack and on a healthy stage, and
each check, broken on purpose, is reported with its fix. AWS is moto's server on loopback, the
app is the real one on a real port over DynamoDB Local, TLS is a real server with a certificate
made here."""

from __future__ import annotations

import datetime
import io
import socket
import ssl
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from mailpixel.config import Settings
from mailpixel.ops import doctor
from mailpixel.ops.cli import main
from mailpixel.ops.local.stack import free_port, local_server
from mailpixel.ops.stage import ALARM_TOPIC_OUTPUT, BASE_URL_OUTPUT
from tests.moto_aws import aws_env, create_stack, moto_endpoint  # noqa: F401 - fixtures
from tests.serving import serving

SECRET = "doctor-secret"


@pytest.fixture
def app_url(settings: Settings, table: str) -> Iterator[tuple[Settings, str]]:
    """The real pixel and api apps, as `make run` serves them, on a free port."""
    settings = settings.with_overrides(port=free_port(), signing_secrets=(SECRET,))
    server, _ = local_server(settings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield settings, f"http://127.0.0.1:{settings.port}"
    server.shutdown()
    thread.join(timeout=10)


def by_name(results: Any) -> dict[str, doctor.Result]:
    return {r.name: r for r in results}


def assert_fails_with_fix(result: doctor.Result, *words: str) -> None:
    line = result.line()
    assert result.ok is False and line.startswith("FAIL") and "fix: " in line, line
    for word in words:
        assert word in line, line


# -- the local stack ---------------------------------------------------------------------------


def test_doctor_passes_on_the_local_stack(app_url, monkeypatch, capsys):
    settings, _ = app_url
    assert settings.endpoint_url is not None
    for name, value in {
        "DYNAMODB_ENDPOINT_URL": settings.endpoint_url,
        "MAILPIXEL_TABLE": settings.table,
        "MAILPIXEL_META_TABLE": settings.meta_table,
        "MAILPIXEL_CLICKS_TABLE": settings.clicks_table,
        "PORT": str(settings.port),
        "MAILPIXEL_SIGNING_SECRETS": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert {line.split()[1] for line in lines[:-1]} == {
        "secrets", "tables", "streams", "pixel", "click", "health", "domain", "alarms"
    }, out  # fmt: skip
    assert not any(line.startswith("FAIL") for line in lines), out
    assert lines[-1] == "all checks passed"
    assert "signed pixel URL answers a GIF" in out


def test_a_missing_table_or_stream_fails_with_its_fix(settings, ddb, table):
    result, arns = doctor.check_tables(ddb, [settings.table, "no-such-table"], [settings.table])
    assert_fails_with_fix(result, "no-such-table", "ResourceNotFoundException", "make run")
    assert set(arns) == {settings.table}
    ddb.create_table(
        TableName=f"{settings.table}-plain",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    result, _ = doctor.check_tables(ddb, [f"{settings.table}-plain"], [f"{settings.table}-plain"])
    assert_fails_with_fix(result, "has no stream")


def broken_app(status: str, headers: list[tuple[str, str]], body: bytes = b"") -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, headers)
        return [body]

    return app


def test_a_cached_or_wrong_pixel_fails_with_its_fix():
    cached = broken_app(
        "200 OK", [("Content-Type", "image/gif"), ("Cache-Control", "max-age=3600")], b"GIF89a"
    )
    with serving(cached) as url:
        assert_fails_with_fix(doctor.check_pixel(url, SECRET), "lets a proxy cache it")
    html = broken_app("200 OK", [("Content-Type", "text/html"), ("Cache-Control", "no-store")], b"<p>")
    with serving(html) as url:
        assert_fails_with_fix(doctor.check_pixel(url, SECRET), "not a GIF")
    assert_fails_with_fix(doctor.check_pixel(f"http://127.0.0.1:{free_port()}", SECRET), "did not answer")


def test_a_redirecting_unsigned_click_fails_with_its_fix(app_url):
    _, url = app_url
    assert doctor.check_click(url).ok is True
    redirect = broken_app("302 Found", [("Location", "https://example.com/")])
    with serving(redirect) as url:
        assert_fails_with_fix(doctor.check_click(url), "answered 302 to https://example.com/")


def test_a_health_of_another_version_fails_with_its_fix(app_url):
    _, url = app_url
    assert doctor.check_health(url).ok is True
    assert_fails_with_fix(
        doctor.check_health(url, version="9.9.9"), "this CLI is 9.9.9", "deploy this version"
    )
    assert_fails_with_fix(doctor.check_health(f"http://127.0.0.1:{free_port()}"), "did not answer")


# -- the tracking domain: a real TLS server with a certificate made here ----------------------


def certificate(folder: Path, days: int) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"cert-{days}.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def tls_server(cert: Path) -> tuple[int, threading.Thread]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize(("days", "ok"), [(90, True), (10, False)])
def test_the_domain_certificate_must_last_30_more_days(tmp_path, days, ok):
    cert = certificate(tmp_path, days)
    port, thread = tls_server(cert)
    client = ssl.create_default_context(cafile=str(cert))
    result = doctor.check_domain("localhost", "127.0.0.1", port=port, context=client)
    thread.join(timeout=10)
    if ok:
        assert result.ok is True, result.line()
        assert "certificate valid 9" in result.detail or "certificate valid 8" in result.detail
    else:
        assert_fails_with_fix(result, "expires in", "renew")


def test_a_domain_pointing_elsewhere_or_an_untrusted_certificate_fails_with_its_fix(tmp_path):
    assert_fails_with_fix(
        doctor.check_domain("localhost", "127.0.0.2", port=free_port()), "not to 127.0.0.2", "CNAME 127.0.0.2"
    )
    cert = certificate(tmp_path, 90)
    port, thread = tls_server(cert)
    result = doctor.check_domain("localhost", "127.0.0.1", port=port)  # the system's CAs: not ours
    thread.join(timeout=10)
    assert_fails_with_fix(result, "TLS to localhost fails", "ACM certificate")


# -- a deployed stage: moto's server for SSM, DynamoDB, Lambda, CloudFormation and SNS ---------


def deploy_stage(
    stage: str, base_url: str, *, mappings: bool = True, subscriber: bool = True
) -> dict[str, Any]:
    """What `serverless deploy` leaves behind that doctor reads, made in moto."""
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=f"/mailpixel/{stage}/signing-secrets", Type="SecureString", Value=SECRET)
    ssm.put_parameter(Name=f"/mailpixel/{stage}/api-keys", Type="SecureString", Value="key1")
    ddb: Any = boto3.client("dynamodb")
    stream = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    arns = {}
    for kind in ("events", "meta", "clicks"):
        table = ddb.create_table(
            TableName=f"mailpixel-{stage}-{kind}",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            **({"StreamSpecification": stream} if kind != "meta" else {}),
        )["TableDescription"]
        arns[kind] = table.get("LatestStreamArn")
    lam = boto3.client("lambda")
    role = boto3.client("iam").create_role(RoleName=f"{stage}-enrich", AssumeRolePolicyDocument="{}")["Role"][
        "Arn"
    ]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def enrich(event, context): pass\n")
    uuids = []
    for kind in ("events", "clicks"):
        name = f"mailpixel-{stage}-enrich-{kind}"
        lam.create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role,
            Handler="handler.enrich",
            Code={"ZipFile": code.getvalue()},
        )
        uuids.append(
            lam.create_event_source_mapping(
                EventSourceArn=arns[kind], FunctionName=name, Enabled=mappings, StartingPosition="LATEST"
            )["UUID"]
        )
    sns = boto3.client("sns")
    topic = sns.create_topic(Name=f"mailpixel-{stage}-alarms")["TopicArn"]
    if subscriber:
        sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="ops@example.com")
    create_stack(
        boto3.client("cloudformation"),
        f"mailpixel-{stage}",
        {BASE_URL_OUTPUT: base_url, ALARM_TOPIC_OUTPUT: topic},
    )
    return {"topic": topic, "mappings": uuids}


def run_doctor(stage: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    code = main(["doctor", "--stage", stage])
    out = capsys.readouterr().out
    lines: dict[str, str] = {}
    for line in out.split("\n"):
        if line.startswith(("ok", "FAIL", "skip")):
            current = line.split()[1]
            lines[current] = line
        elif line.startswith("      fix: "):
            lines[current] += "\n" + line
    return code, lines


@pytest.mark.usefixtures("aws_env")
def test_doctor_passes_on_a_healthy_stage_and_reports_each_broken_part(app_url, capsys):
    settings, url = app_url
    deployed = deploy_stage("healthy", url)
    code, lines = run_doctor("healthy", capsys)
    assert code == 0, lines
    assert all(line.startswith(("ok", "skip")) for line in lines.values()), lines
    assert set(lines) == {"secrets", "tables", "streams", "pixel", "click", "health", "domain", "alarms"}
    assert "decrypts" in lines["secrets"] and "ipinfo-token not set" in lines["secrets"]

    # Break it: a secret gone, a mapping disabled, nobody on the alarm topic.
    boto3.client("ssm").delete_parameter(Name="/mailpixel/healthy/api-keys")
    boto3.client("lambda").update_event_source_mapping(UUID=deployed["mappings"][1], Enabled=False)
    sns = boto3.client("sns")
    for subscription in sns.list_subscriptions_by_topic(TopicArn=deployed["topic"])["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    code, lines = run_doctor("healthy", capsys)
    assert code == 1
    assert "FAIL" in lines["secrets"] and "--name /mailpixel/healthy/api-keys" in lines["secrets"]
    assert "FAIL" in lines["streams"] and "mailpixel-healthy-clicks: Disabled" in lines["streams"]
    assert "update-event-source-mapping" in lines["streams"]
    assert "FAIL" in lines["alarms"] and "aws sns subscribe --topic-arn" in lines["alarms"]
    assert lines["pixel"].startswith("ok") and lines["health"].startswith("ok")


@pytest.mark.usefixtures("aws_env")
def test_a_stage_that_is_not_deployed_fails_with_its_fix(capsys):
    code, lines = run_doctor("nowhere", capsys)
    assert code == 1
    assert "ParameterNotFound" in lines["secrets"] and "fix:" in lines["secrets"]
    assert "ResourceNotFoundException" in lines["tables"]
    assert "cannot read the CloudFormation stack mailpixel-nowhere" in lines["stack"]
    assert "npx serverless deploy --stage nowhere" in lines["stack"]


def test_without_a_secret_the_local_stack_passes_and_its_click_check_is_skipped(settings, table):
    """docs/tracking/clicks.md: with no signing secret the local stack follows unsigned clicks on
    purpose, so doctor does not fail it for that; everything else is still checked."""
    settings = settings.with_overrides(port=free_port())
    server, _ = local_server(settings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        results = by_name(doctor.local_checks(settings))
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert all(r.ok is not False for r in results.values()), [r.line() for r in results.values()]
    assert results["click"].ok is None and "follows unsigned clicks" in results["click"].detail
    assert results["pixel"].ok is True and "unsigned" in results["pixel"].detail
