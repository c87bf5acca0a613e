"""The table of Locust levels across bench runs, summarised again from their records."""

from __future__ import annotations

import json
from pathlib import Path

from fakescope.benchmarks.level_table import level_rows, main


def _write_run(folder: Path) -> Path:
    folder.mkdir()
    summary = {
        "mode": "overload",
        "run_time_seconds_per_level": 30,
        "levels": {
            "grpc": {
                "16": {
                    "server_seconds_per_video": {
                        "videos": 2,
                        "entry_queue_seconds": 1.5,
                        "after_queue_seconds": 0.6,
                    },
                    "host_probe": {"median_ms": 99.0},
                }
            }
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    records = [
        {"video": "a.mp4", "status": "ok", "ratio": 0.4, "processing_seconds": 2.4},
        {"video": "a.mp4", "status": "ok", "ratio": 0.6, "processing_seconds": 3.6},
        {
            "video": "a.mp4",
            "status": "rejected",
            "infer_seconds": 1.9,
            "error": "in ensemble 'deepfake_detector', Request timeout expired",
        },
    ]
    (folder / "locust_grpc_16u.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_level_rows_count_late_answers_from_the_records_when_the_summary_has_none(tmp_path: Path):
    (row,) = level_rows(_write_run(tmp_path / "deadlines-ov-1"))
    assert (row["run"], row["protocol"], row["users"]) == ("deadlines-ov-1", "grpc", 16)
    assert (row["accepted"], row["late"], row["rejected"]) == (2, 1, 1)
    assert row["rejected_by_reason"]["queue_timeout"] == 1
    assert (row["entry_queue_seconds"], row["after_queue_seconds"]) == (1.5, 0.6)
    assert row["videos_per_minute"] == 4.0  # 2 accepted in 30 s
    assert (row["late_per_video"], row["rejected_per_video"]) == ({"a.mp4": 1}, {"a.mp4": 1})


def test_level_table_main_writes_both_files_when_every_run_is_complete(tmp_path: Path):
    run = _write_run(tmp_path / "levels-ov-1")
    assert main([str(run), "--output", str(tmp_path / "out")]) == 0
    assert len(json.loads((tmp_path / "out" / "levels.json").read_text())["levels"]) == 1
    assert (
        "| levels-ov-1 | overload | grpc | 16 | 2 | 1 | 1 (0 / 1 / 0) |"
        in (tmp_path / "out" / "levels.md").read_text()
    )
    assert "| levels-ov-1 | grpc | 16 | 1 / 1 |" in (tmp_path / "out" / "levels.md").read_text()


def test_level_table_main_exits_2_when_a_run_has_no_records(tmp_path: Path):
    run = _write_run(tmp_path / "broken")
    (run / "locust_grpc_16u.jsonl").unlink()
    assert main([str(run), "--output", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
