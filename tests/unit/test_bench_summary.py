"""How `fakescope bench` turns timed runs into speed-ups (the figures its summary reports)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope.benchmarks.run import speedup_summary, time_runs


def test_speedup_reports_median_and_range_over_videos_when_runs_differ():
    base = {"a.mp4": [10.0, 12.0, 11.0], "b.mp4": [30.0, 30.0, 90.0], "c.mp4": [4.0, 4.0, 4.0]}
    ours = {"a.mp4": [1.0, 1.0, 3.0], "b.mp4": [2.0, 3.0, 3.0], "c.mp4": [2.0, 2.0, 2.0]}
    result = speedup_summary(base, ours)
    assert result["per_video"] == pytest.approx({"a.mp4": 11.0, "b.mp4": 10.0, "c.mp4": 2.0})
    assert result["median"] == pytest.approx(10.0)
    assert (result["min"], result["max"]) == pytest.approx((2.0, 11.0))


def test_timed_warms_up_once_then_times_each_video_when_paths_are_measured():
    calls: list[str] = []

    def run(video):
        calls.append(video.name)
        return float(len(calls)), 0.5

    times = time_runs(run, [Path("x.mp4"), Path("y.mp4")], runs=2)
    assert calls == ["x.mp4", "x.mp4", "x.mp4", "y.mp4", "y.mp4"]
    assert times == {"x.mp4": [2.0, 3.0], "y.mp4": [4.0, 5.0]}
