"""The face-size analysis: crop sizes read, faces below a minimum, P-Net pixels (face_sizes.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakescope.benchmarks.face_sizes import crop_sides, main, measure, pnet_pixels, render_markdown


def _metadata(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "metadata.csv"
    path.write_text("videoname,label,original,original_width,original_height\n" + "\n".join(rows))
    return path


def test_crop_sides_takes_the_long_side_when_crops_are_not_square(tmp_path):
    path = _metadata(tmp_path, ["a.mp4,REAL,,74,75", "b.mp4,FAKE,a.mp4,155,150"])
    assert crop_sides(path).tolist() == [75.0, 155.0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["a.mp4,REAL,,74,x"], r"metadata.csv:2: the crop size is not an integer"),
        (["a.mp4,REAL,,0,0"], r"metadata.csv:2: crop size 0 is not positive"),
        ([], r"holds no face"),
    ],
)
def test_crop_sides_refuses_when_a_size_is_unusable(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        crop_sides(_metadata(tmp_path, rows))


def test_crop_sides_refuses_when_the_size_columns_are_missing(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text("videoname,label,original\na.mp4,REAL,\n")
    with pytest.raises(ValueError, match="no column original_height, original_width"):
        crop_sides(path)


def test_pnet_pixels_shrinks_when_the_minimum_face_grows():
    served = pnet_pixels(360, 640, 40, 0.709)
    # the first level of a 40 px minimum is 12/40 of the frame: 108 x 192 pixels
    assert served > 108 * 192
    assert pnet_pixels(360, 640, 80, 0.709) < 0.3 * served


def test_measure_counts_faces_below_each_minimum_when_boxes_are_scaled_to_detection():
    # a crop of 120 px with margin 0 is a 120 px box; at 640 of 1920 it is 40 px
    sides = np.array([60.0, 120.0, 150.0, 300.0])
    result = measure(
        sides,
        face_margin=0.0,
        frame_long_side=1920,
        detection_max_side=640,
        detection_short_side=360,
        factor=0.709,
        served_min_face=40,
    )
    # at detection scale the faces are 20, 40, 50 and 100 px
    below = {row["min_face_px"]: row["faces_below"] for row in result["candidates"]}
    assert below[40] == 0.25  # 20; a 40 px face is not below a 40 px minimum
    assert below[48] == 0.5  # 20, 40
    assert below[80] == 0.75  # 20, 40, 50
    served = next(r for r in result["candidates"] if r["min_face_px"] == 40)
    assert served["pnet_pixels_vs_served"] == 1.0


def test_face_sizes_table_marks_the_served_minimum_when_rendered():
    result = {
        "faces": 4,
        "box_px_at_detection_percentiles": {"1": 20.0, "50": 45.0},
        "candidates": [
            {"min_face_px": 40, "faces_below": 0.25, "pnet_pixels_vs_served": 1.0},
            {"min_face_px": 64, "faces_below": 0.5, "pnet_pixels_vs_served": 0.4},
        ],
        "method": {
            "face_margin": -0.08,
            "frame_long_side": 1920,
            "detection_max_side": 640,
            "detection_short_side": 360,
            "factor": 0.709,
            "served_min_face": 40,
        },
    }
    table = render_markdown(result)
    assert "| 40 (served) | 25.0 % | 1.00x |" in table
    assert "| 64 | 50.0 % | 0.40x |" in table
    assert "p1 20, p50 45" in table


def test_face_sizes_exits_2_when_the_metadata_is_missing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--metadata", str(tmp_path / "none.csv"), "--output", str(tmp_path / "r.json")])
    assert exited.value.code == 2
    assert "none.csv" in capsys.readouterr().err
