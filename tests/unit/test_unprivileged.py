"""The unprivileged runner of the permission tests (``tests/support/unprivileged.py``).

As root it forks a child that drops to ``nobody``; elsewhere it runs the check in-process, and
these tests, which are about the child, are skipped.
"""

from __future__ import annotations

import faulthandler
import os
import time

import pytest

from tests.support.unprivileged import as_unprivileged, runs_privileged

pytestmark = pytest.mark.skipif(not runs_privileged(), reason="the check forks only as root")


def _waits_for_good() -> None:
    time.sleep(3600)


def test_as_unprivileged_returns_the_childs_result_when_faulthandlers_timer_is_armed() -> None:
    """A timer armed at the fork (not disarmed around it): the child must not wait on it."""
    faulthandler.dump_traceback_later(3600)
    try:
        assert as_unprivileged(os.geteuid, timeout_s=60) != 0
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_as_unprivileged_prints_the_childs_stacks_when_the_child_hangs(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(AssertionError, match="did not finish within 3 s"):
        as_unprivileged(_waits_for_good, timeout_s=3)
    assert "in _waits_for_good" in capfd.readouterr().err
