"""An ipinfo.io-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

`GET /<ip>/json` (or `/<ip>`) and `POST /batch` answer like ipinfo. `mode` switches it to
`slow` (answers after `delay` seconds), `429`, `500`, `malformed` (cut-off JSON) or
`wrong_shape` (valid JSON of the wrong shape); `requests` and `ips_seen`
count what reached it, so tests can assert what was (not) sent.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import LoopbackServer


def answer_for(ip: str) -> dict[str, Any]:
    """A deterministic fake location, picked by the address's bytes."""
    last = sum(ip.encode()) % 3
    city, region, country, loc, tz = [
        ("Mountain View", "California", "US", "37.4056,-122.0775", "America/Los_Angeles"),
        ("Paris", "Île-de-France", "FR", "48.8534,2.3488", "Europe/Paris"),
        ("Sydney", "New South Wales", "AU", "-33.8678,151.2073", "Australia/Sydney"),
    ][last]
    return {
        "ip": ip,
        "city": city,
        "region": region,
        "country": country,
        "loc": loc,
        "org": "AS15169 Example",
        "timezone": tz,
    }


class FakeIpinfo(LoopbackServer):
    def __init__(self) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.retry_after: str | None = None
        self.requests = 0
        self.batch_requests = 0
        self.ips_seen: list[str] = []
        self.auth_headers: list[str | None] = []
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    def start(self) -> FakeIpinfo:
        super().start()
        return self

    def reset(self, mode: str = "ok") -> None:
        with self._lock:
            self.mode, self.delay, self.retry_after = mode, 0.0, None
            self.requests = self.batch_requests = 0
            self.ips_seen.clear()
            self.auth_headers.clear()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                # The client may have given up (its timeout): what a slow server sees.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def _common(self, ips: list[str], batch: bool) -> None:
                with fake._lock:
                    fake.requests += 1
                    fake.batch_requests += int(batch)
                    fake.ips_seen.extend(ips)
                    fake.auth_headers.append(self.headers.get("Authorization"))
                    mode, delay = fake.mode, fake.delay
                if mode == "slow":
                    time.sleep(delay)
                if mode == "429":
                    headers = {"Retry-After": fake.retry_after} if fake.retry_after else {}
                    self._send(429, b'{"error": "rate limited"}', headers)
                elif mode == "500":
                    self._send(500, b"<html>oops</html>")
                elif mode == "malformed":
                    self._send(200, b'{"ip": "1.2.3.4", "city": ')
                elif mode == "wrong_shape":
                    self._send(200, b'["not", "an", "object"]' if not batch else b'{"error": "bad request"}')
                elif batch:
                    self._send(200, json.dumps({ip: answer_for(ip) for ip in ips}).encode())
                else:
                    self._send(200, json.dumps(answer_for(ips[0])).encode())

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                if not parts:
                    self._send(404, b"{}")
                    return
                self._common([parts[0]], batch=False)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                ips = json.loads(self.rfile.read(length) or b"[]")
                self._common([str(ip) for ip in ips], batch=True)

        return Handler
