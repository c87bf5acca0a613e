"""Following a face from one frame to another (fakescope/pipeline/face_tracking.py), on a real
face (scikit-image's astronaut) over a textured background."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fakescope.pipeline.face_tracking import TEMPLATE_SIDE, follow_faces
from fakescope.pipeline.mtcnn import MtcnnParams

SIDE = 120


@pytest.fixture(scope="module")
def pictures() -> tuple[np.ndarray, np.ndarray]:
    skdata = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the face")
    face = cv2.resize(skdata.astronaut(), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    background = cv2.resize(skdata.coffee(), (640, 360), interpolation=cv2.INTER_AREA)
    return face, background


def _frames(pictures, corners: list[tuple[int, int]]) -> np.ndarray:
    face, background = pictures
    frames = np.stack([background] * len(corners))
    for frame, (x, y) in zip(frames, corners, strict=True):
        frame[y : y + SIDE, x : x + SIDE] = face
    return frames


def test_follow_faces_moves_box_with_face_when_face_crosses_frame(pictures):
    frames = _frames(pictures, [(40, 30), (470, 200), (250, 120)])
    box = np.array([[40, 30, 40 + SIDE, 30 + SIDE]], np.float32)
    for target, (x, y) in [(1, (470, 200)), (2, (250, 120))]:
        moved = follow_faces(frames, np.array([0]), box, np.array([target]))
        # within one step of the match: the face's side over TEMPLATE_SIDE
        np.testing.assert_allclose(moved[0], [x, y, x + SIDE, y + SIDE], atol=SIDE / TEMPLATE_SIDE)


@pytest.mark.parametrize("template_side", [8, 24])
def test_follow_faces_moves_box_within_one_step_when_matched_at_another_side(
    pictures, template_side
):
    frames = _frames(pictures, [(40, 30), (470, 200)])
    box = np.array([[40, 30, 40 + SIDE, 30 + SIDE]], np.float32)
    moved = follow_faces(frames, np.array([0]), box, np.array([1]), template_side=template_side)
    np.testing.assert_allclose(moved[0], [470, 200, 590, 320], atol=SIDE / template_side)


def test_mtcnn_params_refuses_follow_template_side_when_below_one():
    with pytest.raises(ValueError, match="follow_template_side must be >= 1"):
        MtcnnParams(follow_template_side=0)


def test_follow_faces_follows_each_face_from_its_own_frame_when_given_several(pictures):
    frames = _frames(pictures, [(40, 30), (470, 200)])
    boxes = np.array([[40, 30, 160, 150], [470, 200, 590, 320]], np.float32)
    moved = follow_faces(frames, np.array([0, 1]), boxes, np.array([1, 0]))
    np.testing.assert_allclose(moved, boxes[::-1], atol=SIDE / TEMPLATE_SIDE)


def test_follow_faces_keeps_box_when_box_lies_outside_frame(pictures):
    frames = _frames(pictures, [(40, 30), (470, 200)])
    outside = np.array([[700, 400, 760, 460]], np.float32)
    moved = follow_faces(frames, np.array([0]), outside, np.array([1]))
    np.testing.assert_array_equal(moved, outside)
