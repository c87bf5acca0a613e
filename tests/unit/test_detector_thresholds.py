"""The P-Net threshold check: faces pasted, found, and the verdict (detector_thresholds.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fakescope.benchmarks.detector_thresholds import (
    main,
    pasted_found,
    pasted_frames,
    verdicts,
    with_pnet_threshold,
)
from fakescope.pipeline.mtcnn import FaceDetections, MtcnnParams


def _faces(count: int, side: int = 20) -> np.ndarray:
    # each face a distinct grey level, so where it landed can be read back
    return np.stack([np.full((side, side, 3), 10 + k, np.uint8) for k in range(count)])


def _detections(frame_index: list[int], boxes: list[list[float]]) -> FaceDetections:
    n = len(boxes)
    return FaceDetections(
        frame_index=np.asarray(frame_index, np.int32),
        boxes=np.asarray(boxes, np.float32).reshape(n, 4),
        scores=np.ones(n, np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32),
    )


def test_pasted_frames_puts_each_face_where_its_place_says_when_several_share_a_frame():
    background = np.zeros((60, 200, 3), np.uint8)
    frames, places = pasted_frames(_faces(5), 16, background, per_frame=2, seed=0)
    assert frames.shape == (3, 60, 200, 3)  # 5 faces, 2 a frame
    for k, (frame, x, y) in enumerate(places):
        assert (frames[frame, y : y + 16, x : x + 16] == 10 + k).all()
    # the last frame holds one face; the rest of it is the background, untouched
    assert (frames[2] != 0).sum() == 16 * 16 * 3
    assert (background == 0).all()


def test_pasted_frames_refuses_when_the_faces_do_not_fit_side_by_side():
    with pytest.raises(ValueError, match="do not fit"):
        pasted_frames(_faces(2), 60, np.zeros((100, 200, 3), np.uint8), per_frame=4, seed=0)


def test_pasted_found_counts_a_face_only_when_a_box_centre_of_its_frame_lies_inside_it():
    places = np.array([[0, 10, 10], [0, 100, 10], [1, 10, 10]], np.int64)
    found = _detections(
        [0, 0, 0],
        [
            [5, 5, 35, 35],  # centre (20, 20): inside face 0 of frame 0
            [120, 40, 160, 80],  # centre (140, 60): beside face 1
            [0, 0, 4, 4],  # centre (2, 2): nowhere
        ],
    )
    assert pasted_found(found, places, side=20).tolist() == [True, False, False]


def test_with_pnet_threshold_keeps_the_other_stages_when_pnet_changes():
    params = MtcnnParams(thresholds=(0.6, 0.7, 0.7))
    assert with_pnet_threshold(params, 0.8).thresholds == (0.8, 0.7, 0.7)


def _result(lost_pasted: int, video_found: int) -> dict:
    videos = [
        {"pnet_threshold": 0.6, "served_faces": 4, "found": 4, "detector_cpu_s": 2.0},
        {"pnet_threshold": 0.8, "served_faces": 4, "found": video_found, "detector_cpu_s": 1.5},
    ]
    pasted = [
        {"pnet_threshold": 0.6, "faces": 10, "lost_vs_served": 0},
        {"pnet_threshold": 0.8, "faces": 10, "lost_vs_served": lost_pasted},
    ]
    method = {"served_pnet_threshold": 0.6, "pnet_thresholds": [0.6, 0.8]}
    return {"videos": videos, "pasted": pasted, "method": method}


@pytest.mark.parametrize(
    ("lost_pasted", "video_found", "taken"),
    [(0, 4, True), (1, 4, False), (0, 3, False)],
)
def test_verdicts_take_a_threshold_only_when_it_loses_no_face(lost_pasted, video_found, taken):
    served, candidate = verdicts(_result(lost_pasted, video_found))
    assert served["taken"] and served["served"]
    assert candidate["taken"] is taken
    assert candidate["video_cpu_vs_served"] == pytest.approx(0.75)
    assert candidate["pasted_faces_lost"] == lost_pasted


def test_main_exits_2_when_the_face_crop_set_is_missing(tmp_path):
    output = tmp_path / "out.json"
    assert main(["--data", str(tmp_path / "absent"), "--output", str(output)]) == 2
    assert not output.exists()
