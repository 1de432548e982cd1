"""Issue 18 item 13: `make run`'s access log keeps no more of a reader than the table does: the
address as MAILPIXEL_IP_STORAGE keeps it, and no user id, email id, signature or destination."""

from __future__ import annotations

import http.client
import logging
import socket
import threading

import pytest

from mailpixel.ops.local.stack import free_port, local_server
from mailpixel.signing import make_click_url, make_url

SECRET = "access-log-secret"
USER, EMAIL, DESTINATION = "alice@example.com", "newsletter-7", "https://shop.example/cart?token=s3cr3t"
ADDRESS_SHOWN = {"full": "127.0.0.1", "truncated": "127.0.0.0", "none": "-"}


def get(port: int, target: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", target)  # http.client never follows the click's redirect
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.parametrize("mode", sorted(ADDRESS_SHOWN))
def test_access_lines_follow_the_ip_mode_and_carry_no_ids_signatures_or_destinations(
    settings, table, caplog, mode
):
    settings = settings.with_overrides(
        port=free_port(), ip_storage=mode, signing_secrets=(SECRET,), api_keys=("key",)
    )
    server, _ = local_server(settings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.port}"
    pixel = make_url(base, EMAIL, USER, SECRET).removeprefix(base)
    click = make_click_url(base, EMAIL, USER, DESTINATION, SECRET).removeprefix(base)
    sig = click.rsplit("sig=", 1)[1]
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            assert get(settings.port, pixel) == 200
            assert get(settings.port, click) == 302
            assert get(settings.port, f"/api/users/{USER}/opens") == 401
            with socket.create_connection(("127.0.0.1", settings.port), timeout=10) as raw:
                # A request line that does not parse: the server's error message quotes it.
                raw.sendall(f"GET /pixel?user_id={USER} HTTP/1.1 junk\r\n\r\n".encode())
                answer = b"".join(iter(lambda: raw.recv(4096), b""))
                assert b"400" in answer.split(b"\n", 1)[0] or b"Error code: 400" in answer
    finally:
        server.shutdown()
        thread.join(timeout=10)
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    log = "\n".join(lines)
    assert len(lines) >= 4, log
    for secret_text in (USER, "alice", EMAIL, sig, "shop.example", "s3cr3t", "user_id", "sig="):
        assert secret_text not in log, f"{secret_text!r} in the access log:\n{log}"
    assert '"GET /pixel" 200' in log and '"GET /click" 302' in log
    assert '"GET /api/users/{id}/opens" 401' in log
    for line in lines:
        assert line.startswith(ADDRESS_SHOWN[mode] + " "), line
    if mode != "full":
        assert "127.0.0.1" not in log
