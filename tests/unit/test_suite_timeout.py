"""The suite's own limit per test (``pyproject.toml``, pytest-timeout): a hang ends the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fakescope.paths import PROJECT_ROOT


def test_pytest_run_ends_with_every_threads_stack_when_a_test_hangs(tmp_path: Path) -> None:
    """With the suite's settings (a 1 s limit instead of its own), a test that waits for good."""
    hangs = tmp_path / "test_hangs.py"
    hangs.write_text(
        "import threading\n\n\ndef test_waits_for_good():\n    threading.Event().wait()\n"
    )
    argv = [sys.executable, "-m", "pytest", "-c", str(PROJECT_ROOT / "pyproject.toml")]
    argv += ["--timeout", "1", "-p", "no:cacheprovider", str(hangs)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Timeout" in output, output
    # the thread method: the stack of the thread that hung, down to the line it waits on
    assert "Stack of MainThread" in output and "test_waits_for_good" in output, output
