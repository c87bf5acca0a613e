"""Sending completion webhooks to real receivers on loopback: slow ones, and a rebinding name."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fakescope.web.webhooks import send_webhook
from tests.support.servers import wait_until


class TricklingReceiver:
    """A TCP server that answers every request with ``head``, then ``trickle`` byte by byte.

    A byte every ``interval_s``, ``count`` times, then ``tail``: alive to a per-read timeout
    longer than ``interval_s``, however long the whole answer takes. ``hung_up`` records
    whether a client closed the connection before the answer ended.
    """

    def __init__(self, head: bytes, trickle: bytes, count: int, tail: bytes, interval_s: float):
        self.head, self.trickle, self.count, self.tail = head, trickle, count, tail
        self.interval_s = interval_s
        self.hung_up: list[bool] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request (small: one read)
            try:
                conn.sendall(self.head)
                for _ in range(self.count):
                    if self._stop.wait(self.interval_s):
                        return
                    conn.sendall(self.trickle)
                conn.sendall(self.tail)
            except (BrokenPipeError, ConnectionResetError):
                self.hung_up.append(True)
                return
            self.hung_up.append(False)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._listener.close()


@contextlib.contextmanager
def trickling(**kwargs: Any) -> Iterator[TricklingReceiver]:
    receiver = TricklingReceiver(**kwargs)
    try:
        yield receiver
    finally:
        receiver.close()


def test_send_webhook_gives_up_at_its_deadline_when_the_receiver_trickles_its_headers():
    # 30 bytes of header, one per 0.1 s: 3 s in all, six times the attempt's 0.5 s
    with trickling(
        head=b"HTTP/1.1 200 OK\r\nX-Slow: ",
        trickle=b"a",
        count=30,
        tail=b"\r\nContent-Length: 0\r\n\r\n",
        interval_s=0.1,
    ) as receiver:
        outcome = send_webhook(
            receiver.url, {"job_id": "x"}, policy="loopback", secret=None, timeout_s=0.5
        )
    assert outcome.startswith("failed: ReadTimeout"), outcome


def test_send_webhook_leaves_the_body_unread_when_the_receiver_trickles_an_endless_one():
    with trickling(
        head=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        trickle=b"1\r\nx\r\n",
        count=50,
        tail=b"0\r\n\r\n",
        interval_s=0.1,
    ) as receiver:
        outcome = send_webhook(
            receiver.url, {"job_id": "x"}, policy="loopback", secret=None, timeout_s=2.0
        )
        assert wait_until(lambda: receiver.hung_up, timeout_s=30)  # the answer ended, one way
    assert outcome == "HTTP 200"
    assert receiver.hung_up == [True]  # the webhook left at the status line, body unread


@contextlib.contextmanager
def _recording_server(host: str, port: int) -> Iterator[list[str]]:
    """An HTTP server on ``host:port`` that records the paths POSTed to it."""
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            paths.append(f"{self.headers['Host']} {self.path}")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield paths
    finally:
        server.shutdown()
        server.server_close()


def test_send_webhook_connects_to_the_checked_address_when_the_name_resolves_elsewhere_later(
    monkeypatch: pytest.MonkeyPatch,
):
    """DNS rebinding: the name's first answer passes the check, later ones point elsewhere.

    The DNS server is the one stand-in: the name ``hooks.rebind.test`` resolves to 127.0.0.1
    once, then to 127.0.0.2 (a zero-TTL answer that changes). Both addresses have a real
    receiver on the same port; the webhook must reach the checked one.
    """
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    real_getaddrinfo: Callable[..., Any] = socket.getaddrinfo
    answers = iter(["127.0.0.1"])

    def rebinding_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.rebind.test":
            host = next(answers, "127.0.0.2")
        return real_getaddrinfo(host, *args, **kwargs)

    with (
        _recording_server("127.0.0.1", port) as checked,
        _recording_server("127.0.0.2", port) as elsewhere,
    ):
        monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
        outcome = send_webhook(
            f"http://hooks.rebind.test:{port}/hook?job=1",
            {"job_id": "x"},
            policy="loopback",
            secret=None,
            timeout_s=2.0,
        )
        monkeypatch.undo()
    assert outcome == "HTTP 204"
    assert checked == [f"hooks.rebind.test:{port} /hook?job=1"]  # the URL's Host, its path
    assert elsewhere == []
