"""Webhook signatures: the vector, and the docs' Python and Node.js verification snippets run
as a receiver would run them, hostile headers included (tests/docs/test_runnable_blocks.py runs
them too, with the plain cases; both find them with the same block parser)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from mailpixel.model.webhooks import signature, verify
from mailpixel.webhooks.handler import retry_delay
from tests.docs.blocks import block_defining

SECRET = "mailpixel-webhook-example"
T = 1_767_225_600
BODY = b'{"id":"click_r1","type":"human_click"}'
HEADER = "t=1767225600,v1=d3684c2684b0940a4e61f29f9068ea2d6cb975b90ea037bce8b140541deec393"
# (header, body, now, expected) for every snippet
CASES = [
    (HEADER, BODY, T + 10, True),
    (HEADER, BODY + b" ", T + 10, False),  # body changed
    (HEADER.replace("v1=d", "v1=e"), BODY, T + 10, False),  # signature changed
    (HEADER, BODY, T + 301, False),  # too old: a replay
    (HEADER.replace("t=1767225600", "t=1767225601"), BODY, T + 10, False),  # t changed
    ("v1=d3684c2684b0940a4e61f29f9068ea2d6cb975b90ea037bce8b140541deec393", BODY, T, False),  # no t
    ("", BODY, T, False),
]
V1 = HEADER.split("v1=")[1]
# Headers a hostile or broken client sends: each is False from every verifier, never an error.
HOSTILE = [
    "t=1767225600,v1=é",  # non-ASCII v1: compare_digest raised TypeError
    f"t=²,v1={V1}",  # a digit to isdigit(), not to int(): raised ValueError
    f"t=١٧٦٧٢٢٥٦٠٠,v1={V1}",  # Arabic-Indic digits int() accepts
    f"t=1767225600,v1={V1.upper()}",
    f"t=1767225600,v1={V1[:-1]}é",
    f"t=1767225600,v1={V1[:-2]}é",  # 64 bytes in UTF-8
    f"t=1767225600,v1={V1},v1={V1}",  # a repeated field
    f"t=1767225600,t=1767225600,v1={V1}",
    f"t= 1767225600,v1={V1}",
    f"t=1767225600 ,v1={V1}",
    f"t=1767225600\n,v1={V1}",
    f"t=-1767225600,v1={V1}",
    f"t=+1767225600,v1={V1}",
    f"t=1_767_225_600,v1={V1}",
    f"t=1767225600.0,v1={V1}",
    f"t={'9' * 5000},v1={V1}",  # past int()'s digit limit
    f"t=1e9,v1={V1}",
    f"t=0x69557E00,v1={V1}",
    f"t=,v1={V1}",
    f"t=1767225600,v1={V1}\u0000",
    f"t=1767225600,v1=\ud800{V1[1:]}",  # a lone surrogate
    "t=1767225600",
    "v1",
    "=",
    ",,,",
    "t=1767225600,v1=",
    f"t=1767225600;v1={V1}",
    f"__proto__=1,t=1767225600,v1={V1[:-1]}0",
    f"constructor=x,t=1767225600,v1={V1}0",
]


def snippet(language: str) -> str:
    """The docs' verifier in `language` ("python" or "js")."""
    return block_defining(language, "verify_mailpixel" if language == "python" else "verifyMailpixel").code


def test_vector_is_the_docs():
    assert signature(SECRET, T, BODY) == HEADER
    page = block_defining("python", "verify_mailpixel").path.read_text(encoding="utf-8")
    assert HEADER in page and BODY.decode() in page and SECRET in page


@pytest.mark.parametrize(("header", "body", "now", "expected"), CASES)
def test_mailpixels_own_verify(header, body, now, expected):
    assert verify(SECRET, header, body, now=now) is expected


@pytest.mark.parametrize(("header", "body", "now", "expected"), CASES)
def test_docs_python_snippet(header, body, now, expected):
    namespace: dict[str, object] = {}
    exec(snippet("python"), namespace)  # noqa: S102 - the docs' own code, run as a receiver would
    assert namespace["verify_mailpixel"](SECRET, header, body, now) is expected  # type: ignore[operator]


def test_docs_node_snippet():
    cases = [[h, b.decode(), now, expected] for h, b, now, expected in CASES]
    cases += [[h, BODY.decode(), T + 10, False] for h in HOSTILE]
    cases += [
        [None, BODY.decode(), T, False],
        [42, BODY.decode(), T, False],
        [["t=1"], BODY.decode(), T, False],
    ]
    program = (
        snippet("js")
        + f"\nconst cases = {json.dumps(cases)};\n"
        + "const results = cases.map(([h, b, now]) => {\n"
        + f"  try {{ return verifyMailpixel({json.dumps(SECRET)}, h, Buffer.from(b), now); }}\n"
        + "  catch (e) { return `threw ${e}`; }\n"
        + "});\n"
        + "console.log(JSON.stringify(results));\n"
    )
    result = subprocess.run(["node", "-e", program], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [expected for *_, expected in cases]


def python_verifiers() -> list[tuple[str, Callable[[Any, float], object]]]:
    namespace: dict[str, object] = {}
    exec(snippet("python"), namespace)  # noqa: S102 - the docs' own code, run as a receiver would
    documented = namespace["verify_mailpixel"]
    return [
        ("mailpixel", lambda header, now: verify(SECRET, header, BODY, now=now)),
        ("docs", lambda header, now: documented(SECRET, header, BODY, now)),  # type: ignore[operator]
    ]


@pytest.mark.parametrize("header", [*HOSTILE, None, 42, b"t=1767225600", ["t=1"]])
def test_hostile_headers_are_false_never_an_error(header):
    for name, check in python_verifiers():
        assert check(header, T + 10) is False, name


def test_retries_span_about_a_day_before_the_dead_letter_queue():
    delays = [retry_delay(n) for n in range(1, 20)]  # after the 20th receive SQS dead-letters
    assert delays[:4] == [30, 60, 120, 240] and max(delays) == 7200
    assert 23 * 3600 <= sum(delays) <= 25 * 3600


def test_a_batch_of_slow_deliveries_fits_the_functions_timeout():
    """serverless.yml's webhooks function: a batch for a receiver answering in 4 s fits before
    the batch deadline, partial batch responses are on, and concurrency is capped."""
    import yaml

    from mailpixel.ops.local.tables import SERVERLESS_YML, _CloudFormationLoader
    from mailpixel.webhooks.handler import SAFETY_SECONDS, SOCKET_OPS

    document = yaml.load(SERVERLESS_YML.read_text(), Loader=_CloudFormationLoader)  # noqa: S506
    function = document["functions"]["webhooks"]
    (event,) = function["events"]
    sqs = event["sqs"]
    assert sqs["functionResponseType"] == "ReportBatchItemFailures"
    assert 2 <= sqs["maximumConcurrency"] <= 10
    # A receiver answering in 4 s gets the whole batch: each POST starts with its three socket
    # operations' timeouts (capped by the time left) still at least its answer time.
    budget, answer = function["timeout"] - SAFETY_SECONDS, 4.0
    for k in range(sqs["batchSize"]):
        assert min(5.0, (budget - k * answer) / SOCKET_OPS) >= answer
