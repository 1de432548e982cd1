"""Serve something on 127.0.0.1 in a background thread for the length of a `with` block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server

from mailpixel.ops.local.stack import free_port


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """A WSGI app served threaded on a free port; yields its base URL."""
    http = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join(timeout=10)
