"""The packaged template in production shape (issue 16): alarms that name their runbook entry
and mend command, the operations dashboard, a tracking domain of one's own, and the click
routes' own throttle. Each parameter set is packaged once (`serverless package --param ...`),
and CloudFormation's conditions are evaluated with the defaults the params gave them."""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailpixel import secrets
from mailpixel.logs import METRIC_NAMESPACE, JsonFormatter
from mailpixel.model.webhooks import Delivery, log_attempt
from mailpixel.ops.cli import build_parser
from tests.conftest import ROOT, package_service, packaged_template

CERTIFICATE_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-123456789012"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ops-pager"
# A domain with a certificate of its own, alarms mailed, only the domain answering.
WITH_CERTIFICATE = {
    "domain": "t.example.com",
    "certificateArn": CERTIFICATE_ARN,
    "alarmEmail": "ops@example.com",
    "disableDefaultEndpoint": "true",
}
# A domain whose certificate and DNS record the stack makes in a Route 53 zone, alarms sent to
# an existing topic, a click throttle of its own.
WITH_ZONE = {
    "domain": "t.example.com",
    "hostedZoneId": "Z0123456789ABCDEFGHIJ",
    "alarmTopicArn": TOPIC_ARN,
    "clickThrottleRate": "1234",
    "clickThrottleBurst": "1500",
}
DOMAIN_RESOURCES = {"TrackingCertificate", "TrackingDomain", "TrackingApiMapping", "TrackingDnsRecord"}
DOMAIN_OUTPUTS = {"TrackingDomainName", "TrackingDnsRecord", "TrackingDnsTargetHostedZoneId"}

# Each alarm: its runbook anchor in docs/operate/runbook.md, and what it watches (namespace, metric, and the
# resource its dimension names, if any).
ALARMS = {
    "FallbackQueueAgeAlarm": (
        "alarm-fallback-queue-age",
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        "FallbackQueue",
    ),
    "FallbackDeadLetterAlarm": (
        "alarm-fallback-dead-letters",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "FallbackDeadLetterQueue",
    ),
    "WebhookDeadLetterAlarm": (
        "alarm-webhook-dead-letters",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "WebhookDeadLetterQueue",
    ),
    "EnrichFailureAlarm": (
        "alarm-enrichment-failures",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "EnrichFailureQueue",
    ),
    "EnrichLagAlarm": ("alarm-enrichment-lag", "AWS/Lambda", "IteratorAge", "EnrichLambdaFunction"),
    "ClickEnrichLagAlarm": (
        "alarm-enrichment-lag",
        "AWS/Lambda",
        "IteratorAge",
        "EnrichClicksLambdaFunction",
    ),
    "PixelErrorsAlarm": ("alarm-pixel-errors", "AWS/Lambda", "Errors", "PixelLambdaFunction"),
    "PixelThrottlesAlarm": ("alarm-pixel-throttles", "AWS/Lambda", "Throttles", "PixelLambdaFunction"),
    "Api5xxAlarm": ("alarm-api-5xx", "AWS/ApiGateway", "5xx", "HttpApi"),
    "SigningSecretsAlarm": ("alarm-signing-secrets", METRIC_NAMESPACE, secrets.UNAVAILABLE, None),
    "EventsWriteThrottlesAlarm": (
        "alarm-events-write-throttles",
        "AWS/DynamoDB",
        "WriteThrottleEvents",
        "EventsTable",
    ),
    "WebhookFailuresAlarm": ("alarm-webhook-failures", METRIC_NAMESPACE, "webhook_attempt_failed", None),
}


@pytest.fixture(scope="module")
def default(packaged: Path) -> dict[str, Any]:
    return packaged_template(packaged)


@pytest.fixture(scope="session")
def with_certificate_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package_service(tmp_path_factory.mktemp("package-certificate"), WITH_CERTIFICATE)


@pytest.fixture(scope="session")
def with_zone_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package_service(tmp_path_factory.mktemp("package-zone"), WITH_ZONE)


@pytest.fixture(scope="module")
def with_certificate(with_certificate_folder: Path) -> dict[str, Any]:
    return packaged_template(with_certificate_folder)


@pytest.fixture(scope="module")
def with_zone(with_zone_folder: Path) -> dict[str, Any]:
    return packaged_template(with_zone_folder)


# ---------------------------------------------------------------------------------------------
# CloudFormation's conditions and Fn::If, evaluated as CloudFormation would with the parameters'
# defaults (which the deploy params set).

NO_VALUE = object()


def _parameters(template: dict[str, Any]) -> dict[str, str]:
    return {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}


def condition(template: dict[str, Any], name: str) -> bool:
    return bool(_evaluate(template, template["Conditions"][name]))


def _evaluate(template: dict[str, Any], value: Any) -> Any:
    if isinstance(value, list):
        return [v for v in (_evaluate(template, v) for v in value) if v is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {k: _evaluate(template, v) for k, v in value.items()}
    ((function, argument),) = value.items()
    if function == "Ref":
        if argument == "AWS::NoValue":
            return NO_VALUE
        return _parameters(template).get(argument, value)
    if function == "Condition":
        return condition(template, argument)
    if function == "Fn::Equals":
        left, right = (_evaluate(template, a) for a in argument)
        return left == right
    if function == "Fn::Not":
        return not _evaluate(template, argument[0])
    if function == "Fn::And":
        return all(_evaluate(template, a) for a in argument)
    if function == "Fn::If":
        name, then, otherwise = argument
        return _evaluate(template, then if condition(template, name) else otherwise)
    if function == "Fn::Join":
        separator, parts = argument
        parts = _evaluate(template, parts)
        return (
            separator.join(parts)
            if all(isinstance(p, str) for p in parts)
            else {function: [separator, parts]}
        )
    return {function: _evaluate(template, argument)}


def created(template: dict[str, Any]) -> dict[str, Any]:
    """The resources CloudFormation would create, their properties evaluated."""
    return {
        name: _evaluate(template, resource)
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or condition(template, resource["Condition"])
    }


def outputs(template: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _evaluate(template, output["Value"])
        for name, output in template["Outputs"].items()
        if "Condition" not in output or condition(template, output["Condition"])
    }


RUNBOOK = "docs/operate/runbook.md"


def runbook_anchors() -> set[str]:
    """The anchors of the runbook's headings, as GitHub and mkdocs both make them (the strict
    docs build, tests/unit/test_docs_site.py, checks the built page has them too)."""
    headings = re.findall(r"^#+ (.+)$", (ROOT / RUNBOOK).read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["packaged", "with_certificate_folder", "with_zone_folder"])
def test_cfn_lint_passes_with_and_without_a_domain_and_alarm_settings(variant, request):
    folder = request.getfixturevalue(variant)
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            str(folder / "cloudformation-template-update-stack.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _watched(alarm: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]]:
    """(namespace, metric, dimensions) of an alarm, plain or through a metric-math expression."""
    if "Metrics" not in alarm:
        return alarm["Namespace"], alarm["MetricName"], alarm.get("Dimensions", [])
    (stat,) = [m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m]
    metric = stat["Metric"]
    return metric["Namespace"], metric["MetricName"], metric.get("Dimensions", [])


def test_every_alarm_watches_what_it_says_and_names_its_runbook_entry_and_mend(default):
    resources = default["Resources"]
    alarms = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == set(ALARMS)
    anchors = runbook_anchors()
    commands = build_parser()
    for name, (anchor, namespace, metric, resource) in ALARMS.items():
        alarm = alarms[name]
        description = alarm["AlarmDescription"]
        assert f"Runbook: {RUNBOOK}#{anchor}." in description, name
        assert anchor in anchors, f"{RUNBOOK} has no heading for #{anchor}"
        assert "Mend: " in description, name
        for command in re.findall(r"`(mailpixel [^`]+)`", description):
            commands.parse_args(shlex.split(command)[1:])  # a real command with real options
        watched_namespace, watched_metric, dimensions = _watched(alarm)
        assert (watched_namespace, watched_metric) == (namespace, metric), name
        if resource is None:
            assert dimensions == [], name  # the app's EMF metrics have no dimensions (logs.py)
        else:
            (dimension,) = dimensions
            assert resource in json.dumps(dimension["Value"]), name
        assert (
            alarm["AlarmActions"]
            == alarm["OKActions"]
            == [{"Fn::If": ["OwnAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}]
        )
    # Every entry of the runbook belongs to an alarm.
    assert {a for a in anchors if a.startswith("alarm-")} == {anchor for anchor, *_ in ALARMS.values()}


def test_alarm_thresholds_are_params_in_minutes_or_counts(default):
    alarms = default["Resources"]
    assert alarms["FallbackQueueAgeAlarm"]["Properties"]["Threshold"] == 15
    (age,) = [m for m in alarms["FallbackQueueAgeAlarm"]["Properties"]["Metrics"] if "Expression" in m]
    assert age["Expression"] == "age / 60"  # ApproximateAgeOfOldestMessage is in seconds
    (lag,) = [m for m in alarms["EnrichLagAlarm"]["Properties"]["Metrics"] if "Expression" in m]
    assert lag["Expression"] == "age / 60000"  # IteratorAge is in milliseconds
    assert alarms["EnrichLagAlarm"]["Properties"]["Threshold"] == 30
    # Every threshold that is not "any at all" comes from a param with a default.
    serverless = (ROOT / "serverless.yml").read_text()
    params = re.findall(r"Threshold: \$\{param:(\w+)\}", serverless)
    assert len(set(params)) == 7
    for param in params:
        assert re.search(rf"^    {param}: \d+$", serverless, re.MULTILINE), param


def test_the_signing_secrets_alarm_reads_the_pixels_own_metric(default):
    alarm = default["Resources"]["SigningSecretsAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (METRIC_NAMESPACE, secrets.UNAVAILABLE)
    assert alarm["Threshold"] == 1


def test_webhook_failures_are_counted_from_the_webhooks_log(default):
    metric_filter = default["Resources"]["WebhookFailureMetricFilter"]["Properties"]
    assert metric_filter["LogGroupName"] == {"Ref": "WebhooksLogGroup"}
    # The line the webhooks function writes for a failed delivery, as it reaches CloudWatch Logs.
    lines: list[str] = []
    capture = logging.Handler()
    capture.emit = lambda record: lines.append(JsonFormatter().format(record))  # type: ignore[method-assign]
    log = logging.getLogger("webhook_failures_test")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(capture)
    log_attempt(log, "click_r1", Delivery(error="timeout"), 3, delay=120)
    log_attempt(log, "click_r2", Delivery(status=204), 1)
    failed, delivered = (json.loads(line)["message"] for line in lines)
    (matched,) = re.findall(r'^\{ \$\.message = "(\w+)" \}$', metric_filter["FilterPattern"])
    assert matched == failed != delivered
    (transformation,) = metric_filter["MetricTransformations"]
    assert (transformation["MetricNamespace"], transformation["MetricName"]) == (METRIC_NAMESPACE, failed)
    assert transformation["MetricValue"] == "1"


def test_alarm_topic_is_the_stacks_own_or_the_one_given(default, with_certificate, with_zone):
    own = created(default)
    assert own["AlarmTopic"]["Type"] == "AWS::SNS::Topic" and "AlarmEmailSubscription" not in own
    assert outputs(default)["AlarmTopicArn"] == {"Ref": "AlarmTopic"}

    mailed = created(with_certificate)
    subscription = mailed["AlarmEmailSubscription"]["Properties"]
    assert subscription == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": "ops@example.com",
    }

    given = created(with_zone)
    assert "AlarmTopic" not in given
    assert given["PixelErrorsAlarm"]["Properties"]["AlarmActions"] == [TOPIC_ARN]
    assert outputs(with_zone)["AlarmTopicArn"] == TOPIC_ARN


def test_dashboard_shows_rates_lag_queues_errors_and_throttles(default):
    body = default["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else f"REF:{p['Ref']}" for p in body)
    widgets = json.loads(text)["widgets"]
    titles = " ".join(w["properties"]["title"] for w in widgets).lower()
    for topic in ("opens and clicks per second", "enrichment lag", "queue depths", "errors", "throttles"):
        assert topic in titles
    shown = json.dumps([w["properties"]["metrics"] for w in widgets])
    for metric in ("open_stored", "click_stored", "IteratorAge", "Throttles", "WriteThrottleEvents", "5xx"):
        assert f'"{metric}"' in shown, metric
    for function in ("EnrichLambdaFunction", "EnrichClicksLambdaFunction", "PixelLambdaFunction"):
        assert f"REF:{function}" in shown, function
    for queue in ("fallback", "fallback-dlq", "webhooks", "webhooks-dlq", "enrich-failures"):
        assert f'"mailpixel-test-{queue}"' in shown, queue
    assert {w["properties"]["region"] for w in widgets} == {"us-east-1"}


def test_no_domain_no_domain_resources_and_the_execute_api_url(default):
    resources, values = created(default), outputs(default)
    assert not DOMAIN_RESOURCES & set(resources)
    assert not DOMAIN_OUTPUTS & set(values)
    assert values["MailpixelBaseUrl"] == {"Fn::GetAtt": ["HttpApi", "ApiEndpoint"]}
    assert resources["HttpApi"]["Properties"]["DisableExecuteApiEndpoint"] is False


def test_a_domain_with_its_certificate_maps_the_api_and_outputs_the_dns_record(with_certificate):
    resources, values = created(with_certificate), outputs(with_certificate)
    assert {"TrackingDomain", "TrackingApiMapping"} <= set(resources)
    assert not {"TrackingCertificate", "TrackingDnsRecord"} & set(resources)  # their own cert, their DNS
    (configuration,) = resources["TrackingDomain"]["Properties"]["DomainNameConfigurations"]
    assert configuration["CertificateArn"] == CERTIFICATE_ARN
    assert configuration["EndpointType"] == "REGIONAL"
    assert resources["TrackingDomain"]["Properties"]["DomainName"] == "t.example.com"
    mapping = resources["TrackingApiMapping"]["Properties"]
    assert mapping == {
        "ApiId": {"Ref": "HttpApi"},
        "DomainName": {"Ref": "TrackingDomain"},
        "Stage": {"Ref": "HttpApiStage"},
    }
    assert values["MailpixelBaseUrl"] == "https://t.example.com"
    assert values["PixelUrl"] == "https://t.example.com/pixel"
    assert values["ClickUrl"] == "https://t.example.com/click"
    assert values["TrackingDomainName"] == "t.example.com"
    assert values["TrackingDnsRecord"] == {"Fn::GetAtt": ["TrackingDomain", "RegionalDomainName"]}
    assert values["TrackingDnsTargetHostedZoneId"] == {
        "Fn::GetAtt": ["TrackingDomain", "RegionalHostedZoneId"]
    }
    assert resources["HttpApi"]["Properties"]["DisableExecuteApiEndpoint"] is True


def test_a_domain_in_a_hosted_zone_gets_a_validated_certificate_and_its_record(with_zone):
    resources = created(with_zone)
    assert set(resources) >= DOMAIN_RESOURCES
    certificate = resources["TrackingCertificate"]["Properties"]
    assert certificate["ValidationMethod"] == "DNS"
    assert certificate["DomainValidationOptions"] == [
        {"DomainName": "t.example.com", "HostedZoneId": "Z0123456789ABCDEFGHIJ"}
    ]
    (configuration,) = resources["TrackingDomain"]["Properties"]["DomainNameConfigurations"]
    assert configuration["CertificateArn"] == {"Ref": "TrackingCertificate"}
    record = resources["TrackingDnsRecord"]["Properties"]
    assert (record["Name"], record["Type"], record["HostedZoneId"]) == (
        "t.example.com",
        "A",
        "Z0123456789ABCDEFGHIJ",
    )
    assert record["AliasTarget"]["DNSName"] == {"Fn::GetAtt": ["TrackingDomain", "RegionalDomainName"]}
    # The default endpoint stays on unless asked.
    assert resources["HttpApi"]["Properties"]["DisableExecuteApiEndpoint"] is False


def test_click_routes_have_their_own_throttle(default, with_zone):
    stage = default["Resources"]["HttpApiStage"]["Properties"]
    for route in ("GET /click", "HEAD /click"):
        limits = stage["RouteSettings"][route]
        assert limits["ThrottlingRateLimit"] > stage["DefaultRouteSettings"]["ThrottlingRateLimit"]
        assert limits["ThrottlingRateLimit"] >= 5000  # docs/scale.md: scanners of a campaign
        assert limits["ThrottlingBurstLimit"] <= 5000  # the account's default burst
    tuned = with_zone["Resources"]["HttpApiStage"]["Properties"]["RouteSettings"]
    for route in ("GET /click", "HEAD /click"):
        # `--param` values arrive as strings; CloudFormation reads them as numbers.
        assert {k: int(v) for k, v in tuned[route].items()} == {
            "ThrottlingRateLimit": 1234,
            "ThrottlingBurstLimit": 1500,
        }
    for route in ("GET /pixel", "HEAD /pixel"):
        assert tuned[route] == stage["RouteSettings"][route]  # the pixel's limits stay its own
