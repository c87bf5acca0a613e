"""The side-by-side harness's checks, ratios and environment (benchmarks/side_by_side.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest

from fakescope.benchmarks.side_by_side import (
    _environment,
    add_arguments,
    add_ratios,
    check_same_faces,
)
from fakescope.client.triton import RawResult


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
def test_check_same_faces_refuses_when_servers_find_different_faces(other):
    with pytest.raises(RuntimeError, match=r"v\.mp4: the two servers found different faces"):
        check_same_faces("v.mp4", _result([[0, 10, 10, 50, 50, 0.99]]), _result(other))


def test_add_ratios_divides_the_first_server_by_the_second_when_rows_have_both():
    rows = [{"a": {"wall_s": 0.3, "server_cpu_s": 0.2}, "b": {"wall_s": 0.4, "server_cpu_s": 0.5}}]
    add_ratios(rows, "a", "b", "b")
    assert rows[0]["wall_vs_b"] == pytest.approx(0.75)
    assert rows[0]["cpu_vs_b"] == pytest.approx(0.4)


def test_environment_restores_set_and_unset_variables_when_the_block_ends(monkeypatch):
    monkeypatch.setenv("FAKESCOPE_TEST_SET", "before")
    monkeypatch.delenv("FAKESCOPE_TEST_UNSET", raising=False)
    with _environment({"FAKESCOPE_TEST_SET": "", "FAKESCOPE_TEST_UNSET": "x"}):
        assert os.environ["FAKESCOPE_TEST_SET"] == ""
        assert os.environ["FAKESCOPE_TEST_UNSET"] == "x"
    assert os.environ["FAKESCOPE_TEST_SET"] == "before"
    assert "FAKESCOPE_TEST_UNSET" not in os.environ


def test_check_same_faces_returns_the_largest_box_difference_when_within_tolerance():
    here = _result([[0, 10, 10, 50, 50, 0.99], [1, 20, 20, 60, 60, 0.9]])
    there = _result([[0, 12.5, 10, 50, 50, 0.98], [1, 20, 21, 60, 60, 0.9]])
    assert check_same_faces("v.mp4", here, there, tolerance_px=3.0) == pytest.approx(2.5)


def test_check_same_faces_refuses_when_a_box_moves_past_the_tolerance():
    with pytest.raises(RuntimeError, match=r"a box 4 px apart, more than 3"):
        check_same_faces(
            "v.mp4",
            _result([[0, 10, 10, 50, 50, 0.99]]),
            _result([[0, 14, 10, 50, 50, 0.99]]),
            tolerance_px=3.0,
        )


def test_check_same_faces_refuses_when_a_face_is_in_another_frame_within_tolerance():
    with pytest.raises(RuntimeError, match=r"found different faces"):
        check_same_faces(
            "v.mp4",
            _result([[0, 10, 10, 50, 50, 0.99]]),
            _result([[1, 10, 10, 50, 50, 0.99]]),
            tolerance_px=3.0,
        )


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "two"])
def test_side_by_side_arguments_exit_when_box_tolerance_is_not_a_distance(value, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser, result=Path("r.json"), first_port=18800)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--box-tolerance-px", value])
    assert exited.value.code == 2
    assert "--box-tolerance-px" in capsys.readouterr().err
