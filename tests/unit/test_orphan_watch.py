"""The watch that stops a tritonserver whose starting process died without stopping it.

Stand-ins for the server here are plain processes in a session of their own, as tritonserver
is started; the whole path with the real server: ``tests/server/test_faults.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakescope.serving.orphan_watch import (
    end_orphan_watch,
    start_orphan_watch,
    start_time,
    stop_orphan,
)
from tests.support.servers import live_group_members, wait_until

#: A server that ignores SIGTERM and has a child in its group, as tritonserver has its stubs.
STUBBORN = "trap '' TERM; sleep 600 & wait"


@pytest.fixture
def region() -> Iterator[tuple[Path, str]]:
    """A /dev/shm file of its own and the pattern that names it."""
    name = f"fakescope_test_{uuid.uuid4().hex}"
    path = Path("/dev/shm") / f"{name}_stub"
    path.write_bytes(b"x")
    yield path, f"{name}_*"
    path.unlink(missing_ok=True)


def _server(script: str = "sleep 600") -> subprocess.Popen[bytes]:
    return subprocess.Popen(["bash", "-c", script], start_new_session=True)


def _kill(server: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def test_stop_orphan_leaves_a_process_alone_when_its_start_time_differs(region):
    path, pattern = region
    server = _server()
    try:
        assert not stop_orphan(server.pid, "0", 1.0, pattern)  # a newcomer on a reused pid
        assert server.poll() is None
        assert path.exists()
    finally:
        _kill(server)


def test_stop_orphan_kills_the_group_and_removes_its_regions_when_sigterm_is_ignored(region):
    path, pattern = region
    server = _server(STUBBORN)
    try:
        assert wait_until(lambda: len(live_group_members(server.pid)) == 2, timeout_s=10)
        started = start_time(server.pid)
        assert started is not None
        assert stop_orphan(server.pid, started, 0.5, pattern)
        assert live_group_members(server.pid) == []
        assert not path.exists()
    finally:
        _kill(server)


def test_stop_orphan_does_not_wait_out_its_grace_when_the_server_ended_unreaped(region):
    _, pattern = region
    server = _server()  # this test's child: after SIGTERM a zombie until the test reaps it
    grace_s = 120.0
    try:
        started = start_time(server.pid)
        assert started is not None
        began = time.monotonic()
        assert stop_orphan(server.pid, started, grace_s, pattern)
        assert time.monotonic() - began < grace_s / 2  # a zombie counts as gone
        assert server.wait(timeout=10) == -signal.SIGTERM
    finally:
        _kill(server)


@pytest.fixture
def watched(region) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A stand-in server and the orphan watch over it (both gone after the test)."""
    _, pattern = region
    server = _server()
    watch = start_orphan_watch(server.pid, pattern)
    yield server, watch
    watch.kill()
    watch.wait()
    _kill(server)


def test_orphan_watch_stops_the_server_when_its_starter_closes_the_pipe(region, watched):
    path, _ = region
    server, watch = watched
    assert watch.stdin is not None
    watch.stdin.close()  # what the starter's death does: no writer is left
    assert server.wait(timeout=30) == -signal.SIGTERM
    assert watch.wait(timeout=30) == 0
    assert not path.exists()


def test_orphan_watch_leaves_the_server_running_when_it_is_ended_first(region, watched):
    path, _ = region
    server, watch = watched
    end_orphan_watch(watch)
    with pytest.raises(subprocess.TimeoutExpired):
        server.wait(timeout=1)
    assert path.exists()
