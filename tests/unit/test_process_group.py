"""Process groups read from /proc: real processes started by the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fakescope.serving.process_group import live_members, wait_until_gone

#: A parent that starts a child, which stays in its group, and then sleeps: a group of two.
_PARENT_AND_CHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print('ready', flush=True); time.sleep(60)"
)


@pytest.fixture
def group() -> Iterator[subprocess.Popen[str]]:
    """A process group of two sleeping processes; killed after the test."""
    leader = subprocess.Popen(
        [sys.executable, "-c", _PARENT_AND_CHILD],
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert leader.stdout is not None and leader.stdout.readline().strip() == "ready"
    try:
        yield leader
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
        leader.stdout.close()


def test_live_members_counts_every_process_when_the_group_runs(group):
    assert live_members(group.pid) == 2


def test_wait_until_gone_returns_0_when_the_group_is_killed(group):
    os.killpg(group.pid, signal.SIGKILL)
    group.wait()  # the leader is ours to reap; the child goes to init
    assert wait_until_gone(group.pid, timeout_s=10) == 0
    assert live_members(group.pid) == 0


def test_wait_until_gone_returns_the_live_count_when_the_group_outlives_the_timeout(group):
    assert wait_until_gone(group.pid, timeout_s=0.1) == 2
