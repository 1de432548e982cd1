"""`mailpixel doctor`: check a deployment end to end, one line per check, with the fix when one fails.

`mailpixel doctor --stage S` checks the deployed stage in AWS (with your usual credentials);
without `--stage` it checks the local stack of `make run`. Each check is a small function that
receives its client or URL, so a test can point it at a real server on loopback and break it.

The pixel check fetches a signed pixel URL (email `mailpixel-doctor`, user `doctor`) with a
script's User-Agent: it is stored as one machine open, which sends no webhook.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mailpixel import __version__
from mailpixel.config import Settings

DOCTOR_EMAIL_ID, DOCTOR_USER_ID = "mailpixel-doctor", "doctor"
# enrich/classify/machine.py calls a python-urllib User-Agent a script: a machine open, no webhook.
USER_AGENT = f"Python-urllib/3 mailpixel-doctor/{__version__}"
CERT_MIN_DAYS = 30
PUT_PARAMETER = "aws ssm put-parameter --type SecureString"
TIMEOUT = 10.0


@dataclass(frozen=True)
class Result:
    """One check's outcome: `ok` None means it does not apply here (skipped, not failed)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    def line(self) -> str:
        status = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        text = f"{status}  {self.name:<9} {self.detail}"
        return text + (f"\n      fix: {self.fix}" if self.ok is False and self.fix else "")


# -- secrets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str
    required: bool
    what: str


def stage_parameters(stage: str) -> list[Parameter]:
    """The SSM parameters of a stage, as serverless.yml names them by default."""
    from mailpixel.ops.stage import parameter_name

    return [
        Parameter(parameter_name(stage, "signing-secrets"), True, "signing secrets"),
        Parameter(parameter_name(stage, "api-keys"), True, "API keys"),
        Parameter(parameter_name(stage, "ipinfo-token"), False, "ipinfo token (optional)"),
        Parameter(parameter_name(stage, "webhook"), False, "webhook URL,SECRET (optional)"),
    ]


def check_parameters(ssm: Any, parameters: Sequence[Parameter]) -> tuple[Result, dict[str, str]]:
    """Each parameter exists and decrypts to something; returns the values read, by name."""
    values: dict[str, str] = {}
    problems, fixes, seen = [], [], []
    for parameter in parameters:
        try:
            value = str(ssm.get_parameter(Name=parameter.name, WithDecryption=True)["Parameter"]["Value"])
        except Exception as exc:  # noqa: BLE001 - botocore's errors, reported by name
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            if code == "ParameterNotFound" and not parameter.required:
                seen.append(f"{parameter.name} not set")
                continue
            problems.append(f"{parameter.name}: {code}")
            if code == "ParameterNotFound":
                fixes.append(f"{PUT_PARAMETER} --name {parameter.name} --value …")
            else:
                fixes.append(f"allow ssm:GetParameter and kms:Decrypt on {parameter.name} to you")
            continue
        if not value.strip():
            problems.append(f"{parameter.name} is empty")
            fixes.append(f"{PUT_PARAMETER} --overwrite --name {parameter.name} --value …")
            continue
        values[parameter.name] = value
        seen.append(f"{parameter.name} decrypts")
    if problems:
        return Result("secrets", False, "; ".join(problems), "; ".join(fixes)), values
    return Result("secrets", True, "; ".join(seen)), values


def _first_secret(value: str) -> str | None:
    """The secret that signs, from a parameter's "S1,S2" (as the pixel reads it)."""
    from mailpixel.secrets import parse_secrets

    secrets = parse_secrets(value)
    return secrets[0] if secrets else None


def check_local_secrets(settings: Settings) -> tuple[Result, str | None]:
    """The local stack reads its secrets from the environment (or an SSM parameter, if named)."""
    if settings.signing_secrets_parameter:
        name = settings.signing_secrets_parameter
        from mailpixel.aws import ssm_client

        result, values = check_parameters(ssm_client(settings), [Parameter(name, True, "signing secrets")])
        return result, _first_secret(values.get(name, ""))
    signing = len(settings.signing_secrets)
    keys = len(settings.api_keys)
    detail = (
        f"MAILPIXEL_SIGNING_SECRETS: {signing} secret(s)"
        if signing
        else "no MAILPIXEL_SIGNING_SECRETS: the local pixel records unsigned opens"
    ) + (f"; MAILPIXEL_API_KEYS: {keys} key(s)" if keys else "; no MAILPIXEL_API_KEYS")
    return Result("secrets", True, detail), (settings.signing_secrets[0] if signing else None)


# -- tables, streams, stream mappings ----------------------------------------------------------


def check_tables(ddb: Any, tables: Sequence[str], streamed: Sequence[str]) -> tuple[Result, dict[str, str]]:
    """Every table exists and is ACTIVE; those in `streamed` have their stream on. Returns the
    stream ARNs by table."""
    arns: dict[str, str] = {}
    problems = []
    for name in tables:
        try:
            table = ddb.describe_table(TableName=name)["Table"]
        except Exception as exc:  # noqa: BLE001
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            problems.append(f"{name}: {code}")
            continue
        if table.get("TableStatus") != "ACTIVE":
            problems.append(f"{name} is {table.get('TableStatus')}")
        if name in streamed:
            spec = table.get("StreamSpecification") or {}
            if not spec.get("StreamEnabled") or not table.get("LatestStreamArn"):
                problems.append(f"{name} has no stream")
            else:
                arns[name] = str(table["LatestStreamArn"])
    if problems:
        fix = "deploy again (npx serverless deploy --stage STAGE); locally, restart `make run`"
        return Result("tables", False, "; ".join(problems), fix), arns
    return Result("tables", True, f"{len(tables)} tables active, streams on for {', '.join(streamed)}"), arns


def check_mappings(lambda_client: Any, stream_arns: dict[str, str]) -> Result:
    """Each stream has an enabled Lambda event source mapping (the enrichment functions)."""
    problems = []
    for table, arn in stream_arns.items():
        mappings = lambda_client.list_event_source_mappings(EventSourceArn=arn).get("EventSourceMappings", [])
        states = [m.get("State") for m in mappings]
        if "Enabled" not in states:
            problems.append(f"{table}: {', '.join(map(str, states)) or 'no mapping'}")
    if problems:
        fix = (
            "aws lambda update-event-source-mapping --uuid UUID --enabled (UUID from "
            "`aws lambda list-event-source-mappings`), or deploy again"
        )
        return Result("streams", False, "stream mappings not enabled: " + "; ".join(problems), fix)
    return Result("streams", True, f"enrichment reads {len(stream_arns)} streams (mappings enabled)")


# -- HTTP --------------------------------------------------------------------------------------


def fetch(url: str, timeout: float = TIMEOUT) -> tuple[int, Any, bytes]:
    """GET without following redirects: (status, headers, body)."""
    parts = urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.netloc, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target, headers={"User-Agent": USER_AGENT})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def _unreachable(name: str, url: str, exc: Exception, fix: str) -> Result:
    return Result(name, False, f"{url} did not answer: {exc}", fix)


def check_pixel(base_url: str, secret: str | None, *, with_time: bool = False) -> Result:
    """A signed pixel URL answers 200, a GIF, and a Cache-Control that forbids caching."""
    from mailpixel.signing import make_url

    issued = int(time.time()) if with_time else None
    url = make_url(base_url, DOCTOR_EMAIL_ID, DOCTOR_USER_ID, secret, t=issued)
    fix = "check the pixel function's logs (aws logs tail /aws/lambda/mailpixel-STAGE-pixel), or `make run`"
    try:
        status, headers, body = fetch(url)
    except OSError as exc:
        return _unreachable("pixel", url, exc, fix)
    cache = headers.get("Cache-Control", "")
    problems = []
    if status != 200:
        problems.append(f"status {status}")
    if headers.get_content_type() != "image/gif" or not body.startswith(b"GIF8"):
        problems.append(f"not a GIF ({headers.get_content_type()})")
    if "no-cache" not in cache and "no-store" not in cache:
        problems.append(f"Cache-Control {cache!r} lets a proxy cache it (later opens are lost)")
    if problems:
        return Result("pixel", False, f"{base_url}/pixel: " + ", ".join(problems), fix)
    signed = "signed" if secret else "unsigned (no secret)"
    return Result("pixel", True, f"{signed} pixel URL answers a GIF, Cache-Control {cache}")


def check_click(base_url: str) -> Result:
    """An unsigned click URL is never redirected: /click would otherwise be an open redirect."""
    from urllib.parse import urlencode

    query = urlencode({"email_id": DOCTOR_EMAIL_ID, "user_id": DOCTOR_USER_ID, "url": "https://example.com/"})
    url = f"{base_url}/click?{query}"
    fix = (
        "deploy this version (an unsigned /click must answer 400, never a redirect); locally, "
        "give `make run` the same MAILPIXEL_SIGNING_SECRETS as doctor"
    )
    try:
        status, headers, _ = fetch(url)
    except OSError as exc:
        return _unreachable("click", url, exc, fix)
    if 300 <= status < 400 or headers.get("Location"):
        return Result("click", False, f"unsigned click answered {status} to {headers.get('Location')}", fix)
    return Result("click", True, f"unsigned click refused ({status}), not redirected")


def check_health(base_url: str, version: str = __version__) -> Result:
    """/health answers and reports the same version as this CLI."""
    url = f"{base_url}/health"
    try:
        status, _, body = fetch(url)
        deployed = json.loads(body).get("version") if status == 200 else None
    except (OSError, ValueError, AttributeError) as exc:
        return _unreachable("health", url, exc, "deploy again, or start `make run`")
    if deployed != version:
        return Result(
            "health",
            False,
            f"/health answered {status}, version {deployed!r}; this CLI is {version}",
            "deploy this version (npx serverless deploy --stage STAGE), or install the deployed one",
        )
    return Result("health", True, f"/health reports version {version}, as this CLI")


# -- the tracking domain -----------------------------------------------------------------------


def addresses(host: str, port: int = 443) -> set[str]:
    return {str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}


def check_domain(
    domain: str,
    api_target: str,
    *,
    port: int = 443,
    context: ssl.SSLContext | None = None,
    now: float | None = None,
    min_days: int = CERT_MIN_DAYS,
) -> Result:
    """The domain resolves to the API's own domain target (the addresses of the API Gateway
    regional name it must be a CNAME of), and its TLS certificate verifies and is valid for
    `min_days` more days."""
    dns_fix = f"create the DNS record: {domain} CNAME {api_target} (the stack's outputs name it)"
    try:
        mine, theirs = addresses(domain, port), addresses(api_target, port)
    except OSError as exc:
        return Result("domain", False, f"{domain} does not resolve: {exc}", dns_fix)
    if not mine & theirs:
        return Result("domain", False, f"{domain} resolves to {sorted(mine)}, not to {api_target}", dns_fix)
    context = context or ssl.create_default_context()
    try:
        with (
            socket.create_connection((domain, port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            cert = tls.getpeercert() or {}
    except (OSError, ssl.SSLError) as exc:
        return Result(
            "domain",
            False,
            f"TLS to {domain} fails: {exc}",
            f"give the custom domain an ACM certificate for {domain} in the API's region",
        )
    expires = ssl.cert_time_to_seconds(str(cert["notAfter"]))
    days = (expires - (time.time() if now is None else now)) / 86_400
    if days < min_days:
        return Result(
            "domain",
            False,
            f"the certificate of {domain} expires in {days:.0f} days (on {cert['notAfter']})",
            "renew it: ACM renews a DNS-validated certificate itself while its validation CNAME "
            "stays in DNS; an imported one must be re-imported",
        )
    return Result("domain", True, f"{domain} points at the API; certificate valid {days:.0f} more days")


# -- alarms ------------------------------------------------------------------------------------


def check_alarm_topic(sns: Any, topic_arn: str | None) -> Result:
    """The alarm topic has at least one confirmed subscriber: an alarm nobody hears is none."""
    if not topic_arn:
        return Result(
            "alarms",
            False,
            "the stack has no AlarmTopicArn output",
            "deploy this version of serverless.yml (it creates the alarms and their topic)",
        )
    fix = (
        f"aws sns subscribe --topic-arn {topic_arn} --protocol email --notification-endpoint YOU "
        "(then confirm the email), or deploy with --param alarmEmail=YOU"
    )
    try:
        subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn).get("Subscriptions", [])
    except Exception as exc:  # noqa: BLE001
        return Result("alarms", False, f"cannot read {topic_arn}: {exc}", fix)
    confirmed = [s for s in subscriptions if s.get("SubscriptionArn", "").startswith("arn:")]
    if not confirmed:
        pending = len(subscriptions)
        detail = f"no confirmed subscriber on {topic_arn}" + (f" ({pending} pending)" if pending else "")
        return Result("alarms", False, detail, fix)
    return Result("alarms", True, f"{len(confirmed)} subscriber(s) on the alarm topic")


# -- the whole run -----------------------------------------------------------------------------


def local_checks(settings: Settings) -> Iterable[Result]:
    """The local stack of `make run`: the app on 127.0.0.1:PORT, DynamoDB Local."""
    from mailpixel.aws import dynamodb_client
    from mailpixel.ops.stage import local_base_url

    result, secret = check_local_secrets(settings)
    yield result
    streamed = (settings.table, settings.clicks_table)
    tables = (settings.table, settings.meta_table, settings.clicks_table)
    try:
        yield check_tables(dynamodb_client(settings), tables, streamed)[0]
    except Exception as exc:  # noqa: BLE001 - DynamoDB Local not running
        yield Result("tables", False, f"cannot reach DynamoDB Local ({exc})", "start `make run`")
    yield Result("streams", None, "local: `make run`'s stream poller reads the streams (no Lambda mappings)")
    yield from _http_checks(local_base_url(settings), secret, settings, local=True)
    yield Result("domain", None, "local: no tracking domain")
    yield Result("alarms", None, "local: no alarms")


def stage_checks(settings: Settings, stage: str, client: Callable[[str], Any]) -> Iterable[Result]:
    """A deployed stage, through the clients `client(service)` makes."""
    from mailpixel.ops.stage import (
        ALARM_TOPIC_OUTPUT,
        BASE_URL_OUTPUT,
        TRACKING_DOMAIN_OUTPUT,
        StageError,
        stack_name,
        stack_outputs,
    )

    parameters = stage_parameters(stage)
    result, values = check_parameters(client("ssm"), parameters)
    yield result
    secret = _first_secret(values.get(parameters[0].name, ""))
    names = [f"{stack_name(stage)}-{kind}" for kind in ("events", "meta", "clicks")]
    tables, arns = check_tables(client("dynamodb"), names, (names[0], names[2]))
    yield tables
    if arns:
        yield check_mappings(client("lambda"), arns)
    try:
        outputs = stack_outputs(stage, client("cloudformation"))
    except StageError as exc:
        yield Result("stack", False, str(exc), f"deploy: npx serverless deploy --stage {stage}")
        return
    base = outputs.get(BASE_URL_OUTPUT, "").rstrip("/")
    if not base:
        yield Result("stack", False, f"no {BASE_URL_OUTPUT} output", "deploy this version of serverless.yml")
        return
    yield from _http_checks(base, secret, settings, local=False)
    domain = outputs.get(TRACKING_DOMAIN_OUTPUT)
    if domain:
        try:
            names = client("apigatewayv2").get_domain_name(DomainName=domain)["DomainNameConfigurations"]
            yield check_domain(domain, str(names[0]["ApiGatewayDomainName"]))
        except Exception as exc:  # noqa: BLE001
            yield Result("domain", False, f"cannot read the API's domain {domain}: {exc}", "deploy again")
    else:
        yield Result("domain", None, "no tracking domain set (links use the execute-api URL)")
    yield check_alarm_topic(client("sns"), outputs.get(ALARM_TOPIC_OUTPUT))


def _http_checks(base_url: str, secret: str | None, settings: Settings, *, local: bool) -> Iterable[Result]:
    yield check_pixel(base_url, secret, with_time=bool(settings.signature_max_age_days))
    if local and secret is None:
        # docs/tracking/clicks.md: with no signing secret the local stack follows unsigned
        # clicks on purpose (AWS never does); there is nothing to refuse here.
        yield Result("click", None, "no signing secret: the local stack follows unsigned clicks")
    else:
        yield check_click(base_url)
    yield check_health(base_url)


def report(results: Iterable[Result], out: Any = None) -> int:
    """Print each line as its check ends; 1 when any failed."""
    out = out or sys.stdout
    failed = 0
    for result in results:
        print(result.line(), file=out, flush=True)
        failed += result.ok is False
    print(f"{failed} check(s) failed" if failed else "all checks passed", file=out)
    return 1 if failed else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = Settings.from_env(local_default=True)
    if args.stage:
        from mailpixel.aws import operator_client

        settings = Settings.from_env()
        return report(stage_checks(settings, args.stage, lambda service: operator_client(service, settings)))
    return report(local_checks(settings))


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help="check a deployment end to end (--stage) or the local stack: one line per check, "
        "with its fix; exit 1 when any fails",
    )
    parser.add_argument("--stage", help="the deployed stage to check in AWS (default: the local stack)")
    parser.set_defaults(func=cmd_doctor)
