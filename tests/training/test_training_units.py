"""Unit tests of the training building blocks: metrics, self-blending, augmentation, configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch", reason="training needs the train extra (torch)")
pytest.importorskip("sklearn", reason="metric parity needs scikit-learn")

import sklearn.metrics as sklearn_metrics

from fakescope.export.provenance import command_line, git_commit
from fakescope.pipeline.aggregation import AggregationParams
from fakescope.pipeline.crops import crop_faces
from fakescope.serving.model_config import aggregation_params, config_parameters, detector_params
from fakescope.training.augment import augment_crop
from fakescope.training.binary_metrics import (
    DFDC_EPS,
    binary_metrics,
    log_loss,
    roc_auc,
    youden_threshold,
)
from fakescope.training.self_blend import face_mask, self_blend
from fakescope.training.video_faces import landmarks_in_crops
from tests.support.servers import REPOSITORY

_labels_and_scores = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(
            st.sampled_from([0.0, 1e-20, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0])
            | st.floats(0, 1, allow_nan=False),
            min_size=n,
            max_size=n,
        ),
    )
)


@settings(max_examples=60, deadline=None)
@given(_labels_and_scores, st.sampled_from([0.3, 0.5, 0.8]))
def test_binary_metrics_match_sklearn_when_predictions_are_arbitrary(data, threshold):
    y, p = np.array(data[0]), np.array(data[1])
    m = binary_metrics(y, p, threshold)
    predicted = (p >= threshold).astype(int)
    assert m.recall == pytest.approx(sklearn_metrics.recall_score(y, predicted, zero_division=0))
    assert m.precision == pytest.approx(
        sklearn_metrics.precision_score(y, predicted, zero_division=0)
    )
    assert m.accuracy == pytest.approx(sklearn_metrics.accuracy_score(y, predicted))
    clipped = np.clip(p, DFDC_EPS, 1 - DFDC_EPS)
    assert m.logloss == pytest.approx(sklearn_metrics.log_loss(y, clipped, labels=[0, 1]))
    tn, fp, fn, tp = sklearn_metrics.confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    assert (m.tn, m.fp, m.fn, m.tp) == (tn, fp, fn, tp)
    if 0 < y.sum() < y.size:
        assert m.auc == pytest.approx(sklearn_metrics.roc_auc_score(y, p))
    else:
        assert math.isnan(m.auc)


def test_log_loss_is_finite_when_prediction_is_confidently_wrong():
    loss = log_loss(np.array([1, 0]), np.array([0.0, 1.0]))
    assert loss == pytest.approx(-math.log(DFDC_EPS), rel=1e-4)


def test_roc_auc_counts_ties_as_half_when_scores_are_equal():
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5


def test_youden_threshold_separates_classes_when_they_are_separable():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    t = youden_threshold(y, p)
    assert binary_metrics(y, p, t).accuracy == 1.0


@pytest.fixture(scope="module")
def astronaut_face():
    """The astronaut's face crop at 128 px and its MTCNN landmarks in crop pixels."""
    from skimage import data

    from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets, detect_faces

    frame = data.astronaut()[None]
    found = detect_faces(frame, OnnxRuntimeMtcnnNets(REPOSITORY), detector_params(REPOSITORY))
    boxes = np.concatenate(
        [found.frame_index[:, None], found.boxes, found.scores[:, None]], axis=1
    ).astype(np.float32)
    crop = crop_faces(frame, boxes, size=128, margin=0.2)[0]
    landmarks = landmarks_in_crops(boxes, found.landmarks, size=128, margin=0.2)[0]
    return crop, landmarks


def test_landmarks_in_crops_land_on_the_face_when_mapped_into_the_crop(astronaut_face):
    _, landmarks = astronaut_face
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    assert 0 < left_eye[0] < right_eye[0] < 128
    assert left_eye[1] < nose[1] < 128  # eyes above the nose
    # the face occupies the middle of the crop (margin 0.2 on each side)
    assert 0.25 * 128 < nose[0] < 0.75 * 128


def test_self_blend_alters_face_region_inside_mask_when_blending(astronaut_face):
    crop, landmarks = astronaut_face
    source_altered = 0
    for seed in range(12):
        fake, mask = self_blend(crop, landmarks, np.random.default_rng(seed))
        assert fake.shape == crop.shape and fake.dtype == np.uint8
        assert mask.max() > 0.2, "the mask must cover the face"
        diff = np.abs(fake.astype(int) - crop.astype(int)).sum(axis=2)
        assert diff.mean() > 0.1, "a self-blended image must differ from the real one"
        outside = mask == 0
        if not diff[outside].any():  # the jittered copy was the source: only the face changed
            source_altered += 1
            assert diff[mask > 0.2].mean() > 0.5
        # the mask sits on the face (around the landmarks' centre)
        ys, xs = np.nonzero(mask > 0)
        centre = landmarks.mean(axis=0)
        assert abs(xs.mean() - centre[0]) < 20 and abs(ys.mean() - centre[1]) < 25
    assert 0 < source_altered < 12, "source or target is jittered at random"


def test_self_blend_is_reproducible_when_seeded(astronaut_face):
    crop, landmarks = astronaut_face
    a, _ = self_blend(crop, landmarks, np.random.default_rng(11))
    b, _ = self_blend(crop, landmarks, np.random.default_rng(11))
    c, _ = self_blend(crop, landmarks, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_face_mask_stays_in_unit_range_when_drawn_many_times(astronaut_face):
    crop, landmarks = astronaut_face
    rng = np.random.default_rng(0)
    for _ in range(30):
        mask = face_mask(crop.shape[:2], landmarks, rng)
        assert mask.dtype == np.float32 and mask.min() >= 0.0 and mask.max() <= 1.0
        assert mask.max() > 0


def test_augment_crop_keeps_shape_and_is_reproducible_when_seeded(astronaut_face):
    crop, _ = astronaut_face
    outs = [augment_crop(crop, np.random.default_rng(s)) for s in (1, 1, 2)]
    assert all(o.shape == crop.shape and o.dtype == np.uint8 for o in outs)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])  # the generator decides, not a fixed edit


def test_detector_params_equal_face_detector_config_when_read_from_repository():
    params = detector_params(REPOSITORY)
    raw = config_parameters(REPOSITORY / "face_detector" / "config.pbtxt")
    assert params.min_face_size == int(raw["min_face_size"])
    assert params.max_side == int(raw["detection_max_side"])
    assert params.factor == float(raw["scale_factor"])
    assert params.keyframe_stride == int(raw["keyframe_stride"])
    assert params.follow_template_side == int(raw["follow_template_side"])
    assert aggregation_params(REPOSITORY) == AggregationParams.from_parameters(
        config_parameters(REPOSITORY / "video_aggregator" / "config.pbtxt")
    )


def test_config_parameters_names_file_when_config_is_malformed(tmp_path):
    bad = tmp_path / "config.pbtxt"
    bad.write_text("name: 'x' parameters [ { key: ")
    with pytest.raises(ValueError, match=r"config\.pbtxt: not a valid Triton model configuration"):
        config_parameters(bad)


def test_git_commit_reads_head_without_git_when_repository_has_a_ref(tmp_path):
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert git_commit(tmp_path / "sub") == "a" * 40


def test_git_commit_answers_unknown_when_no_folder_above_holds_git(tmp_path):
    plain = tmp_path / "installed" / "package"
    if any((folder / ".git").exists() for folder in [plain, *plain.parents]):
        pytest.skip("the temporary folder lies inside a git checkout")
    assert git_commit(plain) == "unknown"


def test_command_line_quotes_an_argument_when_it_holds_a_space():
    assert command_line(["train", "my dir"]) == "fakescope train 'my dir'"


def test_training_parsers_import_no_torch_when_mounted_in_the_cli():
    import subprocess
    import sys

    code = (
        "import sys, argparse\n"
        "from fakescope.training.cli import ARCHS, add_training_parsers\n"
        "p = argparse.ArgumentParser(); add_training_parsers(p.add_subparsers())\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    from fakescope.export.classifier import SUPPORTED_ARCHS
    from fakescope.training.cli import ARCHS

    assert tuple(SUPPORTED_ARCHS) == ARCHS


def _twenty_pairs():
    from fakescope.training.dataset import Dataset, VideoEntry

    entries = []
    for i in range(20):
        entries.append(VideoEntry(f"r{i:02d}.mp4", "REAL"))
        entries.append(VideoEntry(f"f{i:02d}.mp4", "FAKE", f"r{i:02d}.mp4"))
    return Dataset(REPOSITORY, tuple(sorted(entries, key=lambda e: e.name)))


@pytest.mark.parametrize("seed", [0, 1])
def test_evaluate_split_check_reads_the_split_listing_when_a_model_predates_the_split_record(
    seed,
):
    import argparse
    import json

    from fakescope.training.cli import _split_entries
    from fakescope.training.dataset import assign_splits

    dataset = _twenty_pairs()
    trained = assign_splits(dataset.entries, seed=0, val_fraction=0.2, test_fraction=0.2)
    # what a model trained on videos recorded before the split record: every split's names
    provenance = {"splits": json.dumps(trained.to_json()["splits"]), "split_seed": "0"}
    args = argparse.Namespace(split="test", seed=seed, val_fraction=0.2, test_fraction=0.2)
    entries, code = _split_entries(dataset, args, provenance)
    if seed == 0:  # the training's split: its test videos
        assert code is None and sorted(e.name for e in entries) == trained.names("test")
    else:  # another split would mix training videos into the test figures
        assert (entries, code) == ([], 2)


def _overlapping_scores(n: int = 300, seed: int = 1):
    """Labels, logits and one group per face: two classes that overlap (as real scores do)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    logits = rng.normal(0, 1, n) + 0.6 * (2 * labels - 1)
    return labels, logits, [f"g{i}" for i in range(n)]


def test_binary_metrics_label_each_prediction_at_its_own_threshold_when_given_one_per_face():
    labels, logits, _ = _overlapping_scores()
    p = 1 / (1 + np.exp(-logits))
    thresholds = np.where(np.arange(p.size) % 2, 0.3, 0.7)
    metrics = binary_metrics(labels, p, thresholds)
    predicted = (p >= thresholds).astype(int)
    assert metrics.accuracy == pytest.approx(sklearn_metrics.accuracy_score(labels, predicted))
    assert metrics.recall == pytest.approx(sklearn_metrics.recall_score(labels, predicted))
    assert math.isnan(metrics.threshold) and metrics.to_json()["threshold"] is None


def test_cross_fit_thresholds_each_half_on_the_other_half_when_both_hold_both_classes():
    import hashlib

    from fakescope.training.calibration import cross_fit, fit_temperature, sigmoid

    labels, logits, groups = _overlapping_scores()
    fitted = cross_fit(labels, logits, groups)
    assert fitted is not None
    half = np.array([hashlib.sha256(g.encode()).digest()[0] & 1 for g in groups], bool)
    for part in (half, ~half):
        other = ~part  # everything a half is scored with comes from the other one
        t = fit_temperature(labels[other], logits[other])
        assert fitted.probabilities[part] == pytest.approx(sigmoid(logits[part] / t))
        chosen = youden_threshold(labels[other], sigmoid(logits[other] / t))
        assert np.all(fitted.thresholds[part] == chosen)
    # the halves choose different thresholds here: one threshold for all would not be this
    assert np.unique(fitted.thresholds).size == 2


def test_cross_fit_returns_none_when_a_half_of_the_groups_lacks_a_class():
    from fakescope.training.calibration import cross_fit

    labels, logits, _ = _overlapping_scores(40)
    assert cross_fit(labels, logits, ["one original"] * 40) is None  # one half holds all
