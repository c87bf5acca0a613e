"""Hard video *content* through the real ``fakescope analyze`` path, real Triton.

No face, a crowd, faces too small to detect, a face cut by the frame's edge, a black video:
each gets a verdict (exit 0) with an explicit ``status`` — never a silent 0.5 — and the
server stays ready.

What the detector can see (``model_repository/face_detector/config.pbtxt``): faces are looked
for on frames downscaled to ``detection_max_side`` = 640 px with ``min_face_size`` = 40, so in
a 1280x720 video a face narrower than roughly 70-80 px is not found. That is reported as
``no_face`` (label ``NO_FACE``, ``fake_probability`` null), which is the documented, explicit
outcome for "nothing we can judge".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from fakescope import contract
from fakescope.client import cli
from fakescope.serving.embedded import EmbeddedTriton
from fakescope.serving.model_config import detector_params
from tests.support.analyze_cli import assert_server_ready, run_analyze
from tests.support.media import make_no_face_video, write_video
from tests.support.servers import REPOSITORY

HD = (1280, 720)
BACKGROUND = 40
#: The astronaut's head (face, hair, collar) cut from skimage's portrait: 260x260 px.
HEAD = np.ascontiguousarray(skdata.astronaut()[0:260, 120:380])


@dataclass(frozen=True)
class Placement:
    """One head pasted at ``(x, y)`` with side ``side`` (may lie partly outside the frame)."""

    x: int
    y: int
    side: int


def compose(placements: Sequence[Placement], size: tuple[int, int] = HD) -> np.ndarray:
    """An RGB frame with the heads pasted in, clipped to the frame."""
    width, height = size
    frame = np.full((height, width, 3), BACKGROUND, np.uint8)
    for p in placements:
        head = cv2.resize(HEAD, (p.side, p.side), interpolation=cv2.INTER_AREA)
        x0, y0 = max(p.x, 0), max(p.y, 0)
        x1, y1 = min(p.x + p.side, width), min(p.y + p.side, height)
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = head[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
    return frame


def content_video(path: Path, frames: Sequence[np.ndarray]) -> Path:
    return write_video(path, frames, fps=2, codec="avc1")


def grid(rows: int, cols: int, side: int, step_x: int, step_y: int) -> list[Placement]:
    return [
        Placement(10 + c * step_x, 10 + r * step_y, side) for r in range(rows) for c in range(cols)
    ]


# --- running the CLI --------------------------------------------------------------------------


def analyze_video(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], video: Path, frames: int
) -> dict[str, Any]:
    """Run ``fakescope analyze --json`` on ``video``; assert success; return the verdict."""
    run = run_analyze(triton, capsys, video, "--frames", str(frames))
    assert (run.code, run.err) == (cli.EXIT_OK, ""), run
    return run.verdict


def assert_no_face(verdict: dict[str, Any]) -> None:
    """The explicit no-face verdict: no probability at all (not 0.5), no scores, no boxes."""
    assert verdict["status"] == contract.STATUS_NO_FACE
    assert verdict["label"] == "NO_FACE"
    assert verdict["fake_probability"] is None
    assert verdict["faces"] == 0 and verdict["face_boxes"] == []
    assert verdict["frame_scores"] == [None] * verdict["frames"]


def faces_per_frame(verdict: dict[str, Any]) -> list[int]:
    counts = [0] * verdict["frames"]
    for face in verdict["face_boxes"]:
        counts[face["frame_index"]] += 1
    return counts


# --- cases ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["coffee", "gradient"])
def test_analyze_reports_no_face_instead_of_a_probability_when_video_has_no_face(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], tmp_path: Path, source: str
) -> None:
    video = make_no_face_video(
        tmp_path / f"{source}.mp4",
        seconds=1.0,
        fps=4,
        size=(640, 360),
        codec="avc1",
        source=source,  # type: ignore[arg-type]
    )
    verdict = analyze_video(triton, capsys, video, frames=4)
    assert verdict["frames"] == 4
    assert_no_face(verdict)
    assert_server_ready(triton)


def test_analyze_reports_no_face_when_video_is_fully_black(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    black = np.zeros((HD[1], HD[0], 3), np.uint8)
    video = content_video(tmp_path / "black.mp4", [black] * 4)
    verdict = analyze_video(triton, capsys, video, frames=4)
    assert_no_face(verdict)
    assert_server_ready(triton)


def test_analyze_scores_the_faces_kept_of_each_frame_when_a_frame_holds_more(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    crowd = grid(rows=4, cols=6, side=170, step_x=210, step_y=178)  # 24 heads on 1280x720
    frames = [compose(crowd), compose([Placement(p.x + 4, p.y, p.side) for p in crowd])]
    video = content_video(tmp_path / "crowd.mp4", frames)
    verdict = analyze_video(triton, capsys, video, frames=2)
    assert verdict["status"] == contract.STATUS_OK
    counts = faces_per_frame(verdict)
    # each frame's largest faces, up to the cap: more than one classifier chunk (16) in all
    assert counts == [detector_params(REPOSITORY).max_faces_per_frame] * 2, counts
    assert verdict["faces"] == len(verdict["face_boxes"]) == sum(counts)
    for index, score in enumerate(verdict["frame_scores"]):  # a frame scores its worst face
        faces = [f["fake_score"] for f in verdict["face_boxes"] if f["frame_index"] == index]
        assert score == pytest.approx(max(faces), abs=1e-6)
    assert all(f["fake_score"] is not None for f in verdict["face_boxes"])
    assert_server_ready(triton)


@pytest.mark.parametrize(
    ("side", "found"),
    [(30, False), (50, False), (240, True)],
    ids=["head_30px", "head_50px", "head_240px"],
)
def test_analyze_reports_no_face_explicitly_when_faces_are_below_detection_size(
    triton: EmbeddedTriton,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    side: int,
    found: bool,
) -> None:
    """Heads of 30/50 px in 1280x720 (faces ~12/18 px, 6/9 px at detection scale) are not
    found: the verdict says NO_FACE. A 240 px head (the control) is found."""
    heads = grid(rows=2, cols=5, side=side, step_x=side + 60, step_y=side + 60)
    video = content_video(tmp_path / f"heads_{side}.mp4", [compose(heads)] * 2)
    verdict = analyze_video(triton, capsys, video, frames=2)
    if found:
        assert verdict["status"] == contract.STATUS_OK and verdict["faces"] >= 2
        assert verdict["fake_probability"] is not None
    else:
        assert_no_face(verdict)
    assert_server_ready(triton)


def test_analyze_finds_the_face_with_a_box_past_the_edge_when_face_is_cut_by_the_frame(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A quarter of the head outside the left edge: found; its box reaches past the frame.

    FACE_BOXES are the detector's estimate of the whole face, so ``x1`` may be negative (the
    contract does not clip them; consumers such as the web thumbnails clip when cropping).
    """
    side = 300
    video = content_video(tmp_path / "edge.mp4", [compose([Placement(-side // 4, 200, side)])] * 2)
    verdict = analyze_video(triton, capsys, video, frames=2)
    assert verdict["status"] == contract.STATUS_OK and verdict["faces"] == 2
    for face in verdict["face_boxes"]:
        x1, y1, x2, y2 = face["box"]
        assert x1 < 10 < x2 < side, face  # at (or past) the left edge, on the visible part
        assert 200 <= y1 < y2 <= 200 + side
    assert_server_ready(triton)


@pytest.mark.parametrize("edge", ["left", "top", "right", "bottom"])
def test_analyze_gives_an_explicit_status_when_half_the_face_is_outside_the_frame(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], tmp_path: Path, edge: str
) -> None:
    """Half a head: the detector may or may not find it (today: not); either way the status
    is explicit, and any box found overlaps the visible half."""
    side, (width, height) = 300, HD
    x, y = {
        "left": (-side // 2, 200),
        "top": (500, -side // 2),
        "right": (width - side // 2, 200),
        "bottom": (500, height - side // 2),
    }[edge]
    video = content_video(tmp_path / f"half_{edge}.mp4", [compose([Placement(x, y, side)])] * 2)
    verdict = analyze_video(triton, capsys, video, frames=2)
    if verdict["status"] == contract.STATUS_NO_FACE:
        assert_no_face(verdict)
    else:
        assert verdict["status"] == contract.STATUS_OK
        for face in verdict["face_boxes"]:
            x1, y1, x2, y2 = face["box"]
            assert x1 < min(x + side, width) and x2 > max(x, 0)
            assert y1 < min(y + side, height) and y2 > max(y, 0)
    assert_server_ready(triton)
