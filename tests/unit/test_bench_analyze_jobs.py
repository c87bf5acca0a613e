"""The ``fakescope analyze --jobs`` benchmark's table (benchmarks/analyze_jobs.py)."""

from __future__ import annotations

from fakescope.benchmarks.analyze_jobs import render_markdown
from tests.support.bench_summaries import TWO_CORE_MACHINE


def _cell(wall_s: float, per_min: float, median: float | None, refused: int) -> dict[str, object]:
    return {
        "wall_s": wall_s,
        "videos_per_min": per_min,
        "ratio_median": median,
        "ratio_worst": None if median is None else median * 2,
        "late": 0 if median is None else int(median > 0.25),
        "refused": refused,
        "sent": 14,
        "wall_runs_s": [wall_s],
    }


def test_analyze_jobs_table_gives_each_job_count_against_one_job_when_rendered() -> None:
    result = {
        "what": "fakescope analyze",
        "machine": TWO_CORE_MACHINE,
        "rounds": 7,
        "sets": {
            "DFDC samples": {
                "videos": ["a.mp4", "b.mp4"],
                "jobs": {"1": _cell(6.0, 40.0, 0.05, 0), "2": _cell(4.0, 60.0, 0.07, 0)},
            },
            "1 s clips": {
                "videos": ["clip.mp4", "clip.mp4"],
                "jobs": {"1": _cell(3.0, 80.0, 0.3, 1), "2": _cell(2.0, 120.0, None, 14)},
            },
        },
    }
    table = render_markdown(result)
    assert "7 rounds, the job counts interleaved; 2 cores (Some CPU, 2600 MHz)" in table
    assert (
        "| DFDC samples (2) | 1 | 6.00 | 40 | 1.00x | 0.050 / 0.100 | 0 of 14 | 0 of 14 |" in table
    )
    assert (
        "| DFDC samples (2) | 2 | 4.00 | 60 | 1.50x | 0.070 / 0.140 | 0 of 14 | 0 of 14 |" in table
    )
    assert "| 1 s clips (2) | 2 | 2.00 | 120 | 1.50x | n/a / n/a | 0 of 14 | 14 of 14 |" in table
    assert "| 1 s clips (2) | 1 | 3.00 | 80 | 1.00x | 0.300 / 0.600 | 1 of 14 | 1 of 14 |" in table
    assert "- DFDC samples: a.mp4, b.mp4" in table
    assert "- 1 s clips: clip.mp4 ×2" in table
