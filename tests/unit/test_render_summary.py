"""Re-rendering a bench result folder from its summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from fakescope.benchmarks.render_summary import main
from tests.support.bench_summaries import gpu_run_summary


def _write_summary(folder: Path) -> None:
    summary = gpu_run_summary(targets=[])  # as a run from before the GPU row wrote it
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def test_render_summary_rewrites_targets_and_page_when_a_folder_holds_a_bench_summary(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run"
    _write_summary(folder)

    assert main([str(folder)]) == 0

    summary = json.loads((folder / "summary.json").read_text())
    assert summary["targets"][-1]["measured"] == "1 × NVIDIA H200: grpc 84 videos/min (8 users)"
    page = (folder / "summary.md").read_text()
    assert page.startswith("# Bench summary (load, 16 frames per video)")
    assert "| GPU capacity |" in page


def test_render_summary_exits_2_when_a_folder_holds_no_bench_summary(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "summary.json").write_text('{"runs": []}\n')
    assert main([str(tmp_path / "other")]) == 2
    assert main([str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "other" / "summary.md").exists()
