"""Bad files given to ``train``, ``evaluate`` and ``export``: one error line, the right exit code.

Each case is a real file of the kind a user could pass by mistake (not a PyTorch file, a
checkpoint whose weights belong to another architecture, NaN weights, a folder holding no
model, face crops where MTCNN finds no face), refused at the entry point before anything is
written, naming the file and why.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the train extra (torch)")

import torch

from fakescope import contract
from fakescope.cli import main as fakescope_main
from fakescope.export.classifier import build_backbone, default_spec
from fakescope.pipeline.metadata import spec_to_metadata
from tests.support.face_crop_sets import rows_for, write_set
from tests.support.training_helpers import snapshot

EXIT_USAGE, EXIT_BAD_INPUT = 2, 3


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The captured stderr, checked to be one ``fakescope: error:`` line."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("fakescope: error: ") and "\n" not in err, err
    return err


def _checkpoint(path: Path, arch: str, state: dict[str, torch.Tensor]) -> Path:
    """A checkpoint in training's format whose metadata names ``arch`` and holds ``state``."""
    spec = dataclasses.replace(default_spec(arch), input_size=64)
    payload = {
        "metadata": spec_to_metadata(spec, trained=True),
        "state_dict": state,
        "trained": True,
        "provenance": {"trained_on": "nothing (a test of refusals)"},
    }
    torch.save(payload, path)
    return path


def _lite0_state() -> dict[str, torch.Tensor]:
    return build_backbone("efficientnet-lite0", imagenet=False).state_dict()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A face-crop set, a bare model repository and the bad files, under ``tmp_path/in``."""
    root = tmp_path / "in"
    (root / "repository" / contract.CLASSIFIER_MODEL).mkdir(parents=True)
    (root / "empty-model").mkdir()
    garbage = root / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    nan_state = _lite0_state()
    nan_state["_fc.weight"][:] = float("nan")
    return {
        "data": write_set(root / "data", rows_for(4, 1)),
        "repository": root / "repository",
        "empty-model": root / "empty-model",
        "garbage": garbage,
        # metadata says B0, the weights are Lite0's
        "wrong-arch": _checkpoint(root / "wrong-arch.pt", "efficientnet-b0", _lite0_state()),
        "nan": _checkpoint(root / "nan.pt", "efficientnet-lite0", nan_state),
        "lite0-weights": root / "lite0-weights.pt",
    }


@pytest.mark.parametrize(
    ("checkpoint", "reason"),
    [
        ("garbage", "not a PyTorch file of tensors"),
        ("wrong-arch", "its weights do not fit efficientnet-b0"),
        ("nan", "hold NaN or infinite values"),
    ],
)
def test_export_exits_3_naming_the_file_when_the_checkpoint_cannot_be_used(
    files, tmp_path, capsys, checkpoint, reason
):
    before = snapshot(tmp_path)
    code = fakescope_main(
        ["export", "--repository", str(files["repository"]), "--checkpoint", str(files[checkpoint])]
    )
    assert code == EXIT_BAD_INPUT
    err = _one_error_line(capsys)
    assert str(files[checkpoint]) in err and reason in err
    assert snapshot(tmp_path) == before


def _train(files: dict[str, Path], tmp_path: Path, *extra: str) -> int:
    return fakescope_main(
        [
            "train",
            str(files["data"]),
            "--input-size",
            "64",
            "--epochs",
            "1",
            "--output",
            str(tmp_path / "run"),
            "--cache",
            str(tmp_path / "cache"),
            "--no-clearml",
            "--quiet",
            *extra,
        ]
    )


def test_train_exits_3_before_any_work_when_weights_file_is_not_a_pytorch_file(
    files, tmp_path, capsys
):
    before = snapshot(tmp_path)
    assert _train(files, tmp_path, "--weights", str(files["garbage"])) == EXIT_BAD_INPUT
    err = _one_error_line(capsys)
    assert str(files["garbage"]) in err and "not a PyTorch file of tensors" in err
    assert snapshot(tmp_path) == before


def test_train_exits_3_before_any_work_when_weights_do_not_fit_the_architecture(
    files, tmp_path, capsys
):
    torch.save(_lite0_state(), files["lite0-weights"])
    before = snapshot(tmp_path)
    code = _train(
        files, tmp_path, "--arch", "efficientnet-b0", "--weights", str(files["lite0-weights"])
    )
    assert code == EXIT_BAD_INPUT
    err = _one_error_line(capsys)
    assert str(files["lite0-weights"]) in err and "do not fit efficientnet-b0" in err
    assert snapshot(tmp_path) == before


def test_train_exits_3_naming_the_set_when_mtcnn_finds_no_face_in_its_real_crops(tmp_path, capsys):
    rows = rows_for(4, 1)
    rng = np.random.default_rng(0)
    noise = {}
    for row in rows:  # every image noise: no face for MTCNN to find
        ok, data = cv2.imencode(".jpg", rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))
        assert ok
        noise[row["videoname"][:-4] + ".jpg"] = data.tobytes()
    data_dir = write_set(tmp_path / "noise", rows, images=noise)
    files = {"data": data_dir}
    assert _train(files, tmp_path) == EXIT_BAD_INPUT
    err = _one_error_line(capsys)
    assert str(data_dir) in err and "MTCNN finds no face in any of its 4 REAL images" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("empty-model", "no numeric version directory"),
        ("wrong-arch", "its weights do not fit efficientnet-b0"),
    ],
)
def test_evaluate_exits_3_before_any_work_when_the_model_cannot_be_loaded(
    files, tmp_path, capsys, model, reason
):
    before = snapshot(tmp_path)
    code = fakescope_main(
        [
            "evaluate",
            str(files["data"]),
            "--model",
            str(files[model]),
            "--output",
            str(tmp_path / "eval"),
            "--cache",
            str(tmp_path / "cache"),
            "--no-clearml",
            "--quiet",
        ]
    )
    assert code == EXIT_BAD_INPUT
    err = _one_error_line(capsys)
    assert str(files[model]) in err and reason in err
    assert snapshot(tmp_path) == before
