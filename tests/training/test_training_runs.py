"""Runs of ``train_classifier``: resuming one continues the run it names (or none), and what
the finished run records of its validation.

Lite0 at 32 px on a few astronaut crops, two steps an epoch: what is checked is the schedule,
the refusals and the record, not what the model learns. An interruption is a
``KeyboardInterrupt`` raised from the progress callback, as Ctrl-C raises it between batches.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the train extra (torch)")

import torch

from fakescope.export.classifier import load_checkpoint
from fakescope.training.train import (
    CROSS_FITTED,
    NOT_CROSS_FITTED,
    NOT_CROSS_FITTED_KEY,
    FaceSet,
    ResumeError,
    TrainConfig,
    run_settings,
    train_classifier,
)
from tests.support.face_crop_sets import face_crop, fake_crop
from tests.support.training_helpers import snapshot

SIZE = 32
CONFIG = TrainConfig(
    epochs=3,
    input_size=SIZE,
    batch_size=8,
    samples_per_epoch=16,
    self_blend=False,
    patience=10,
    device="cpu",
)


def _faces(indices: range) -> FaceSet:
    crops, labels, videos = [], [], []
    for i in indices:
        for label, crop in ((0, face_crop(i)), (1, fake_crop(i))):
            crops.append(cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
            labels.append(label)
            videos.append(f"{'fake' if label else 'real'}{i:03d}.mp4")
    n = len(labels)
    landmarks = np.full((n, 5, 2), np.nan, np.float32)  # no self-blending: none needed
    return FaceSet(np.stack(crops), landmarks, np.asarray(labels), videos)


TRAIN, VAL = _faces(range(8)), _faces(range(8, 12))


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C between two batches."""


def _train(output: Path, config: TrainConfig = CONFIG, *, stop_after: int | None = None, **kw):
    steps = {"done": 0}

    def on_step(step: int, per_epoch: int) -> None:
        steps["done"] += 1
        if stop_after is not None and steps["done"] == stop_after:
            raise _Interrupted

    return train_classifier(TRAIN, VAL, config, output, on_step=on_step, **kw)


def _schedule(output: Path) -> list[tuple[int, float]]:
    return [(h["epoch"], h["lr"]) for h in json.loads((output / "history.json").read_text())]


def test_train_classifier_resume_continues_the_schedule_when_a_run_was_interrupted(tmp_path):
    straight = _train(tmp_path / "straight")
    with pytest.raises(_Interrupted):
        _train(tmp_path / "stopped", stop_after=5)  # in epoch 2 of 3 (two steps an epoch)
    assert [e for e, _ in _schedule(tmp_path / "stopped")] == [0, 1]
    resumed = _train(tmp_path / "stopped", resume=True)
    # the same epochs at the same learning rates as a run never stopped
    stopped, never = _schedule(tmp_path / "stopped"), _schedule(tmp_path / "straight")
    assert [e for e, _ in stopped] == [e for e, _ in never] == [0, 1, 2]
    assert [lr for _, lr in stopped] == pytest.approx([lr for _, lr in never])
    losses = [h["train_loss"] for h in resumed.history]
    assert losses == pytest.approx([h["train_loss"] for h in straight.history], rel=1e-4)


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"epochs": 4}, "epochs"),  # the cosine schedule was made for 3
        ({"seed": 1}, "seed"),
        ({"lr": 1e-3}, "lr"),
    ],
)
def test_train_classifier_refuses_to_resume_when_a_setting_differs_from_the_run(
    tmp_path, change, setting
):
    with pytest.raises(_Interrupted):
        _train(tmp_path / "run", stop_after=3)  # in epoch 1, epoch 0 saved
    before = snapshot(tmp_path / "run")
    with pytest.raises(ResumeError) as refused:
        _train(tmp_path / "run", dataclasses.replace(CONFIG, **change), resume=True)
    assert list(refused.value.differing) == [setting]
    assert snapshot(tmp_path / "run") == before


def test_train_classifier_refuses_to_resume_when_the_faces_differ_from_the_run(tmp_path):
    with pytest.raises(_Interrupted):
        _train(tmp_path / "run", stop_after=3)
    other_val = _faces(range(8, 11))
    with pytest.raises(ResumeError) as refused:
        train_classifier(TRAIN, other_val, CONFIG, tmp_path / "run", resume=True)
    assert list(refused.value.differing) == ["faces_sha256"]


def test_train_classifier_resumes_when_only_the_device_or_patience_differ(tmp_path):
    with pytest.raises(_Interrupted):
        _train(tmp_path / "run", stop_after=3)
    # the settings it records leave these out: they do not change what an epoch trains on
    assert "patience" not in run_settings(CONFIG) and "device" not in run_settings(CONFIG)
    result = _train(tmp_path / "run", dataclasses.replace(CONFIG, patience=9), resume=True)
    assert [h["epoch"] for h in result.history] == [0, 1, 2]


def test_train_classifier_records_in_sample_figures_only_when_a_validation_half_lacks_a_class(
    tmp_path,
):
    # one group for every validation face: one half holds them all, the other none, so no
    # temperature or threshold can be fitted without the faces it would score
    val = dataclasses.replace(VAL, groups=["one original"] * len(VAL))
    result = train_classifier(TRAIN, val, dataclasses.replace(CONFIG, epochs=1), tmp_path / "run")
    provenance = load_checkpoint(result.best_checkpoint).provenance
    assert CROSS_FITTED not in provenance
    assert provenance[NOT_CROSS_FITTED_KEY] == NOT_CROSS_FITTED
    assert "val_face_metrics" in provenance  # the in-sample figures, named as such


def test_train_classifier_refuses_to_resume_when_the_state_records_no_settings(tmp_path):
    with pytest.raises(_Interrupted):
        _train(tmp_path / "run", stop_after=3)
    state_path = tmp_path / "run" / "train_state.pt"
    state = torch.load(state_path, weights_only=True)
    del state["settings"]  # as FakeScope wrote it before it recorded them
    torch.save(state, state_path)
    with pytest.raises(ResumeError) as refused:
        _train(tmp_path / "run", resume=True)
    assert refused.value.differing == {}
