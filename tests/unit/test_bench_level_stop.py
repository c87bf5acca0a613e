"""A benchmark level that outlives its stop timeout is stopped so that it still writes records."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fakescope.benchmarks.run import STACKS_SIGNAL, run_bounded

#: A stand-in for a Locust level whose user hangs: it writes what it holds on SIGTERM only.
HANGING_LEVEL = """
import pathlib, signal, sys, time
def stop(*_):
    pathlib.Path(sys.argv[1]).write_text("records")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
time.sleep(120)
"""
#: A stand-in for a hung Locust level that writes its stacks on a signal, as the locustfile does.
HANGING_LEVEL_WITH_STACKS = """
import faulthandler, sys, time
faulthandler.register(int(sys.argv[1]), all_threads=True)
def waits_for_ever():
    time.sleep(120)
waits_for_ever()
"""


def test_run_bounded_stops_a_level_with_sigterm_when_it_outlives_its_limit(tmp_path: Path):
    records = tmp_path / "records.jsonl"
    command = [sys.executable, "-c", HANGING_LEVEL, str(records)]
    assert run_bounded(command, dict(os.environ), limit_s=3) is True
    assert records.read_text() == "records"  # SIGTERM, not SIGKILL: nothing it held is lost


def test_run_bounded_lets_a_level_end_when_it_finishes_within_its_limit(tmp_path: Path):
    records = tmp_path / "records.jsonl"
    command = [sys.executable, "-c", "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()"]
    assert run_bounded([*command, str(records)], dict(os.environ), limit_s=60) is False
    assert records.is_file()


def test_run_bounded_has_a_level_write_where_it_hung_when_it_outlives_its_limit(capfd):
    command = [sys.executable, "-c", HANGING_LEVEL_WITH_STACKS, str(int(STACKS_SIGNAL))]
    assert run_bounded(command, dict(os.environ), limit_s=3, stacks_signal=STACKS_SIGNAL) is True
    assert "in waits_for_ever" in capfd.readouterr().err
