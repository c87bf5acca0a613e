"""The seed memory benchmark (benchmarks/seed_memory.py): its rounds, sizes and table."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope.benchmarks.inprocess import seed_read_frames
from fakescope.benchmarks.media import make_no_face_video
from fakescope.benchmarks.seed_memory import (
    AFTER_SERVED,
    ALONE,
    frames_gigabytes,
    measure,
    render_markdown,
)
from tests.support.bench_summaries import TWO_CORE_MACHINE


def test_frames_gigabytes_is_what_the_seed_read_holds_when_given_a_video(tmp_path: Path) -> None:
    video = make_no_face_video(tmp_path / "v.mp4", seconds=2.0, fps=10, size=(160, 96))
    held = sum(f.nbytes for f in seed_read_frames(video)) / 1e9
    assert frames_gigabytes(video) == pytest.approx(held) == pytest.approx(20 * 160 * 96 * 3 / 1e9)


def test_seed_memory_measure_serves_once_before_each_run_after_served_when_interleaved(
    tmp_path: Path,
) -> None:
    video = make_no_face_video(tmp_path / "v.mp4", seconds=1.0, fps=10, size=(160, 96))
    events: list[str] = []

    def run(path: Path) -> float:
        events.append("run")
        return len(seed_read_frames(path)) / 1000

    result = measure([video], run, lambda: events.append("served"), rounds=3)
    # a first run, then per round: one alone, one right after a served video
    assert events == ["run"] + ["run", "served", "run"] * 3
    runs = result["videos"]["v.mp4"]
    assert runs[ALONE]["wall_runs_s"] == runs[AFTER_SERVED]["wall_runs_s"] == [0.01] * 3
    assert result["first_runs"]["v.mp4"]["wall_s"] == 0.01


def test_seed_memory_table_gives_each_video_and_condition_when_rendered() -> None:
    row = {"wall_s": 9.5, "user_cpu_s": 2.0, "system_cpu_s": 7.6, "page_faults": 1_187_000.0}
    result = {
        "what": "The seed pipeline",
        "machine": TWO_CORE_MACHINE,
        "rounds": 5,
        "frames_gb": {"v.mp4": 4.98},
        "first_runs": {"v.mp4": dict(row, wall_s=17.4, system_cpu_s=15.0)},
        "videos": {"v.mp4": {AFTER_SERVED: row | {"wall_runs_s": [9.5, 17.4]}}},
    }
    table = render_markdown(result)
    assert "5 rounds" in table
    assert (
        "| v.mp4 | 4.98 | after a served video | 9.50 | 2.00 | 7.60 | 1187 | 6.4 | 17.40 |" in table
    )
    assert (
        "| v.mp4 | 4.98 | first run in the process | 17.40 | 2.00 | 15.00 | 1187 | 12.6 |  |"
        in table
    )
    # a run of few faults is not priced: its system CPU is mostly other work
    few = dict(result, first_runs={"v.mp4": dict(row, page_faults=900.0)})
    assert "| first run in the process | 9.50 | 2.00 | 7.60 | 1 | n/a |  |" in render_markdown(few)
