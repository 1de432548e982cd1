"""`npx serverless offline` (issue 16): the real serverless.yml routes, through handler.py, against
DynamoDB Local. Pixel, a signed click, the API with and without a key and the dashboard; then
Ctrl-C leaves no process and no file behind."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailpixel.aws import dynamodb_client
from mailpixel.config import Settings
from mailpixel.ops.local.stack import free_port
from mailpixel.ops.local.tables import ensure_tables
from mailpixel.signing import make_click_url, make_url
from tests.e2e.test_local_stack import live_processes
from tests.pixel_asserts import assert_gif_bytes

ROOT = Path(__file__).resolve().parents[2]
SECRET, KEY = "offline-secret", "offline-key"
# What serverless-offline with serverless-wsgi may leave in the service folder when killed.
STRAY = ("wsgi_handler.py", "serverless_wsgi.py", ".serverless-wsgi")


def group_members(pgid: int) -> list[str]:
    """Command lines of the live processes in a process group."""
    return [cmdline for _, group, cmdline in live_processes() if group == pgid]


class Offline:
    def __init__(self, stage: str, endpoint_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILPIXEL_", "DYNAMODB_"))}
        env.update(
            VIRTUAL_ENV=str(ROOT / ".venv"),  # serverless-offline runs the venv's python
            SLS_TELEMETRY_DISABLED="1",
            DYNAMODB_ENDPOINT_URL=endpoint_url,
            MAILPIXEL_SIGNING_SECRETS=SECRET,
            MAILPIXEL_API_KEYS=KEY,
            MAILPIXEL_DATA_DIR=str(data_dir),
        )
        command = ["npx", "--no-install", "serverless", "offline", "--stage", stage, "--host", "127.0.0.1"]
        command += ["--httpPort", str(self.port), "--lambdaPort", str(free_port())]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a process group, as a terminal gives it: Ctrl-C reaches all
        )
        self.output: list[str] = []

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if "Server ready" in line:
                return
        raise AssertionError("serverless offline did not start:\n" + "".join(self.output))

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, target, headers={"User-Agent": "Mozilla/5.0", **(headers or {})})
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def stop(self) -> None:
        """Ctrl-C, as a person stops it: SIGINT to the whole process group."""
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            raise AssertionError("serverless offline ignored Ctrl-C") from None
        finally:
            if self.process.stdout is not None:
                self.output.append(self.process.stdout.read())


@pytest.fixture
def offline(dynamodb_local, tmp_path) -> Iterator[Offline]:
    stage = f"offline{os.getpid()}"
    client = dynamodb_client(Settings(endpoint_url=dynamodb_local.endpoint_url))
    ensure_tables(client, f"mailpixel-{stage}-events", f"mailpixel-{stage}-meta", f"mailpixel-{stage}-clicks")
    before = {name for name in STRAY if (ROOT / name).exists()}
    server = Offline(stage, dynamodb_local.endpoint_url, tmp_path / "data")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
    deadline = time.monotonic() + 15  # the handlers' Python processes exit when node's pipe closes
    while group_members(server.process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(server.process.pid) == [], "a process of serverless offline outlived Ctrl-C"
    assert {name for name in STRAY if (ROOT / name).exists()} <= before, (
        "serverless offline left files behind"
    )


def test_serverless_offline_serves_the_real_routes_through_handler_py(offline):
    # The pixel, twice with the same URL: offline gives every request the same request id, and
    # each open must still be its own (in AWS, a reload is a new request with a new id).
    pixel = make_url(offline.base, "offline-e1", "alice", SECRET).removeprefix(offline.base)
    for _ in range(2):
        status, headers, body = offline.request("GET", pixel)
        assert status == 200 and headers["Content-Type"] == "image/gif"
        assert "no-store" in headers["Cache-Control"] and "no-cache" in headers["Cache-Control"]
        assert_gif_bytes(body)
    # HEAD: offline answers it through the GET route; the app still sees HEAD and records nothing.
    status, headers, _ = offline.request("HEAD", pixel)
    assert status == 200 and headers["Content-Type"] == "image/gif"

    # A signed click redirects to its destination; an unsigned one never does.
    click = make_click_url(offline.base, "offline-e1", "alice", "https://shop.example/a?b=1", SECRET)
    status, headers, _ = offline.request("GET", click.removeprefix(offline.base))
    assert status == 302 and headers["Location"] == "https://shop.example/a?b=1"
    status, headers, _ = offline.request(
        "GET", "/click?email_id=e&user_id=u&url=https%3A%2F%2Fevil.example%2F"
    )
    assert status == 400 and "Location" not in headers

    # The API: 401 without the key, the opens with it.
    status, headers, _ = offline.request("GET", "/api/emails/offline-e1/opens")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, body = offline.request(
        "GET", "/api/emails/offline-e1/opens", {"Authorization": f"Bearer {KEY}"}
    )
    assert status == 200, body
    opens = json.loads(body)["items"]
    assert [(o["email_id"], o["user_id"], o["signed"]) for o in opens] == [("offline-e1", "alice", True)] * 2
    assert len({o["request_id"] for o in opens}) == 2

    status, headers, body = offline.request("GET", "/dashboard")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"mailpixel" in body.lower()
