"""The frames-in-region benchmark's table and answer check (benchmarks/frames_in_region.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakescope.benchmarks.frames_in_region import (
    COPIED,
    IN_REGION,
    check_same_answers,
    render_markdown,
)
from fakescope.client.triton import RawResult
from tests.support.bench_summaries import TWO_CORE_MACHINE


def _way(wall_s: float, call_s: float, cpu_s: float) -> dict[str, object]:
    return {"wall_s": wall_s, "call_s": call_s, "client_cpu_s": cpu_s, "wall_runs_s": [wall_s]}


def _answer(score: float) -> RawResult:
    return RawResult(
        fake_probability=score,
        frame_scores=np.array([score], np.float32),
        face_boxes=np.array([[0, 10, 10, 50, 50, 0.99]], np.float32),
        face_scores=np.array([score], np.float32),
        status="ok",
    )


def test_frames_in_region_table_gives_both_ways_and_ratios_when_rendered() -> None:
    result = {
        "what": "one gRPC client",
        "machine": TWO_CORE_MACHINE,
        "rounds": 15,
        "videos": {"v.mp4": {COPIED: _way(0.4, 0.2, 0.3), IN_REGION: _way(0.3, 0.15, 0.24)}},
    }
    table = render_markdown(result)
    assert "one gRPC client; 15 rounds" in table
    row = "| v.mp4 | 0.400 / 0.200 / 0.300 | 0.300 / 0.150 / 0.240 | 0.75x, 0.75x, 0.80x |"
    assert row in table


def test_frames_in_region_check_refuses_the_run_when_the_ways_answer_differently() -> None:
    check_same_answers(Path("v.mp4"), [_answer(0.2), _answer(0.2)])
    with pytest.raises(RuntimeError, match=r"v\.mp4: the two ways gave different answers"):
        check_same_answers(Path("v.mp4"), [_answer(0.2), _answer(0.7)])
