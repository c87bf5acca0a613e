import numpy as np
import pytest

from fakescope.pipeline.crops import crop_faces


def _frames() -> np.ndarray:
    frames = np.zeros((2, 100, 200, 3), dtype=np.uint8)
    frames[1, 40:60, 90:110] = 255  # a white square in frame 1
    return frames


def test_crop_faces_returns_square_crops_when_box_is_inside_frame():
    boxes = np.array([[1, 90, 40, 110, 60, 0.99]], dtype=np.float32)
    crops = crop_faces(_frames(), boxes, size=32, margin=0.0)
    assert crops.shape == (1, 32, 32, 3)
    assert crops.mean() > 250  # the crop is the white square


def test_crop_faces_pads_with_zeros_when_box_leaves_the_frame():
    frames = np.full((1, 50, 50, 3), 200, dtype=np.uint8)
    boxes = np.array([[0, -25, -25, 25, 25, 0.9]], dtype=np.float32)
    crop = crop_faces(frames, boxes, size=10, margin=0.0)[0]
    assert crop[:4, :4].max() == 0 and crop[-3:, -3:].min() == 200


def test_crop_faces_returns_empty_batch_when_no_face():
    crops = crop_faces(_frames(), np.zeros((0, 6), dtype=np.float32), size=16, margin=0.2)
    assert crops.shape == (0, 16, 16, 3)


def test_crop_faces_rejects_frame_index_when_out_of_range():
    with pytest.raises(ValueError, match="frame 5"):
        crop_faces(_frames(), np.array([[5, 0, 0, 10, 10, 1]], dtype=np.float32), size=8, margin=0)
