"""Occlusion-map geometry and the heatmap overlay, without a server."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fakescope.client.occlusion import at_input_size, blurred, hide_regions, patch_box
from fakescope.web.heatmaps import overlay_png


def test_patch_box_centres_on_cell_and_clips_when_at_edge():
    assert patch_box(160, 8, 40, 3, 4) == (70, 50, 110, 90)  # centre (90, 70)
    assert patch_box(160, 8, 40, 0, 0) == (0, 0, 30, 30)
    assert patch_box(160, 8, 40, 7, 7) == (130, 130, 160, 160)
    with pytest.raises(ValueError, match="outside"):
        patch_box(160, 8, 40, 8, 0)


def test_patch_boxes_cover_whole_crop_when_grid_complete():
    covered = np.zeros((160, 160), bool)
    for row in range(8):
        for col in range(8):
            x0, y0, x1, y1 = patch_box(160, 8, 40, row, col)
            covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_hide_regions_changes_only_the_boxes_when_blurred():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)
    blur = blurred(crop, 40)
    hidden = hide_regions(crop, [(10, 20, 50, 60)], blur)
    changed = np.any(hidden != crop, axis=-1)
    assert changed[20:60, 10:50].mean() > 0.9
    changed[20:60, 10:50] = False
    assert not changed.any()
    assert hidden[20:60, 10:50].std() < crop.std() / 3  # the detail is gone


def test_at_input_size_resizes_when_crop_of_another_version():
    crop = np.full((224, 224, 3), 7, np.uint8)
    resized, former = at_input_size(crop, 160)
    assert resized.shape == (160, 160, 3) and former == 224
    same, none = at_input_size(resized, 160)
    assert same is resized or np.shares_memory(same, resized)
    assert none is None


def test_overlay_png_marks_red_where_hiding_lowered_score_and_leaves_rest_when_zero():
    crop = np.full((160, 160, 3), 128, np.uint8)
    drops = np.zeros((8, 8), np.float32)
    drops[0, 0] = 0.3  # hiding the top-left lowered the fake score
    drops[7, 7] = -0.3  # hiding the bottom-right raised it
    png = overlay_png(crop, drops)
    image = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    assert image.shape == (160, 160, 3)
    r, _, b = (int(v) for v in image[8, 8])
    assert r > 128 + 40 and b < 128 - 20  # red
    r, _, b = (int(v) for v in image[152, 152])
    assert b > 128 + 40 and r < 128 - 20  # blue
    assert np.abs(image[80, 80].astype(int) - 128).max() <= 2  # no drop: the face unchanged


def test_overlay_png_stays_pale_when_drops_are_tiny():
    crop = np.full((160, 160, 3), 128, np.uint8)
    drops = np.full((8, 8), 0.001, np.float32)
    image = cv2.imdecode(np.frombuffer(overlay_png(crop, drops), np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(image.astype(int) - 128).max() < 10
