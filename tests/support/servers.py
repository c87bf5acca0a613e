"""Helpers for tests that start real tritonserver processes."""

from __future__ import annotations

import socket

from fakescope.paths import MODEL_REPOSITORY

REPOSITORY = MODEL_REPOSITORY


def free_ports(count: int) -> list[int]:
    """Ports that were free a moment ago on loopback."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
