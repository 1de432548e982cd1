"""A deployed stage as the operator tools see it: its CloudFormation stack's outputs, and the one
base URL every link maker uses (`mailpixel url`, `instrument`, the `make run` banner, `doctor`).

The stack is `mailpixel-<stage>` (serverless.yml's `service:` and the stage, as the Serverless
Framework names it). Its outputs are read with the caller's usual AWS credentials.
"""

from __future__ import annotations

from typing import Any

from mailpixel.config import Settings

SERVICE = "mailpixel"  # serverless.yml `service:`
# Output keys of the deployed template (serverless.yml `resources.Outputs`).
BASE_URL_OUTPUT = "MailpixelBaseUrl"
ALARM_TOPIC_OUTPUT = "AlarmTopicArn"
TRACKING_DOMAIN_OUTPUT = "TrackingDomainName"  # present only when deployed with a domain


class StageError(RuntimeError):
    """A stage's stack cannot be read, or lacks an output; the message says which and why."""


def stack_name(stage: str) -> str:
    return f"{SERVICE}-{stage}"


def stack_outputs(stage: str, cloudformation: Any) -> dict[str, str]:
    """The outputs of the stage's stack, by key."""
    name = stack_name(stage)
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except Exception as exc:  # noqa: BLE001 - botocore's errors: one line for a person
        raise StageError(f"cannot read the CloudFormation stack {name}: {exc}") from exc
    return {o["OutputKey"]: o["OutputValue"] for s in stacks for o in s.get("Outputs", [])}


def parameter_name(stage: str, kind: str) -> str:
    """An SSM parameter of the stage as serverless.yml names it by default (`params.default`):
    `signing-secrets`, `api-keys`, `ipinfo-token`, `webhook`."""
    return f"/{SERVICE}/{stage}/{kind}"


def local_base_url(settings: Settings) -> str:
    """Where `make run` answers."""
    return f"http://127.0.0.1:{settings.port}"


def base_url(
    settings: Settings,
    *,
    given: str | None = None,
    stage: str | None = None,
    cloudformation: Any = None,
) -> str:
    """The base URL links are made on, first found of: `--base-url`, the `--stage`'s stack
    output `MailpixelBaseUrl` (its tracking domain when deployed with one, else the API's
    execute-api URL), `MAILPIXEL_BASE_URL`, the local stack. Without a trailing `/`."""
    if given:
        return given.rstrip("/")
    if stage:
        if cloudformation is None:
            from mailpixel.aws import operator_client

            cloudformation = operator_client("cloudformation", settings)
        outputs = stack_outputs(stage, cloudformation)
        if not outputs.get(BASE_URL_OUTPUT):
            raise StageError(
                f"the stack {stack_name(stage)} has no {BASE_URL_OUTPUT} output: deploy this "
                "version of serverless.yml, or give --base-url"
            )
        return outputs[BASE_URL_OUTPUT].rstrip("/")
    return (settings.public_base_url or local_base_url(settings)).rstrip("/")


def add_base_url_arguments(parser: Any) -> None:
    """`--base-url` and `--stage`, for the commands that make links."""
    parser.add_argument(
        "--base-url",
        help="where mailpixel answers (default: the --stage's MailpixelBaseUrl output, else "
        "MAILPIXEL_BASE_URL, else the local stack)",
    )
    parser.add_argument(
        "--stage",
        help="make links on this deployed stage's base URL (the CloudFormation output "
        f"{BASE_URL_OUTPUT} of the stack mailpixel-STAGE: the tracking domain when set)",
    )


def add_target_arguments(parser: Any) -> None:
    """`--table`, `--stage`, `--meta-table`, `--endpoint-url`: what `target_settings` reads, for
    the commands that read or write the tables."""
    group = parser.add_argument_group("where the events are")
    group.add_argument("--table", help="table name (default: MAILPIXEL_TABLE, else the local table)")
    group.add_argument("--stage", help="read the deployed stage's table, mailpixel-STAGE-events, in AWS")
    group.add_argument(
        "--meta-table", help="meta table name (default: MAILPIXEL_META_TABLE, else the local one)"
    )
    group.add_argument("--endpoint-url", help="DynamoDB endpoint (default: DYNAMODB_ENDPOINT_URL or local)")


def target_settings(args: Any) -> Settings:
    """The settings of the tables a command reads or writes: the local stack's, or `--stage`'s
    (`mailpixel-STAGE-events`, `-meta`, `-clicks` in AWS), each overridden by `--table`,
    `--meta-table` and `--endpoint-url` where the command has them."""
    settings = Settings.from_env(local_default=True)
    stage = getattr(args, "stage", None)
    if stage:
        prefix = stack_name(stage)
        settings = settings.with_overrides(
            table=f"{prefix}-events",
            meta_table=f"{prefix}-meta",
            clicks_table=f"{prefix}-clicks",
            endpoint_url=None,
        )
    for name in ("table", "meta_table", "endpoint_url"):
        if getattr(args, name, None):
            settings = settings.with_overrides(**{name: getattr(args, name)})
    return settings
