"""`mailpixel run` (what `make run` starts) as a person uses it: start, open, Ctrl-C, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mailpixel.ops.local.stack import free_port
from tests.pixel_asserts import assert_gif_bytes

BIN = Path(sys.executable).parent


def live_processes() -> Iterator[tuple[int, int, str]]:
    """(pid, process group, command line) of every process that is not a zombie."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state[0] != "Z":
            yield int(entry.name), int(state[2]), cmdline


def processes_mentioning(text: str) -> list[int]:
    return [pid for pid, _, cmdline in live_processes() if text in cmdline]


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.port, self.db_port = free_port(), free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("DYNAMODB_ENDPOINT_URL", "MAILPIXEL_TABLE")},
            "PORT": str(self.port),
            "DYNAMODB_PORT": str(self.db_port),
            "MAILPIXEL_DATA_DIR": str(data_dir),
            "IPINFO_URL": "http://127.0.0.1:9",  # nothing listens: enrichment must not reach out
        }
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self) -> str:
        self.process = subprocess.Popen(
            [str(BIN / "mailpixel"), "run"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if line.startswith("Pixel URL: "):
                return line.split(": ", 1)[1].strip()
        raise AssertionError("stack did not start:\n" + "".join(self.output))

    def stop(self) -> int:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        code = self.process.wait(timeout=60)
        assert self.process.stdout is not None
        self.output.append(self.process.stdout.read())
        return code

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [str(BIN / "mailpixel"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


def test_run_serves_stores_stops_cleanly_and_keeps_data(tmp_path):
    stack = Stack(tmp_path / "data")
    url = stack.start()
    try:
        assert url == f"http://127.0.0.1:{stack.port}/pixel?email_id=e1&user_id=u1"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            assert response.headers["Cache-Control"].startswith("no-store")
            assert_gif_bytes(response.read())
        rows = json.loads(stack.cli("opens", "--email-id", "e1", "--format", "json"))
        assert [(r["email_id"], r["user_id"], r["ip"]) for r in rows] == [("e1", "u1", "127.0.0.1")]
        # The stack's stream poller enriches the open within seconds (issue 3's promise: 10 s).
        deadline = time.monotonic() + 10
        while "enriched_at" not in rows[0] and time.monotonic() < deadline:
            time.sleep(0.25)
            rows = json.loads(stack.cli("opens", "--email-id", "e1", "--format", "json"))
        (row,) = rows
        assert {"client", "machine_open", "geo", "enriched_at"} <= set(row), row
        assert row["geo"]["source"] == "reserved"  # loopback is never sent to a provider
        assert "Enriching new opens" in "".join(stack.output)
        # Issue 16: `mailpixel doctor` passes on the stack `make run` starts (cli() checks exit 0).
        assert stack.cli("doctor").splitlines()[-1] == "all checks passed"
        # Issue 11: DynamoDB Local cannot be bound to loopback, and the banner says so; the data
        # directory is its owner's only.
        warning = next(line for line in stack.output if line.startswith("WARNING: DynamoDB Local"))
        assert "EVERY network interface" in warning and str(stack.db_port) in warning
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    finally:
        assert stack.stop() == 0
    assert processes_mentioning(str(tmp_path / "data")) == [], "a process of the first run is still alive"
    assert "Traceback" not in "".join(stack.output), "Ctrl-C should stop everything in order"

    stack.start()
    try:
        rows = json.loads(stack.cli("opens", "--email-id", "e1", "--format", "json"))
        assert len(rows) == 1, "the open did not survive a restart"
    finally:
        assert stack.stop() == 0
    assert processes_mentioning(str(tmp_path / "data")) == []


def test_busy_port_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        stack = Stack(tmp_path / "data")
        stack.env["PORT"] = str(holder.getsockname()[1])
        result = subprocess.run(
            [str(BIN / "mailpixel"), "run"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert "in use" in result.stderr and "PORT" in result.stderr


def test_a_burst_of_sigterm_and_sigint_stops_promptly_and_leaves_nothing(tmp_path):
    """Issue 18 item 17: a signal arriving while the handler of the one before still runs must
    not hang `mailpixel run` (a handler that takes a lock deadlocks on itself), and DynamoDB
    Local must stop with it. Signals are sent alternately, many times, as fast as Python can:
    some land inside the previous handler."""
    stack = Stack(tmp_path / "data")
    # The banner makes its sample link on MAILPIXEL_BASE_URL (issue 16), checked here to save
    # a start of the stack.
    stack.env["MAILPIXEL_BASE_URL"] = "https://t.example.com"
    assert stack.start().startswith("https://t.example.com/pixel?email_id=e1&user_id=u1")
    assert stack.process is not None
    pid = stack.process.pid
    try:
        for _ in range(3000):
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:  # it has already stopped: that is the point
                    break
        code = stack.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        stack.process.wait(timeout=10)
        raise AssertionError("mailpixel run hung on a burst of SIGTERM and SIGINT") from None
    finally:
        time.sleep(0.5)  # DynamoDB Local gets SIGTERM from PR_SET_PDEATHSIG at worst
        leftovers = processes_mentioning(str(tmp_path / "data"))
        for leftover in leftovers:
            os.kill(leftover, signal.SIGKILL)
    assert code == 0
    assert leftovers == [], "DynamoDB Local outlived mailpixel run"
