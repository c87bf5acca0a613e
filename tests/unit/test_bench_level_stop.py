"""A level that outlives its stop timeout is stopped, writes its records, and fails the bench."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fakescope.benchmarks.run import (
    STACKS_SIGNAL,
    BoundedRun,
    bench_failures,
    render_markdown,
    run_bounded,
)
from tests.support.bench_summaries import gpu_run_summary

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
    assert run_bounded(command, dict(os.environ), limit_s=3).stopped is True
    assert records.read_text() == "records"  # SIGTERM, not SIGKILL: nothing it held is lost


def test_run_bounded_lets_a_level_end_when_it_finishes_within_its_limit(tmp_path: Path):
    records = tmp_path / "records.jsonl"
    command = [sys.executable, "-c", "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()"]
    ended = run_bounded([*command, str(records)], dict(os.environ), limit_s=60)
    assert ended == BoundedRun(stopped=False, exit_code=0)
    assert records.is_file()


def test_run_bounded_has_a_level_write_where_it_hung_when_it_outlives_its_limit(capfd):
    command = [sys.executable, "-c", HANGING_LEVEL_WITH_STACKS, str(int(STACKS_SIGNAL))]
    ended = run_bounded(command, dict(os.environ), limit_s=3, stacks_signal=STACKS_SIGNAL)
    assert ended.stopped is True
    assert "in waits_for_ever" in capfd.readouterr().err


def test_run_bounded_returns_the_exit_code_when_a_level_ends_on_its_own():
    command = [sys.executable, "-c", "raise SystemExit(2)"]  # Locust's code for a user that died
    assert run_bounded(command, dict(os.environ), limit_s=60) == BoundedRun(
        stopped=False, exit_code=2
    )


def _level(**ended: object) -> dict[str, object]:
    """A level within the limit, nothing refused or failed, ended as ``ended`` says."""
    return {"ratio": {"p95": 0.2}, "rejected": 0, "failures": 0, **ended}


def test_bench_failures_fail_a_level_when_it_was_stopped_after_its_limit():
    levels = {"grpc": {"4": _level(stopped=True, locust_exit_code=0)}}
    assert bench_failures(levels, 0.5, overload=False) == [
        "grpc 4 users: stopped after its limit, the videos then in flight have no record"
    ]
    # above the checked levels and in overload runs alike: its records are not the level's
    levels = {"grpc": {"16": _level(stopped=True, locust_exit_code=0)}}
    assert len(bench_failures(levels, 0.5, overload=True)) == 1


@pytest.mark.parametrize(("code", "failed"), [(0, False), (1, False), (2, True), (-9, True)])
def test_bench_failures_fail_a_level_when_locust_exited_otherwise_than_its_records_say(
    code, failed
):
    # 1: a failed request or a p95 past the limit, which the records hold themselves
    levels = {"http": {"2": _level(stopped=False, locust_exit_code=code)}}
    assert bench_failures(levels, 0.5, overload=False) == (
        [f"http 2 users: Locust exited with code {code}, its records may lack videos"]
        if failed
        else []
    )


def test_bench_failures_pass_a_level_when_its_summary_predates_the_stop_record():
    assert bench_failures({"grpc": {"1": _level()}}, 0.5, overload=False) == []


def test_render_markdown_says_a_level_was_stopped_when_its_records_may_lack_videos():
    summary = gpu_run_summary()
    assert "records may lack videos" not in render_markdown(summary)
    summary["levels"]["grpc"]["8"] |= {"stopped": True, "locust_exit_code": 0}
    assert (
        "- Levels whose records may lack videos: grpc 8 users (stopped after its limit, the "
        "videos then in flight have no record)\n" in render_markdown(summary)
    )
