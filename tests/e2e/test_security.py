"""Security checks: the packaged template (cfn-lint, IAM without wildcards), bandit, and no
secret in the repository or in a log line.

IAM rule, checked on every IAM statement of the packaged CloudFormation template: no `Allow`
statement may have `NotAction`/`NotResource`, an action containing `*` (neither `*` nor
`service:*` nor `service:Get*`), or a resource that is `*`. The one tolerated wildcard is
the one the Serverless Framework writes for its own log groups: a CloudWatch Logs
`log-group:` ARN may end in `:*` (every stream of that group) and name the stage's function
log groups by prefix (`/aws/lambda/<service>-<stage>*`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailpixel.aws import dynamodb_client
from mailpixel.config import Settings
from mailpixel.signing import make_url
from tests.app_logs import app_log_to
from tests.conftest import ROOT, all_items, http_api_event, packaged_template
from tests.fake_ipinfo import FakeIpinfo
from tests.pixel_asserts import assert_lambda_pixel

BIN = Path(sys.executable).parent
TEMPLATE = "cloudformation-template-update-stack.json"
IAM_TYPES = ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")

# What a leaked credential looks like. The scan also proves it can find each of these (below).
SECRET_PATTERNS = {
    "aws_access_key_id": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    "aws_secret_access_key": re.compile(
        r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?(?![A-Za-z0-9/+=]*EXAMPLE)[A-Za-z0-9/+=]{40}\b"
    ),
    "private_key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY"),
    "ipinfo_token": re.compile(
        r"(?i)(?:ipinfo[\w.]*[/?&](?:[\w/.?=&-]*?)token=|ipinfo_?token[\"']?\s*[:=]\s*[\"']?)[0-9a-f]{14}\b"
    ),
    "slack_or_github_token": re.compile(r"\b(?:xox[baprs]-[0-9A-Za-z-]{10,}|gh[pousr]_[0-9A-Za-z]{36})\b"),
}

SIGNING_SECRET = "sig-secret-3f9d0b7c1e2a4f68"
ROTATED_SECRET = "old-secret-77aa01c4d2e9b35f"
IPINFO_TOKEN = "abcdef" + "12345678"  # the shape of a real ipinfo token (14 hex), split so the scan passes
API_KEY = "api-key-5c1f2e9a0b7d3c44"


# ---------------------------------------------------------------------------------------------
# The packaged template


@pytest.fixture(scope="module")
def template(packaged: Path) -> dict[str, Any]:
    return packaged_template(packaged)


def test_cfn_lint_passes_on_the_packaged_template(packaged: Path) -> None:
    """`.cfnlintrc` at the repository root ignores only W3005 (osls's redundant DependsOn)."""
    config = (ROOT / ".cfnlintrc").read_text()
    ignored = re.findall(r"^\s*-\s*(\w+)", config.split("ignore_checks:", 1)[1], re.MULTILINE)
    assert ignored == ["W3005"]
    result = subprocess.run(
        [str(BIN / "cfn-lint"), str(packaged / TEMPLATE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _strings(value: Any) -> Iterator[str]:
    """Every literal string inside a value (through Fn::Join, Fn::Sub, lists, ...), so a
    wildcard cannot hide inside an intrinsic function."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _joined(value: Any) -> str:
    """A resource ARN as one string: Fn::Join / Fn::Sub flattened, references as placeholders."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_joined(p) for p in parts)
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return str(sub if isinstance(sub, str) else sub[0])
    if isinstance(value, dict) and "Ref" in value:
        return "${" + str(value["Ref"]) + "}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "${" + ".".join(map(str, value["Fn::GetAtt"])) + "}"
    return json.dumps(value)


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in template["Resources"].items():
        if resource["Type"] not in IAM_TYPES:
            continue
        props = resource["Properties"]
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props:
            documents.append(props["PolicyDocument"])
        for document in documents:
            found = document["Statement"]
            for statement in found if isinstance(found, list) else [found]:
                yield name, statement


LOG_GROUP_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:logs:\$\{AWS::Region\}:\$\{AWS::AccountId\}:log-group:/aws/lambda/[\w.-]+\*?(?::\*)*$"
)


def wildcard_problems(template: dict[str, Any]) -> list[str]:
    problems = []
    for name, statement in statements(template):
        if statement.get("Effect") != "Allow":
            continue
        where = f"{name}/{statement.get('Sid', '?')}"
        for key in ("NotAction", "NotResource", "NotPrincipal"):
            if key in statement:
                problems.append(f"{where}: {key} allows everything else")
        actions = statement.get("Action", [])
        for action in _strings(actions):
            if "*" in action:
                problems.append(f"{where}: wildcard action {action!r}")
        resources = statement.get("Resource", [])
        for resource in resources if isinstance(resources, list) else [resources]:
            arn = _joined(resource)
            if arn.strip() == "*":
                problems.append(f"{where}: Resource '*'")
            elif "*" in arn and not LOG_GROUP_ARN.match(arn):
                problems.append(f"{where}: wildcard resource {arn!r}")
    return problems


def test_no_iam_statement_has_a_wildcard_action_or_resource(template: dict[str, Any]) -> None:
    found = list(statements(template))
    assert len(found) >= 3, "the template should grant the functions' permissions"
    assert wildcard_problems(template) == []


def test_the_wildcard_check_catches_what_it_should(template: dict[str, Any]) -> None:
    """The rule above, shown to fail on the shapes it forbids (a check that never fails checks nothing)."""
    role = next(r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role")
    bad_statements = [
        {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:dynamodb:::table/x"},
        {"Effect": "Allow", "Action": ["dynamodb:*"], "Resource": "arn:aws:dynamodb:::table/x"},
        {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::b"},
        {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": {"Fn::Join": ["", ["arn:aws:sqs:", "*"]]},
        },
        {"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "arn:aws:s3:::b"},
    ]
    for bad in bad_statements:
        doctored = json.loads(json.dumps(template))
        doctored_role = next(r for r in doctored["Resources"].values() if r["Type"] == "AWS::IAM::Role")
        doctored_role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(bad)
        assert wildcard_problems(doctored), bad
    assert role["Properties"]["Policies"], "the role carries inline policies"


# ---------------------------------------------------------------------------------------------
# bandit


def test_bandit_finds_nothing_in_the_package() -> None:
    result = subprocess.run(
        [str(BIN / "bandit"), "-q", "-r", "mailpixel", "handler.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# No secret in the repository


def repository_files() -> list[Path]:
    """Tracked files and new files not ignored by .gitignore: what a commit would publish."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def find_secrets(text: str) -> list[str]:
    return [
        f"{kind}: {match.group(0)[:12]}…"
        for kind, pattern in SECRET_PATTERNS.items()
        for match in pattern.finditer(text)
    ]


def test_no_secret_token_or_key_in_the_repository() -> None:
    files = repository_files()
    assert any(f.name == "serverless.yml" for f in files) and len(files) > 20
    problems = []
    for path in files:
        if path.stat().st_size > 5_000_000:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        problems += [f"{path.relative_to(ROOT)}: {found}" for found in find_secrets(text)]
    assert problems == []


@pytest.mark.parametrize(
    "leak",
    [
        # Built at run time, so this file itself holds no match.
        "aws_access_key_id = " + "AKIA" + "Q3EGRKVZ7PXW5TYU",
        "aws_secret_access_key: " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "ZZZZZZZZZZ",
        "-----BEGIN " + "RSA PRIVATE KEY-----",
        "IPINFO_TOKEN=" + "0123456789abcd",
        "https://ipinfo.io/8.8.8.8?token=" + "0123456789abcd",
        "token: " + "ghp_" + "a" * 36,
    ],
)
def test_the_secret_scan_finds_each_kind_of_leak(leak: str) -> None:
    assert find_secrets(f"some text\n{leak}\nmore text")


# ---------------------------------------------------------------------------------------------
# No secret in log lines


@pytest.fixture
def configured_handler(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """The real handler with signing secrets, an ipinfo token and an API key in its environment."""
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", f"{SIGNING_SECRET},{ROTATED_SECRET}")
    monkeypatch.setenv("IPINFO_TOKEN", IPINFO_TOKEN)
    monkeypatch.setenv("MAILPIXEL_API_KEYS", API_KEY)
    monkeypatch.setenv("MAILPIXEL_LOG_LEVEL", "DEBUG")
    handler: Callable[..., Any] = request.getfixturevalue("lambda_handler")
    return handler


def test_no_secret_or_token_in_log_lines(
    configured_handler: Callable[..., Any],
    settings: Settings,
    table: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mailpixel.enrich.handler import build_handler
    from mailpixel.ops.local.stream_poller import StreamPoller

    caplog.set_level("DEBUG")
    log_file = tmp_path / "lambda.log"
    signed = make_url("https://example.test", "e-secret-test", "u1", SIGNING_SECRET, t=int(time.time()))
    query = signed.split("?", 1)[1]
    rotated = make_url("https://example.test", "e-rotated", "u2", ROTATED_SECRET).split("?", 1)[1]
    tampered = query.replace("u1", "u2")
    with app_log_to(log_file):
        for raw, ip in (
            (query, "8.8.8.8"),
            (rotated, "1.1.1.1"),
            (tampered, "9.9.9.9"),
            ("email_id=unsigned", "8.8.4.4"),
        ):
            event = http_api_event(raw, source_ip=ip, headers={"Authorization": f"Bearer {API_KEY}"})
            event["requestContext"]["timeEpoch"] = int(time.time() * 1000)
            assert_lambda_pixel(configured_handler(event, None))
        api = http_api_event(
            "", path="/api/emails/e-secret-test/opens", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert configured_handler(api, None)["statusCode"] == 200
        wrong = http_api_event(
            "", path="/api/emails/e-secret-test/opens", headers={"Authorization": f"Bearer {API_KEY}x"}
        )
        assert configured_handler(wrong, None)["statusCode"] == 401

        # Enrichment with the token, against a provider that first fails (error paths log most).
        fake = FakeIpinfo().start()
        try:
            enrich_settings = settings.with_overrides(
                ipinfo_url=fake.url, ipinfo_token=IPINFO_TOKEN, log_level="DEBUG"
            )
            # Retries outlast the geolocator's first backoff (1 s), as Lambda's do.
            handler = build_handler(enrich_settings, backoff_sleep_limit_seconds=0.2)
            poller = StreamPoller(enrich_settings, handler, retry_delay=0.2, max_attempts=6)
            fake.reset("500")
            poller.poll_once()
            fake.reset("ok")
            poller.wait_idle(timeout=30)
        finally:
            fake.stop()
        assert f"Bearer {IPINFO_TOKEN}" in fake.auth_headers, "the token was really configured and used"

    items = {i["email_id"]: i for i in all_items(dynamodb_client(settings), table)}
    assert {"e-secret-test", "e-rotated"} <= set(items), "signed opens were stored"
    assert "unsigned" not in items
    assert all("enriched_at" in item for item in items.values())

    captured = capfd.readouterr()
    sources = {
        "app log lines": log_file.read_text(),
        "stdout": captured.out,
        "stderr": captured.err,
        "log records": "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records),
    }
    assert "pixel_signature_rejected" in sources["app log lines"], "the log file holds the app's lines"
    for name, text in sources.items():
        for secret in (SIGNING_SECRET, ROTATED_SECRET, IPINFO_TOKEN, API_KEY):
            assert secret not in text, f"{name} contains a configured secret"


def test_settings_never_show_secrets_in_their_repr() -> None:
    settings = Settings.from_env(
        {
            "MAILPIXEL_SIGNING_SECRETS": SIGNING_SECRET,
            "IPINFO_TOKEN": IPINFO_TOKEN,
            "MAILPIXEL_API_KEYS": API_KEY,
        }
    )
    text = repr(settings) + str(settings)
    for secret in (SIGNING_SECRET, IPINFO_TOKEN, API_KEY):
        assert secret not in text
