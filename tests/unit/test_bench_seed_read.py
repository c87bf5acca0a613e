"""The seed read benchmark (benchmarks/seed_read.py): its timing of a real video, and its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope.benchmarks.media import make_no_face_video
from fakescope.benchmarks.seed_read import AFTER_SERVED, ALONE, measure, render_markdown, timed_read
from tests.support.bench_summaries import TWO_CORE_MACHINE


def test_timed_read_holds_every_frame_as_rgb_when_reading_a_video(tmp_path: Path) -> None:
    video = make_no_face_video(tmp_path / "v.mp4", seconds=2.0, fps=10, size=(160, 96))
    read = timed_read(video)
    assert read["frames_gb"] == pytest.approx(20 * 160 * 96 * 3 / 1e9)  # all 20 frames, RGB
    assert read["wall_s"] > 0 and read["page_faults"] >= 0


def test_seed_read_measure_serves_once_before_each_read_after_served_when_interleaved(
    tmp_path: Path,
) -> None:
    video = make_no_face_video(tmp_path / "v.mp4", seconds=1.0, fps=10, size=(160, 96))
    served: list[int] = []
    result = measure([video], lambda: served.append(1), rounds=3)
    assert len(served) == 3  # once per round, before the read it precedes
    runs = result["videos"]["v.mp4"]
    assert len(runs[ALONE]["wall_runs_s"]) == len(runs[AFTER_SERVED]["wall_runs_s"]) == 3
    assert result["first_reads"]["v.mp4"]["frames_gb"] == runs[ALONE]["frames_gb"]


def test_seed_read_table_gives_each_video_and_condition_when_rendered() -> None:
    row = {
        "wall_s": 9.5,
        "user_cpu_s": 2.0,
        "system_cpu_s": 7.6,
        "page_faults": 1_187_000.0,
        "frames_gb": 4.98,
    }
    result = {
        "what": "The seed's read",
        "machine": TWO_CORE_MACHINE,
        "rounds": 5,
        "first_reads": {"v.mp4": dict(row, wall_s=17.4, system_cpu_s=15.0)},
        "videos": {"v.mp4": {AFTER_SERVED: row | {"wall_runs_s": [9.5, 17.4]}}},
    }
    table = render_markdown(result)
    assert "5 rounds" in table
    assert "| v.mp4 | after a served video | 4.98 | 9.50 | 2.00 | 7.60 | 1187 | 17.40 |" in table
    assert "| v.mp4 | first read in the process | 4.98 | 17.40 | 2.00 | 15.00 | 1187 |  |" in table
