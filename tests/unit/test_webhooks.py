"""Webhook signatures: the vector, and the README's Python and Node.js verification snippets run
as a receiver would run them."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from mailpixel.model.webhooks import signature, verify
from mailpixel.webhooks.handler import retry_delay
from tests.conftest import ROOT

SECRET = "mailpixel-webhook-example"
T = 1_767_225_600
BODY = b'{"id":"click_r1","type":"human_click"}'
HEADER = "t=1767225600,v1=d3684c2684b0940a4e61f29f9068ea2d6cb975b90ea037bce8b140541deec393"
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("### Verifying a delivery") :]
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


def snippet(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", SECTION, flags=re.DOTALL)
    assert match, f"no {language} snippet in README's 'Verifying a delivery'"
    return match.group(1)


def test_vector_is_the_readmes():
    assert signature(SECRET, T, BODY) == HEADER
    assert HEADER in SECTION and BODY.decode() in SECTION and SECRET in SECTION


@pytest.mark.parametrize(("header", "body", "now", "expected"), CASES)
def test_mailpixels_own_verify(header, body, now, expected):
    assert verify(SECRET, header, body, now=now) is expected


@pytest.mark.parametrize(("header", "body", "now", "expected"), CASES)
def test_readme_python_snippet(header, body, now, expected):
    namespace: dict[str, object] = {}
    exec(snippet("python"), namespace)  # noqa: S102 - the README's own code, run as a receiver would
    assert namespace["verify_mailpixel"](SECRET, header, body, now) is expected  # type: ignore[operator]


def test_readme_node_snippet():
    cases = [[h, b.decode(), now, expected] for h, b, now, expected in CASES]
    program = (
        snippet("js")
        + f"\nconst cases = {json.dumps(cases)};\n"
        + f"console.log(JSON.stringify(cases.map(([h, b, now]) => verifyMailpixel({json.dumps(SECRET)}, h,"
        + " Buffer.from(b), now))));\n"
    )
    result = subprocess.run(["node", "-e", program], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [expected for *_, expected in CASES]


def test_retries_span_about_a_day_before_the_dead_letter_queue():
    delays = [retry_delay(n) for n in range(1, 20)]  # after the 20th receive SQS dead-letters
    assert delays[:4] == [30, 60, 120, 240] and max(delays) == 7200
    assert 23 * 3600 <= sum(delays) <= 25 * 3600
