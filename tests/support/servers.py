"""Helpers for tests that start real tritonserver processes."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sized

import psutil
import tritonclient.http as httpclient

from fakescope.client.shared_memory import REGION_PREFIX
from fakescope.paths import MODEL_REPOSITORY
from fakescope.serving.embedded import EmbeddedTriton

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


def restarted(
    server: EmbeddedTriton, first_pid: int, reported: Sized, timeout_s: float, poll_s: float = 0.1
) -> bool:
    """Wait until the supervisor ``reported`` something and ``server`` runs a new, ready process.

    Returns False when that has not happened within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        process = server.process
        new = len(reported) and process is not None and process.pid != first_pid
        if new and server.is_ready():
            return True
        time.sleep(poll_s)
    return False


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.2) -> bool:
    """Poll ``predicate`` until it returns True; False when ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def live_group_members(pgid: int) -> list[int]:
    """Return the pids of process group ``pgid`` that still run (zombies aside), by psutil."""
    alive = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != "zombie":
                alive.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def client_regions(server: EmbeddedTriton) -> list[str]:
    """Return the names of the clients' frames regions ``server`` has registered."""
    status = httpclient.InferenceServerClient(server.address.http_url)
    regions = status.get_system_shared_memory_status()
    return [r["name"] for r in regions if r["name"].startswith(REGION_PREFIX)]
