"""The unprivileged runner of the permission tests (``tests/support/unprivileged.py``).

As root it forks a child that drops to ``nobody``; elsewhere it runs the check in-process, and
the test here, which is about the child, is skipped.
"""

from __future__ import annotations

import time

import pytest

from tests.support.unprivileged import as_unprivileged, runs_privileged

pytestmark = pytest.mark.skipif(not runs_privileged(), reason="the check forks only as root")


def _waits_for_good() -> None:
    time.sleep(3600)


def test_as_unprivileged_prints_the_childs_stacks_when_the_child_hangs(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The child prints its stacks before the parent kills it."""
    with pytest.raises(AssertionError, match="did not finish within 3 s"):
        as_unprivileged(_waits_for_good, timeout_s=3)
    assert "in _waits_for_good" in capfd.readouterr().err
