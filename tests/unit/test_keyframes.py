"""Detection on keyframes (fakescope/pipeline/keyframes.py and the keyframe path of
``detect_faces``), on the served MTCNN models and a real face (scikit-image's astronaut)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from fakescope.paths import MODEL_REPOSITORY
from fakescope.pipeline.keyframes import (
    SEARCH_MARGIN,
    SEARCH_SIZE_SPAN,
    box_iou,
    keyframe_indices,
    propose_boxes,
    search_windows,
)
from fakescope.pipeline.mtcnn import MtcnnParams, OnnxRuntimeMtcnnNets, detect_faces
from fakescope.serving.model_config import detector_params

FRAMES = 9
FACE_SIDE = 200


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the face")
    return cv2.resize(skdata.astronaut(), (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)


class CountingNets:
    """The served ONNX nets, counting the frames that go through P-Net's first pyramid level."""

    def __init__(self) -> None:
        self.nets = OnnxRuntimeMtcnnNets(MODEL_REPOSITORY)
        self.pnet_shapes: list[tuple[int, ...]] = []
        self.onet_batches: list[int] = []

    def pnet(self, batch):
        self.pnet_shapes.append(batch.shape)
        return self.nets.pnet(batch)

    def rnet(self, batch):
        return self.nets.rnet(batch)

    def onet(self, batch):
        self.onet_batches.append(len(batch))
        return self.nets.onet(batch)

    def frames_through_pnet(self) -> int:
        """Frames P-Net saw at the full pyramid's first (largest) level: full detections."""
        largest = max(s[2] * s[3] for s in self.pnet_shapes)
        return sum(s[0] for s in self.pnet_shapes if s[2] * s[3] == largest)

    def batches_below_first_level(self) -> list[int]:
        """Frame counts of the P-Net batches that started below that level: local searches."""
        largest = max(s[2] * s[3] for s in self.pnet_shapes)
        firsts, previous = [], None
        for shape in self.pnet_shapes:
            # a batch starts a new pyramid when its level is larger than the one before it
            if previous is None or shape[2] * shape[3] > previous[2] * previous[3]:
                firsts.append(shape)
            previous = shape
        return [s[0] for s in firsts if s[2] * s[3] < largest]


def video(face: np.ndarray, positions: list[tuple[int, int]]) -> np.ndarray:
    frames = np.full((len(positions), 360, 640, 3), 90, np.uint8)
    for frame, (x, y) in zip(frames, positions, strict=True):
        frame[y : y + FACE_SIDE, x : x + FACE_SIDE] = face
    return frames


def served(stride: int) -> MtcnnParams:
    return dataclasses.replace(detector_params(MODEL_REPOSITORY), keyframe_stride=stride)


def test_keyframe_indices_include_last_frame_when_stride_does_not_divide():
    assert keyframe_indices(10, 4) == [0, 4, 8, 9]
    assert keyframe_indices(9, 4) == [0, 4, 8]
    assert keyframe_indices(1, 4) == [0]
    assert keyframe_indices(0, 4) == []


def test_keyframe_indices_raise_value_error_when_stride_is_zero():
    with pytest.raises(ValueError, match="stride"):
        keyframe_indices(8, 0)


def test_propose_boxes_interpolates_face_when_seen_in_both_keyframes():
    boxes = {0: np.array([[0, 0, 10, 10]], np.float32), 4: np.array([[4, 0, 14, 10]], np.float32)}
    proposed = propose_boxes([0, 4], boxes)
    assert proposed.frame_index.tolist() == [1, 2, 3]
    np.testing.assert_allclose(proposed.boxes[:, 0], [1, 2, 3])
    np.testing.assert_allclose(proposed.boxes[:, 2], [11, 12, 13])
    # followed, when the guess fails, from the nearer keyframe (the earlier one at a tie)
    assert proposed.source_frame.tolist() == [0, 0, 4]
    np.testing.assert_allclose(proposed.source_boxes[:, 0], [0, 0, 4])
    assert proposed.least_faces.tolist() == [1, 1, 1]
    assert proposed.unmatched.tolist() == [False, False, False]


def test_propose_boxes_carries_face_when_seen_in_one_keyframe_only():
    boxes = {
        0: np.array([[0, 0, 10, 10]], np.float32),
        3: np.array([[100, 100, 110, 110]], np.float32),
    }
    proposed = propose_boxes([0, 3], boxes)
    # IoU 0: each box carried from where it was seen, and followed from there
    assert proposed.frame_index.tolist() == [1, 1, 2, 2]
    assert {tuple(b) for b in proposed.boxes.tolist()} == {(0, 0, 10, 10), (100, 100, 110, 110)}
    assert proposed.source_frame.tolist() == [0, 3, 0, 3]
    np.testing.assert_array_equal(proposed.source_boxes, proposed.boxes)
    # one face that moved far, or two faces: at least one face in each frame between
    assert proposed.least_faces.tolist() == [1, 1, 1, 1]
    # a lone face in each keyframe: most likely one that moved far, followed before verified
    assert proposed.unmatched.tolist() == [True, True, True, True]


def test_propose_boxes_ask_for_as_many_faces_as_fuller_keyframe_when_face_count_changes():
    boxes = {
        0: np.array([[0, 0, 10, 10], [50, 0, 60, 10]], np.float32),
        2: np.array([[1, 0, 11, 10]], np.float32),
        4: np.zeros((0, 4), np.float32),
    }
    proposed = propose_boxes([0, 2, 4], boxes)
    assert proposed.frame_index.tolist() == [1, 1, 3]
    assert proposed.least_faces.tolist() == [2, 2, 1]
    # a face that came or went (lone in one keyframe only) is carried and verified first
    assert proposed.unmatched.tolist() == [False, False, False]


def test_box_iou_is_one_when_boxes_are_equal_and_zero_when_apart():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 0.0]])


def test_detect_faces_detects_keyframes_only_and_keeps_every_face_when_face_moves_slowly(face):
    frames = video(face, [(200 + 4 * i, 80 + 2 * i) for i in range(FRAMES)])
    every = detect_faces(frames, OnnxRuntimeMtcnnNets(MODEL_REPOSITORY), served(1))
    nets = CountingNets()
    tracked = detect_faces(frames, nets, served(4))
    assert nets.frames_through_pnet() == len(keyframe_indices(FRAMES, 4))
    # the astronaut's face, the largest box (first) of every frame, in both
    assert sorted(set(every.frame_index.tolist())) == list(range(FRAMES))
    assert sorted(set(tracked.frame_index.tolist())) == list(range(FRAMES))
    keys = keyframe_indices(FRAMES, 4)
    for i in range(FRAMES):
        ours, reference = tracked.for_frame(i), every.for_frame(i)
        assert box_iou(ours.boxes[:1], reference.boxes[:1])[0, 0] > 0.8, i
        # a keyframe went through the same cascade; between them O-Net scored the carried box
        # (here within 0.005 of the cascade's own score)
        tolerance = 1e-5 if i in keys else 0.02
        assert ours.scores[0] == pytest.approx(reference.scores[0], abs=tolerance), i


def _frames_with(pictures: list[np.ndarray], x: int = 300, y: int = 40) -> np.ndarray:
    frames = np.full((len(pictures), 360, 640, 3), 90, np.uint8)
    for frame, picture in zip(frames, pictures, strict=True):
        frame[y : y + picture.shape[0], x : x + picture.shape[1]] = picture
    return frames


@pytest.mark.parametrize(
    "left_x",
    # the astronaut's face is ~35 px wide in the 200 px picture: a 50 px step loses the carried
    # box, a 400 px step takes the face across the frame
    [370, 20],
    ids=["near", "across_frame"],
)
def test_detect_faces_follows_face_without_searching_when_face_jumps_between_keyframes(
    face, left_x: int
):
    positions = [(left_x, 80) if i % 2 else (420, 80) for i in range(FRAMES)]
    nets = CountingNets()
    tracked = detect_faces(video(face, positions), nets, served(4))
    assert tracked.frame_index.tolist() == list(range(FRAMES))
    # keyframes 0, 4, 8 see the face on the right; frames 2 and 6 (right again) keep the
    # carried box; the odd frames lose it and find it again by following it from the nearer
    # keyframe: P-Net sees the keyframes only
    assert nets.frames_through_pnet() == 3
    assert nets.batches_below_first_level() == []
    centres = (tracked.boxes[:, 0] + tracked.boxes[:, 2]) / 2
    expected = np.array([x + FACE_SIDE / 2 for x, _ in positions])
    assert np.abs(centres - expected).max() < FACE_SIDE / 4


def test_detect_faces_follows_unmatched_faces_before_verifying_when_face_moves_far(face):
    # 50 px a frame: 200 px between keyframes, the face's boxes there never overlap
    positions = [(20 + 50 * i, 80) for i in range(FRAMES)]
    nets = CountingNets()
    tracked = detect_faces(video(face, positions), nets, served(4))
    assert tracked.frame_index.tolist() == list(range(FRAMES))
    # O-Net sees the keyframes' candidates, then the followed boxes: the boxes carried from
    # the keyframes, which the face left, are never verified (a third call)
    assert len(nets.onet_batches) == 2
    assert nets.onet_batches[1] == 2 * (FRAMES - 3)  # each frame's face followed from both keys
    assert nets.frames_through_pnet() == 3
    centres = (tracked.boxes[:, 0] + tracked.boxes[:, 2]) / 2
    expected = np.array([x + FACE_SIDE / 2 for x, _ in positions])
    assert np.abs(centres - expected).max() < FACE_SIDE / 4


def test_detect_faces_searches_lost_frames_when_template_side_is_too_small_to_follow(face):
    # a face shrunk to one pixel has no picture to match (a flat template matches nothing),
    # so following fails and the lost frames are searched: the parameters' side reaches following
    positions = [(20, 80) if i % 2 else (420, 80) for i in range(FRAMES)]
    nets = CountingNets()
    params = dataclasses.replace(served(4), follow_template_side=1)
    tracked = detect_faces(video(face, positions), nets, params)
    assert tracked.frame_index.tolist() == list(range(FRAMES))
    assert nets.frames_through_pnet() > 3 or nets.batches_below_first_level()


@pytest.mark.parametrize("odd_side", [280, 140], ids=["larger", "smaller"])
def test_detect_faces_searches_lost_frames_locally_when_face_changes_size_between_keyframes(
    odd_side: int,
):
    skdata = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the face")
    pictures = [
        cv2.resize(skdata.astronaut(), (side, side), interpolation=cv2.INTER_AREA)
        for side in (FACE_SIDE, odd_side)
    ]
    frames = _frames_with([pictures[i % 2] for i in range(FRAMES)])
    nets = CountingNets()
    tracked = detect_faces(frames, nets, served(4))
    assert tracked.frame_index.tolist() == list(range(FRAMES))
    # the carried box fails on the odd frames, and so does following the face at its
    # keyframe size: the four are searched again around the carried box, for faces of about
    # its size (one smaller pyramid), which finds them; none is detected in full
    assert nets.batches_below_first_level() == [4]
    assert nets.frames_through_pnet() == 3
    # each frame's box is on its own picture's face (a little left of the picture's centre),
    # and the odd frames' faces are as much larger or smaller as their pictures
    sides = np.array([FACE_SIDE, odd_side] * FRAMES)[:FRAMES]
    centres_x = (tracked.boxes[:, 0] + tracked.boxes[:, 2]) / 2
    assert (np.abs(centres_x - (300 + sides / 2)) < sides / 8).all()
    widths = tracked.boxes[:, 2] - tracked.boxes[:, 0]
    assert widths[1::2].mean() / widths[0::2].mean() == pytest.approx(
        odd_side / FACE_SIDE, rel=0.15
    )


def test_detect_faces_detects_lost_frames_in_full_when_local_search_finds_no_face(face):
    # the odd frames hold the face turned on its side, which MTCNN does not find
    frames = _frames_with(
        [cv2.rotate(face, cv2.ROTATE_90_CLOCKWISE) if i % 2 else face for i in range(FRAMES)]
    )
    nets = CountingNets()
    tracked = detect_faces(frames, nets, served(4))
    assert tracked.frame_index.tolist() == [0, 2, 4, 6, 8]
    assert nets.batches_below_first_level() == [4]
    assert nets.frames_through_pnet() == 3 + 4


def test_search_windows_share_one_size_inside_frame_when_faces_sit_near_edges():
    proposal_frames = np.array([1, 2, 2, 3], np.int64)
    proposals = np.array(
        [[0, 0, 40, 40], [300, 100, 360, 160], [320, 110, 380, 170], [600, 320, 640, 360]],
        np.float32,
    )
    windows = search_windows((640, 360), np.array([1, 2, 3]), proposal_frames, proposals, 20)
    # frame 2's boxes span 80 x 70 px, its largest side is 60: the widest window of the three
    margin = 2 * SEARCH_MARGIN * 60
    assert (windows.width, windows.height) == (int(80 + margin), int(70 + margin))
    x, y = windows.origins[:, 0], windows.origins[:, 1]
    assert (x >= 0).all() and (y >= 0).all()
    assert (x + windows.width <= 640).all() and (y + windows.height <= 360).all()
    # frame 2's window is centred on its boxes (340, 135); frames 1 and 3 are pushed inside
    assert abs(x[1] + windows.width / 2 - 340) <= 1 and abs(y[1] + windows.height / 2 - 135) <= 1
    assert (x[0], y[0]) == (0, 0) and (x[2], y[2]) == (640 - windows.width, 360 - windows.height)
    assert windows.min_face == 40 / SEARCH_SIZE_SPAN
    assert windows.max_face == 60 * SEARCH_SIZE_SPAN


def test_search_windows_never_search_below_min_face_when_proposals_are_small():
    windows = search_windows(
        (640, 360),
        np.array([0]),
        np.array([0], np.int64),
        np.array([[100, 100, 130, 130]], np.float32),
        min_face_size=40,
    )
    assert windows.min_face == 40
    assert windows.max_face == 30 * SEARCH_SIZE_SPAN


def test_detect_faces_detects_frames_in_full_when_no_keyframe_beside_them_holds_a_face(face):
    # the face is on screen only between the keyframes 0, 4 and 8 (as after a cut): no
    # keyframe has a face to carry, so every frame between them goes through the whole cascade
    frames = _frames_with([face] * FRAMES)
    frames[[*keyframe_indices(FRAMES, 4), 5, 7]] = 90
    every = detect_faces(frames, OnnxRuntimeMtcnnNets(MODEL_REPOSITORY), served(1))
    nets = CountingNets()
    tracked = detect_faces(frames, nets, served(4))
    assert every.frame_index.tolist() == [1, 2, 3, 6]
    assert tracked.frame_index.tolist() == [1, 2, 3, 6]
    assert box_iou(tracked.boxes, every.boxes).diagonal().min() > 0.99
    assert nets.frames_through_pnet() == FRAMES
