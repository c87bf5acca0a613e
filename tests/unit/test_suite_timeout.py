"""The suite's own limit per test (``pyproject.toml``, pytest-timeout): a hang ends the run.

And its backstop (``tests/support/hang_backstop.py``): a hang that holds the GIL, which stops
pytest-timeout's own timer thread too, still ends it; and a process forked while the backstop is
armed is not held by it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fakescope.paths import PROJECT_ROOT


def _run_pytest(tmp_path: Path, test_source: str, *options: str, fails: bool = True) -> str:
    """Run pytest with the suite's settings on one test file; return its output.

    ``fails``: whether the run must fail (a hang ended) or pass.
    """
    hangs = tmp_path / "test_hangs.py"
    hangs.write_text(test_source)
    argv = [sys.executable, "-m", "pytest", "-c", str(PROJECT_ROOT / "pyproject.toml")]
    argv += [*options, "-p", "no:cacheprovider", str(hangs)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    assert (done.returncode != 0) == fails, output
    return output


def test_pytest_run_ends_with_every_threads_stack_when_a_test_hangs(tmp_path: Path) -> None:
    """With the suite's settings (a 1 s limit instead of its own), a test that waits for good."""
    source = "import threading\n\n\ndef test_waits_for_good():\n    threading.Event().wait()\n"
    output = _run_pytest(tmp_path, source, "--timeout", "1")
    assert "Timeout" in output, output
    # the thread method: the stack of the thread that hung, down to the line it waits on
    assert "Stack of MainThread" in output and "test_waits_for_good" in output, output


def test_pytest_run_ends_with_every_threads_stack_when_a_test_hangs_holding_the_gil(
    tmp_path: Path,
) -> None:
    """A C call that keeps the GIL: pytest-timeout's thread cannot run; the backstop can."""
    # ctypes.PyDLL keeps the GIL for the call (ctypes.CDLL would release it)
    source = "import ctypes\n\n\ndef test_holds_the_gil():\n    ctypes.PyDLL(None).sleep(600)\n"
    options = ["--timeout", "1", "-o", "timeout_backstop_grace=1"]
    output = _run_pytest(tmp_path, source, *options, "-p", "tests.support.hang_backstop")
    assert re.search(r"Timeout \(0:00:0\d[.0-9]*\)!", output), output  # faulthandler's header
    assert "test_holds_the_gil" in output, output
    assert "Stack of MainThread" not in output, output  # pytest-timeout's never got to print


def test_pytest_run_lets_a_fork_child_use_faulthandlers_timer_when_the_backstop_is_armed(
    tmp_path: Path,
) -> None:
    """A fork inherits no armed timer: cancelling it there (as interpreter exit does) returns."""
    source = (
        "import faulthandler, os, time\n\n\n"
        "def test_forks():\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        faulthandler.cancel_dump_traceback_later()\n"
        "        os._exit(0)\n"
        "    deadline = time.monotonic() + 30\n"
        "    while time.monotonic() < deadline:\n"
        "        done, status = os.waitpid(pid, os.WNOHANG)\n"
        "        if done:\n"
        "            assert os.waitstatus_to_exitcode(status) == 0\n"
        "            return\n"
        "        time.sleep(0.05)\n"
        "    os.kill(pid, 9)\n"
        "    raise AssertionError('the fork child waited for the timer of its parent')\n"
    )
    output = _run_pytest(
        tmp_path, source, "--timeout", "120", "-p", "tests.support.hang_backstop", fails=False
    )
    assert "1 passed" in output, output
