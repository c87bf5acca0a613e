"""The operator profile of the served ONNX models (benchmarks/model_ops.py)."""

from __future__ import annotations

import json

import pytest

from fakescope import contract
from fakescope.benchmarks.model_ops import MODEL_INPUTS, main, op_shares
from fakescope.paths import PROJECT_ROOT


def test_op_shares_keeps_the_timed_passes_largest_type_first_when_passes_are_equal():
    events = [("Conv", 9000.0), ("PRelu", 1000.0)] + [("Conv", 2000.0), ("PRelu", 3000.0)] * 2
    runs = [12_000.0, 6000.0, 6000.0]
    summary = op_shares(events, runs, passes=3, timed=2)
    assert list(summary["op_ms"]) == ["PRelu", "Conv"]
    assert summary["op_ms"] == {"PRelu": pytest.approx(3.0), "Conv": pytest.approx(2.0)}
    assert summary["kernel_ms"] == pytest.approx(5.0)
    assert summary["run_ms"] == pytest.approx(6.0)


def test_op_shares_raises_value_error_when_events_do_not_split_into_equal_passes():
    with pytest.raises(ValueError, match="3 events do not make 2 equal passes"):
        op_shares([("Conv", 1.0)] * 3, [1.0, 1.0], passes=2, timed=1)


def test_model_ops_profiles_every_served_model_when_run_on_a_committed_sample(tmp_path):
    output = tmp_path / "model_ops.json"
    video = PROJECT_ROOT / "samples" / "astronaut_face_720p.mp4"
    assert main(["--video", str(video), "--runs", "1", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    rows = {row["model"]: row for row in result["rows"]}
    assert list(rows) == list(MODEL_INPUTS)
    for row in rows.values():
        assert row["repository"] == "this"
        assert 0 < row["kernel_ms"] <= row["run_ms"]
        assert sum(row["op_ms"].values()) == pytest.approx(row["kernel_ms"])
    # the served nets carry no PRelu (export/mtcnn_onnx.py); the classifier's batch is the faces
    assert not any("PRelu" in rows[net]["op_ms"] for net in MODEL_INPUTS if net.startswith("mtcnn"))
    assert rows[contract.CLASSIFIER_MODEL]["batches"][0][0] > 0
    table = output.with_suffix(".md").read_text()
    assert "| mtcnn_rnet | this (" in table and "astronaut_face_720p.mp4" in table


def test_model_ops_exits_2_when_the_video_does_not_exist(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--video", str(tmp_path / "missing.mp4"), "--output", str(tmp_path / "r.json")])
    assert exited.value.code == 2
    assert "missing.mp4: no such file" in capsys.readouterr().err
