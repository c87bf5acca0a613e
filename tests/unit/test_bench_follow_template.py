"""The template side of face following, swept in-process (benchmarks/follow_template.py)."""

from __future__ import annotations

from fakescope.benchmarks.follow_template import measure, render_markdown
from fakescope.benchmarks.machine import machine_facts
from fakescope.paths import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "samples" / "astronaut_face_720p.mp4"


def test_follow_template_measures_every_side_against_every_frame_when_run_on_a_sample():
    result = measure([SAMPLE], (12, 16), runs=1)
    rows = result["videos"][SAMPLE.name]
    assert [r["side"] for r in rows] == [12, 16]
    for row in rows:
        # the sample's face is on screen in every frame: every side finds it there
        assert row["reference_faces"] == 16
        assert row["found"] == 16 and row["extra_faces"] == 0
        assert row["mean_iou"] > 0.8 and row["detector_cpu_s"] > 0
    assert [t["found"] for t in result["totals"]] == [16, 16]
    result["method"] = {
        "runs": 1,
        "num_frames": 16,
        "max_side": 1280,
        "same_face_iou": 0.5,
        "served_side": 16,
        "code_version": "abc",
    }
    result["machine"] = machine_facts()
    table = render_markdown(result)
    assert "| 12 | 16 / 16 | 0 |" in table
    assert "| 16 | 16 / 16 | 0 |" in table and "1.00x" in table
