"""The two-settings decoding benchmark (benchmarks/decode_settings.py) and its opens table."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope.benchmarks.decode_opens import MODES, render_markdown
from fakescope.benchmarks.decode_settings import compare
from tests.support.media import make_face_video


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("decode-settings")
    return make_face_video(folder / "one_pass.mp4", seconds=6, fps=10, codec="avc1", gop=250)


def test_compare_times_both_settings_with_the_same_frames_when_only_opening_differs(
    video: Path,
) -> None:
    (row,) = compare([video], 2, MODES)
    assert row["video"] == video.name
    assert row["frames"] == 60 and row["path"] == "one pass"
    for mode in MODES:
        assert row[mode]["wall_s"] > 0 and row[mode]["cpu_s"] > 0
    assert row["wall_vs_two_opens"] == row["one_open"]["wall_s"] / row["two_opens"]["wall_s"]
    assert row["cpu_vs_two_opens"] == row["one_open"]["cpu_s"] / row["two_opens"]["cpu_s"]


def test_decode_opens_table_shows_two_opens_before_one_when_rendered() -> None:
    row = {
        "video": "v.mp4",
        "size": [1280, 720],
        "frames": 300,
        "keyframes": 5,
        "idr_keyframes": 5,
        "path": "one pass",
        "one_open": {"wall_s": 0.139, "cpu_s": 0.218},
        "two_opens": {"wall_s": 0.146, "cpu_s": 0.223},
        "cpu_vs_two_opens": 0.218 / 0.223,
        "wall_vs_two_opens": 0.139 / 0.146,
    }
    method = {"runs": 15, "num_frames": 16, "max_side": 1280, "cores": 2}
    method["loadavg_before"] = [0.5, 0.5, 0.5]
    table = render_markdown({"videos": [row], "method": method})
    assert "| two opens wall / CPU | one open wall / CPU | CPU, wall vs two opens |" in table
    assert "| v.mp4 | 1280x720 | 300 | 5 (5) | one pass | 0.146 / 0.223 | 0.139 / 0.218 " in table
    assert "| 0.98x, 0.95x |" in table
