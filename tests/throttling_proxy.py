"""A fault-injecting HTTP proxy on 127.0.0.1 in front of DynamoDB Local, which never throttles.

Every request is forwarded as it is, except that a share of the calls named in `throttled`
gets DynamoDB's own throttling answer (HTTP 400, `ProvisionedThroughputExceededException`), as
a hot partition gives under a campaign. Counts what it forwarded and refused, per operation.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.loopback import LoopbackServer

THROTTLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded.",
}


class ThrottlingProxy(LoopbackServer):
    def __init__(
        self, target: str, *, share: float, throttled: frozenset[str] = frozenset({"PutItem"}), seed: int = 1
    ) -> None:
        parts = urlsplit(target)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.share, self.throttled = share, throttled
        self.rng = random.Random(seed)  # noqa: S311 - fault injection, not security
        self.lock = threading.Lock()
        self.forwarded: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        super().__init__(self._handler())

    def start(self) -> ThrottlingProxy:
        super().start()
        return self

    def _refuse(self, operation: str) -> bool:
        with self.lock:
            refuse = operation in self.throttled and self.rng.random() < self.share
            (self.refused if refuse else self.forwarded)[operation] += 1
        return refuse

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = str(self.headers.get("X-Amz-Target", "")).rsplit(".", 1)[-1]
                if proxy._refuse(operation):
                    self._answer(400, json.dumps(THROTTLED).encode(), "application/x-amz-json-1.0")
                    return
                try:
                    status, payload, content_type = self._forward(body)
                except (OSError, http.client.HTTPException):
                    # A kept-alive upstream connection DynamoDB Local closed meanwhile: once
                    # more on a new one, then answer as DynamoDB does when it fails inside
                    # (botocore retries a 500).
                    self.upstream = None
                    try:
                        status, payload, content_type = self._forward(body)
                    except (OSError, http.client.HTTPException):
                        self.upstream = None
                        status, payload, content_type = (
                            500,
                            b'{"__type":"InternalServerError"}',
                            "application/json",
                        )
                self._answer(status, payload, content_type)

            def _forward(self, body: bytes) -> tuple[int, bytes, str]:
                """One upstream connection per client connection, kept alive like the client's."""
                upstream = self.upstream or http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=30
                )
                self.upstream = upstream
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request("POST", self.path, body=body, headers=headers)
                response = upstream.getresponse()
                return response.status, response.read(), response.getheader("Content-Type") or ""

            def finish(self) -> None:
                super().finish()
                if self.upstream is not None:
                    self.upstream.close()

            def _answer(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
