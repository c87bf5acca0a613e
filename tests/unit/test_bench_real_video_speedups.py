"""The fair comparison on real videos (benchmarks/real_video_speedups.py): its options and table."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope.benchmarks.real_video_speedups import main, render_markdown
from fakescope.benchmarks.run import compare_with_inprocess
from tests.support.bench_summaries import TWO_CORE_MACHINE


def _path(seconds: float, runs: int) -> dict[str, object]:
    return {
        "what": "a path",
        "timed_runs": runs,
        "seconds": {"real.mp4": seconds},
        "runs": {"real.mp4": [seconds] * runs},
        "ratio": {"p50": seconds / 10.0},
        "process_usage": {
            "real.mp4": {"user_cpu_s": seconds, "system_cpu_s": 0.02, "page_faults": 120.0}
        },
    }


def test_real_video_speedups_table_gives_each_path_and_both_speedups_when_rendered() -> None:
    result = {
        "what": "The served path and the rest on the DFDC samples",
        "machine": TWO_CORE_MACHINE,
        "code_version": "abc123",
        "frames": 16,
        "videos": ["real.mp4"],
        "inprocess": {
            "durations": {"real.mp4": 10.0},
            "served": _path(0.5, 15),
            "onnxruntime_inprocess": _path(0.45, 15),
            "client_sample": _path(0.25, 15),
            "like_for_like_baseline": _path(1.0, 5),
            "seed_pipeline": _path(12.0, 5),
        },
    }
    compare_with_inprocess(result)
    table = render_markdown(result)
    assert "| real.mp4 | 10.0 | 0.50 | 0.45 | 0.25 | 1.00 | 12.00 |" in table
    assert "Speed-up over the seed pipeline: 24.0× median over videos" in table
    assert "Speed-up over the like-for-like baseline: 2.0× median over videos" in table
    assert "(the baseline's time over the client's decode and sample alone): 4.0×" in table
    assert "+11.1 % (median per video)" in table
    assert "| seed_pipeline | real.mp4 | 12.00 | 12.00 | 0.02 | 0.1 | n/a |" in table


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--output", "speedups.md"], "--output must name the .json result file"),
        (["--runs", "3", "--baseline-runs", "5"], "need 1 <= --baseline-runs <= --runs"),
        (["--baseline-runs", "0"], "need 1 <= --baseline-runs <= --runs"),
    ],
)
def test_real_video_speedups_exits_with_a_message_when_options_are_bad(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_real_video_speedups_exits_with_a_message_when_the_folder_has_no_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("no video here")
    for folder in (tmp_path, tmp_path / "missing"):
        with pytest.raises(SystemExit) as exited:
            main(["--dfdc-sample", str(folder)])
        assert exited.value.code == 2
        assert f"no .mp4 video in {folder}" in capsys.readouterr().err
