"""The placement benchmark's checks and table (benchmarks/detector_nets.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fakescope.benchmarks.detector_nets import check_same_faces, render_markdown
from fakescope.client.triton import RawResult
from fakescope.serving.detector_nets import BLS, IN_PROCESS


def _result(boxes: list[list[float]]) -> RawResult:
    face_boxes = np.asarray(boxes, np.float32).reshape(-1, 6)
    return RawResult(
        fake_probability=0.5,
        frame_scores=np.zeros(1, np.float32),
        face_boxes=face_boxes,
        face_scores=np.full(len(face_boxes), 0.5, np.float32),
        status="ok",
    )


def test_check_same_faces_accepts_when_boxes_differ_by_rounding_only():
    check_same_faces(
        "v.mp4", _result([[0, 10, 10, 50, 50, 0.99]]), _result([[0, 10, 10, 50.001, 50, 0.99]])
    )


@pytest.mark.parametrize(
    "other",
    [[], [[0, 10, 10, 50, 50, 0.99], [1, 10, 10, 50, 50, 0.99]], [[0, 12, 10, 50, 50, 0.99]]],
)
def test_check_same_faces_refuses_when_placements_find_different_faces(other):
    with pytest.raises(RuntimeError, match=r"v\.mp4: the two servers found different faces"):
        check_same_faces("v.mp4", _result([[0, 10, 10, 50, 50, 0.99]]), _result(other))


def test_detector_nets_table_gives_both_placements_and_ratios_when_rendered():
    row = {
        "video": "v.mp4",
        "size": [1280, 720],
        "faces": 16,
        IN_PROCESS: {"wall_s": 0.15, "server_cpu_s": 0.2},
        BLS: {"wall_s": 0.2, "server_cpu_s": 0.25},
        "wall_vs_bls": 0.75,
        "cpu_vs_bls": 0.8,
    }
    method = {
        "runs": 7,
        "num_frames": 16,
        "max_side": 1280,
        "cores": 2,
        "loadavg_before": [0.5, 0.5, 0.5],
        "code_version": "abc",
    }
    table = render_markdown({"videos": [row], "method": method})
    assert "| v.mp4 | 1280x720 | 16 | 0.150 / 0.200 | 0.200 / 0.250 | 0.75x, 0.80x |" in table
