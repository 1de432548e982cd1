"""Docs that are run (issue 19, item 3): every fenced block of README.md and docs/**/*.md that
claims to work is executed here, against one local stack for the session, and fails the test
named after its file:line when it breaks.

What runs, by the block's language:
- `bash`, `sh`, `shell`: `bash -e -o pipefail`, so every line must succeed. `curl` is wrapped
  with `--fail-with-body`: an HTTP error fails the block (plain curl exits 0 on a 404). `jq`
  is on PATH (`make setup` installs it with php-cli: check-doc-tools).
- `python`, `js`/`javascript` (Node), `php` (php-cli): the block as a program. A block that
  defines a function the docs give other languages' senders or receivers to copy (`pixelUrl`,
  `pixel_url`, `verify_mailpixel`, `verifyMailpixel`) gets a harness appended that checks it
  against the project's test vectors (see HARNESSES).
- `html`: fragments to paste into an email, so nothing to execute; they must parse with every
  element closed (a broken snippet pasted into a template breaks the email around it).
- `json`: an example payload or answer; it must parse.
- `console`: a transcript. Each `$ ` line runs as a shell command, with a signing secret set
  (transcripts show `sig=`), and prints what the lines under it show, `…` standing for any text.
- `text` (output, diagrams), `mermaid`: shown, never run.
- A block under `<!-- not run: REASON -->` is not a case; its REASON is listed by
  `test_not_run_blocks_each_give_their_reason` (the docs show
  "(AWS only)" or similar next to it). Any other language fails: tag it, or teach this file.

The stack: `mailpixel run` (what `make run` starts: DynamoDB Local, the app, the enrichment
poller) on free loopback ports, with `MAILPIXEL_API_KEYS=dev-key` and no signing secret, as the
README's local examples assume. Before the first block it is seeded with opens of (e1, u1), (e1, u2) and
(abc, 123), and the deployed stage's tables `mailpixel-prod-{events,meta,clicks}` are created in
the same DynamoDB Local with a copy of those items.

Substitutions and environment (every shell, Python, Node and PHP block sees these):

| In the docs                       | Here                                                          |
|-----------------------------------|---------------------------------------------------------------|
| `http://127.0.0.1:5000`           | the stack's URL (a free port; 5000 may be taken)              |
| `mailpixel`, `aws`, `.venv/bin/…` | this venv's commands (`.venv` is linked into the work dir)    |
| `--stage prod`, `aws dynamodb …`  | `AWS_ENDPOINT_URL_DYNAMODB` = the stack's DynamoDB Local,      |
|                                   | dummy credentials, region us-east-1: the prod tables above     |
| any other AWS service             | `AWS_ENDPOINT_URL` = a closed loopback port: fails, never AWS  |
| `$KEY`, `$BASE`                   | `dev-key`, the stack's URL                                     |
| `email.html`, `newsletter.html`   | tests/fixtures/email.html, newsletter.html                    |
| `list.csv`                        | three recipients: u1 (all), u2 (clicks), u3 (none)                    |
| `path/to/pending.jsonl`,          | empty files: a replay of nothing succeeds                     |
| `lambda.log`                      |                                                               |
| Python names `html`,              | newsletter.html's text, ["u1", "u2"], a function that         |
| `recipients`, `send`              | collects what it is given                                     |

Each block runs in a fresh work directory holding the files above, one block at a time in doc
order; the stack's data persists between blocks, as in a reader's session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.docs.blocks import ROOT, Block, all_blocks
from tests.e2e.test_local_stack import Stack

BIN = Path(sys.executable).parent
LOCAL_URL = "http://127.0.0.1:5000"
API_KEY = "dev-key"
PROD_TABLES = ("mailpixel-prod-events", "mailpixel-prod-meta", "mailpixel-prod-clicks")
SHELL = {"bash", "sh", "shell"}
SHOWN_ONLY = {"text", "mermaid"}
TRANSCRIPT_SECRET = "docs-transcript-secret"
TIMEOUT = 120
PRELUDE = """\
from pathlib import Path as _Path
html = _Path("newsletter.html").read_text(encoding="utf-8")
recipients = ["u1", "u2"]
sent = []
def send(user_id, body):
    sent.append((user_id, body))
"""
RECIPIENTS_CSV = (
    "user_id,email,tracking\nu1,u1@example.com,all\nu2,u2@example.com,clicks\nu3,u3@example.com,none\n"
)


@dataclass
class DocsStack:
    url: str
    env: dict[str, str]
    shims: Path


def _copy_table(ddb: Any, source: str, target: str) -> None:
    from mailpixel.ddb.store import paged

    for item in paged(ddb.scan, TableName=source, ConsistentRead=True):
        ddb.put_item(TableName=target, Item=item)


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsStack]:
    from mailpixel.aws import dynamodb_client
    from mailpixel.config import Settings
    from mailpixel.ops.local.tables import ensure_tables

    home = tmp_path_factory.mktemp("docs-stack")
    stack = Stack(home / "data")
    stack.env["MAILPIXEL_API_KEYS"] = API_KEY
    for name in ("MAILPIXEL_SIGNING_SECRETS", "MAILPIXEL_SIGNING_SECRETS_PARAMETER", "MAILPIXEL_BASE_URL"):
        stack.env.pop(name, None)
    try:
        stack.start()
        url = f"http://127.0.0.1:{stack.port}"
        for email_id, user_id in (("e1", "u1"), ("e1", "u2"), ("abc", "123")):
            with urllib.request.urlopen(f"{url}/pixel?email_id={email_id}&user_id={user_id}", timeout=10):  # noqa: S310 - loopback
                pass
        endpoint = f"http://127.0.0.1:{stack.db_port}"
        local = Settings.from_env({"DYNAMODB_PORT": str(stack.db_port)}, local_default=True)
        ddb = dynamodb_client(local)
        ensure_tables(ddb, *PROD_TABLES)
        for source, target in zip(
            (local.table, local.meta_table, local.clicks_table), PROD_TABLES, strict=True
        ):
            _copy_table(ddb, source, target)
        shims = home / "bin"
        shims.mkdir()
        real_curl = shutil.which("curl")
        assert real_curl, "curl is needed to run the docs' curl examples"
        (shims / "curl").write_text(
            f'#!/bin/sh\nexec {real_curl} --fail-with-body --no-progress-meter "$@"\n'
        )
        (shims / "curl").chmod(0o755)
        env = {
            **stack.env,
            "PATH": f"{shims}:{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "KEY": API_KEY,
            "BASE": url,
            "AWS_ACCESS_KEY_ID": "docstest",
            "AWS_SECRET_ACCESS_KEY": "docstest",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: no block reaches AWS
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
            "AWS_PAGER": "",
        }
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.pop(name, None)
        env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(home / "no-aws-config")
        yield DocsStack(url, env, shims)
    finally:
        if stack.process is not None:
            assert stack.stop() == 0, "".join(stack.output)


def workdir(base: Path) -> Path:
    """A fresh directory with the files the docs' commands name (see the table above)."""
    base.mkdir(parents=True, exist_ok=True)
    for name in ("email.html", "newsletter.html"):
        shutil.copy(FIXTURES / name, base / name)
    (base / "list.csv").write_text(RECIPIENTS_CSV)
    (base / "path" / "to").mkdir(parents=True)
    (base / "path" / "to" / "pending.jsonl").write_text("")
    (base / "lambda.log").write_text("")
    (base / ".venv").symlink_to(BIN.parent)
    return base


def run(command: list[str], stack: DocsStack, cwd: Path, stdin: str | None = None) -> str:
    result = subprocess.run(
        command,
        cwd=cwd,
        env=stack.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result.stdout


# Harnesses: code appended to a block that defines a function for readers to copy, and the check
# of what it prints. The signing vectors are the ones mailpixel's own signer is tested with.
def _signing_cases() -> list[dict[str, Any]]:
    vectors = json.loads((FIXTURES / "signing_vectors.json").read_text())["vectors"]
    return [{"base": "https://px.example.com", "params": v["params"], "secret": v["secret"]} for v in vectors]


def _expected_pixel_urls() -> list[str]:
    vectors = json.loads((FIXTURES / "signing_vectors.json").read_text())["vectors"]
    return [f"https://px.example.com/pixel?{v['canonical']}&sig={v['sig']}" for v in vectors]


def _webhook_cases() -> list[list[Any]]:
    from tests.unit.test_webhooks import BODY, CASES

    return [[header, body.decode(), now, expected] for header, body, now, expected in CASES if body == BODY]


def _webhook_expected() -> list[bool]:
    return [case[3] for case in _webhook_cases()]


HARNESSES: dict[tuple[str, str], tuple[Callable[[], str], Callable[[], object]]] = {
    ("js", "pixelUrl"): (
        lambda: (
            f"\nconsole.log(JSON.stringify({json.dumps(_signing_cases())}"
            ".map((c) => pixelUrl(c.base, c.params, c.secret))));\n"
        ),
        _expected_pixel_urls,
    ),
    ("php", "pixel_url"): (
        lambda: (
            f"\n$cases = json_decode({json.dumps(json.dumps(_signing_cases()))}, true);\n"
            "echo json_encode(array_map(fn($c) => pixel_url($c['base'], $c['params'], $c['secret']), $cases),"
            " JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);\n"
        ),
        _expected_pixel_urls,
    ),
    ("python", "verify_mailpixel"): (
        lambda: (
            "\nimport json as _json\nprint(_json.dumps("
            f"[verify_mailpixel({json.dumps(_secret())}, h, b.encode(), n) for h, b, n, _ in"
            f" _json.loads({json.dumps(json.dumps(_webhook_cases()))})]))\n"
        ),
        _webhook_expected,
    ),
    ("js", "verifyMailpixel"): (
        lambda: (
            f"\nconsole.log(JSON.stringify({json.dumps(_webhook_cases())}"
            f".map(([h, b, n]) => verifyMailpixel({json.dumps(_secret())}, h, Buffer.from(b), n))));\n"
        ),
        _webhook_expected,
    ),
}


def _secret() -> str:
    from tests.unit.test_webhooks import SECRET

    return SECRET


def harness(block: Block) -> tuple[str, Callable[[], object]] | None:
    for (lang, name), (code, expected) in HARNESSES.items():
        if block.lang == lang and re.search(rf"\b(def|function)\s+{name}\b", block.code):
            return code(), expected
    return None


class _Elements(HTMLParser):
    """Every non-void element opened is closed, in order."""

    VOID = {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.seen = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen += 1
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:] or 'nothing'}"
        self.open.pop()


def check_html(code: str) -> None:
    parser = _Elements()
    parser.feed(code)
    parser.close()
    assert parser.seen, "no element in an html block"
    assert not parser.open, f"never closed: {parser.open}"


def check_transcript(block: Block, stack: DocsStack, cwd: Path) -> None:
    """Runs each `$ ` command of a console block; its output must match the lines shown."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.code.replace(LOCAL_URL, stack.url).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and line.strip():
            steps[-1][1].append(line)
    assert steps, "a console block without a `$ ` command"
    env = {**stack.env, "MAILPIXEL_SIGNING_SECRETS": TRANSCRIPT_SECRET}
    for command, shown in steps:
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, f"$ {command}\n{result.stderr[-4000:]}"
        if shown:
            printed = result.stdout.splitlines()
            assert len(printed) == len(shown), f"$ {command}\n{result.stdout}"
            for got, want in zip(printed, shown, strict=True):
                pattern = ".+?".join(re.escape(part) for part in want.split("…"))
                assert re.fullmatch(pattern, got), f"$ {command}\nshown:   {want}\nprinted: {got}"


BLOCKS = all_blocks()


# A block marked not run is no test case at all (a skipped case would look like a test that
# passed by skipping); `test_not_run_blocks_each_give_their_reason` lists them instead.
@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in BLOCKS if not b.not_run])
def test_block(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if block.lang in SHOWN_ONLY:
        return  # shown, never run (a transcript or a diagram): nothing claims it runs
    if block.lang == "json":
        json.loads(block.code)
        return
    if block.lang == "html":
        check_html(block.code)
        return
    if block.lang == "console":
        check_transcript(block, request.getfixturevalue("docs_stack"), workdir(tmp_path / "work"))
        return
    known = SHELL | {"python", "py", "js", "javascript", "php"}
    assert block.lang in known, (
        f"{block.id}: a ```{block.lang or '(untagged)'} block: tag it text/console, mark it "
        "<!-- not run: REASON -->, or give it a runner in this file"
    )
    stack: DocsStack = request.getfixturevalue("docs_stack")
    cwd = workdir(tmp_path / "work")
    code = block.code.replace(LOCAL_URL, stack.url)
    lang = {"py": "python", "javascript": "js", "shell": "bash", "sh": "bash"}.get(block.lang, block.lang)
    check = harness(Block(block.path, block.line, lang, code, None))
    if check:
        code += check[0]
    if lang == "bash":
        output = run(["bash", "-e", "-o", "pipefail", "-s"], stack, cwd, stdin=code)
    elif lang == "python":
        (cwd / "block.py").write_text(PRELUDE + code)
        output = run([sys.executable, "block.py"], stack, cwd)
    elif lang == "js":
        (cwd / "block.js").write_text(code)
        output = run(["node", "block.js"], stack, cwd)
    else:
        php = shutil.which("php")
        assert php, (
            "php-cli is needed for the PHP example (`make setup` installs it with apt-get: check-doc-tools)"
        )
        (cwd / "block.php").write_text(code if code.lstrip().startswith("<?php") else "<?php\n" + code)
        output = run([php, "block.php"], stack, cwd)
    if check:
        assert json.loads(output.strip().splitlines()[-1]) == check[1]()


def test_not_run_blocks_each_give_their_reason() -> None:
    """What is not run, and why, in one place (`pytest -rA` prints it): every reason says
    something a reader can act on."""
    not_run = {b.id: b.not_run for b in BLOCKS if b.not_run}
    print("\n".join(f"not run: {block}: {reason}" for block, reason in sorted(not_run.items())))
    assert all(len(reason.strip()) > 10 for reason in not_run.values()), not_run


def test_every_not_run_marker_sits_on_a_block() -> None:
    """A `<!-- not run -->` marker that lost its block (a page edited around it) would silently
    exempt nothing; and the README's blocks are seen (the collector reads the right files)."""
    from tests.docs.blocks import NOT_RUN, doc_files

    markers = sum(1 for path in doc_files() for line in path.read_text().splitlines() if NOT_RUN.match(line))
    assert markers == sum(1 for b in BLOCKS if b.not_run)
    assert any(b.path == ROOT / "README.md" for b in BLOCKS)


def test_aws_only_blocks_say_so_to_the_reader() -> None:
    """The marker is an HTML comment, invisible on GitHub and in the site: a block that needs AWS
    says "AWS only" in its own text, so a reader knows it is not what `make run` answers."""
    hidden = [b.id for b in BLOCKS if (b.not_run or "").startswith("AWS only") and "AWS only" not in b.code]
    assert not hidden
    misnamed = [
        b.id
        for b in BLOCKS
        if b.not_run
        and re.search(r"\bAWS\b|deploy", b.not_run, re.I)
        and not b.not_run.startswith("AWS only")
    ]
    assert not misnamed, 'a reason about AWS starts "AWS only: "'
