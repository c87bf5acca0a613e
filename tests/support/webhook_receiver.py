"""A real HTTP server on loopback that records the webhook payloads it receives."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.servers import free_ports


class WebhookReceiver:
    """Payloads received (JSON bodies of POSTs), and an event set at the first one."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.event = threading.Event()
        self.url = ""


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Serve a receiver on a free loopback port for the ``with`` block; ``.url`` is its hook."""
    state = WebhookReceiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            state.event.set()

        def log_message(self, *args: object) -> None:
            pass

    port = free_ports(1)[0]
    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    state.url = f"http://127.0.0.1:{port}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
