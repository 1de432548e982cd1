"""Issue 16: one setting gives the base URL to every link maker: `--base-url`, the deployed
stage's `MailpixelBaseUrl` output (`--stage`), `MAILPIXEL_BASE_URL`, else the local stack."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import boto3
import pytest

from mailpixel.config import Settings
from mailpixel.model.webhooks import verify
from mailpixel.ops.cli import main
from mailpixel.ops.stage import BASE_URL_OUTPUT, StageError, base_url
from tests.integration.test_webhooks import Receiver, receiver  # noqa: F401 - the receiver fixture
from tests.moto_aws import aws_env, create_stack, moto_endpoint  # noqa: F401 - fixtures

DOMAIN = "https://t.example.com"


@pytest.fixture
def deployed(request: pytest.FixtureRequest) -> str:
    """A stage whose stack names the tracking domain as its base URL."""
    request.getfixturevalue("aws_env")
    stage: str = request.node.name[:20].replace("[", "").replace("]", "").replace("_", "")
    cloudformation = boto3.client("cloudformation")
    create_stack(cloudformation, f"mailpixel-{stage}", {BASE_URL_OUTPUT: DOMAIN + "/"})
    create_stack(cloudformation, f"mailpixel-{stage}-bare", {"PixelUrl": "https://x/pixel"})
    return stage


def links(html: str) -> list[str]:
    import re

    return re.findall(r'(?:href|src)="([^"]+)"', html)


def test_url_and_instrument_make_links_on_the_stage_domain(deployed, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MAILPIXEL_SIGNING_SECRETS", "s1")
    assert main(["url", "--email-id", "e1", "--user-id", "u1", "--stage", deployed, "--format", "json"]) == 0
    url = json.loads(capsys.readouterr().out)["url"]
    assert url.startswith(f"{DOMAIN}/pixel?"), url

    page = tmp_path / "email.html"
    page.write_text('<html><body><a href="https://shop.example/">shop</a></body></html>')
    recipients = tmp_path / "r.csv"
    recipients.write_text("user_id\nalice\n")
    args = ["instrument", "--html", str(page), "--email-id", "e1", "--recipients", str(recipients)]
    assert main([*args, "--jsonl", "--stage", deployed]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    found = links(row["html"])
    assert {urlsplit(link).netloc for link in found} == {"t.example.com"}, found
    assert {urlsplit(link).path for link in found} == {"/click", "/pixel"}


def test_the_flag_beats_the_stage_and_the_environment_beats_the_local_stack(deployed, monkeypatch):
    settings = Settings.from_env()
    assert base_url(settings) == f"http://127.0.0.1:{settings.port}"
    monkeypatch.setenv("MAILPIXEL_BASE_URL", "https://env.example/")
    assert base_url(Settings.from_env()) == "https://env.example"
    assert base_url(Settings.from_env(), stage=deployed) == DOMAIN
    assert (
        base_url(Settings.from_env(), given="https://flag.example", stage=deployed) == "https://flag.example"
    )


def test_a_stage_without_the_output_or_stack_is_a_one_line_error(deployed, capsys):
    with pytest.raises(StageError, match=f"no {BASE_URL_OUTPUT} output"):
        base_url(Settings.from_env(), stage=f"{deployed}-bare")
    assert main(["url", "--email-id", "e1", "--user-id", "u1", "--stage", "nowhere"]) == 2
    assert "cannot read the CloudFormation stack mailpixel-nowhere" in capsys.readouterr().err


def test_webhooks_test_with_a_stage_posts_to_that_stages_target(aws_env, receiver, capsys, monkeypatch):  # noqa: F811
    """`webhooks test --stage S` reads the target the deployed webhooks function reads."""
    monkeypatch.setenv("MAILPIXEL_WEBHOOK_URL", "http://127.0.0.1:9/not-this-one")
    monkeypatch.setenv("MAILPIXEL_WEBHOOK_SECRET", "not-this-one")
    boto3.client("ssm").put_parameter(
        Name="/mailpixel/hooks/webhook", Type="SecureString", Value=f"{receiver},stage-secret"
    )
    assert main(["webhooks", "test", "--stage", "hooks"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["url"] == receiver and answer["delivered"] is True
    (request,) = Receiver.received
    assert verify("stage-secret", request["headers"]["Mailpixel-Signature"], request["body"])
