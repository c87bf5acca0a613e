"""Numbered classifier versions in the model repository: export a new one, roll back one.

Triton serves the version ``face_classifier/config.pbtxt`` pins (``version_policy: specific``;
found by :func:`fakescope.serving.model_config.served_version_dir`, the one resolver). An export
pins the version it adds; a folder numbered above the pinned one (left by an export that failed
before its switch) is never served, and nothing here treats it as served. Hence:

* :func:`export_new_version` exports a checkpoint into ``face_classifier/<N+1>/`` (into a
  temporary folder first, renamed once the ONNX parity check has passed: :func:`publishing`),
  regenerates ``config.pbtxt`` from its ONNX metadata and writes its model card, both into the
  version folder (``<N+1>/MODEL_CARD.md``, kept for rollbacks) and as the served
  ``face_classifier/MODEL_CARD.md``. :func:`fakescope.export.quantize.export_quantized_version`
  publishes the served version's int8 model the same way. Version ``1`` (the placeholder
  ``fakescope export`` rebuilds; the tests check it is the same model) is never touched except
  to keep a copy of its card.
* :func:`rollback` pins the highest version below the served one that has a ``model.onnx``
  (:func:`rollback_target`), restores its card, then moves the served version's folder out of
  the repository (into ``retired_dir``, default ``<repository>/../.fakescope/retired/``:
  nothing is deleted).

A running server picks the change up on restart (model control mode ``none``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fakescope import contract
from fakescope.export.classifier import ClassifierCheckpoint, export_classifier, load_checkpoint
from fakescope.export.crop_geometry import CropDetector, CropGeometry
from fakescope.export.framing import calibrate_framing, load_framing_frames
from fakescope.export.model_card import load_results, model_card
from fakescope.export.provenance import git_commit
from fakescope.export.repository import classifier_config, parity_faces
from fakescope.files import copy_file_atomically, write_text_atomically
from fakescope.pipeline.metadata import (
    read_classifier_limitations,
    read_classifier_spec,
    read_provenance,
)
from fakescope.serving.model_config import served_version_dir

__all__ = [
    "export_new_version",
    "list_versions",
    "publishing",
    "render_card",
    "rollback",
    "rollback_target",
    "served_version",
    "write_served_files",
]

logger = logging.getLogger(__name__)

CARD = "MODEL_CARD.md"


def list_versions(repository: Path) -> list[int]:
    """Numbered versions of ``face_classifier``, ascending."""
    folder = Path(repository) / contract.CLASSIFIER_MODEL
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def served_version(repository: Path) -> int:
    """Return the version Triton serves: the one ``config.pbtxt`` pins (else the newest).

    Raises:
        FileNotFoundError: no version, or none for the pinned one.
        ValueError: the config pins several versions.

    """
    folder = Path(repository) / contract.CLASSIFIER_MODEL
    if not list_versions(repository):
        raise FileNotFoundError(f"no face_classifier version in {repository}")
    return int(served_version_dir(folder).name)


def rollback_target(
    versions: Sequence[int], served: int, has_model: Callable[[int], bool], where: object
) -> int:
    """Return the version a rollback from ``served`` serves: the highest below it with a model.

    ``has_model(v)``: whether version ``v`` has its ``model.onnx`` (a folder without one, left
    by a failed export, cannot be served). Raises ``ValueError`` when there is none.
    """
    earlier = [v for v in versions if v < served and has_model(v)]
    if not earlier:
        raise ValueError(
            f"cannot roll back: {contract.CLASSIFIER_MODEL} in {where} serves version {served} "
            "and has no earlier version with a model.onnx"
        )
    return max(earlier)


def _keep_card_of_served(folder: Path) -> None:
    """Copy the served card into its version folder (once) so a rollback can restore it."""
    if not (folder / CARD).is_file():
        return
    try:
        served = served_version_dir(folder)
    except FileNotFoundError:  # no version served yet: no card of one to keep
        return
    if not (served / CARD).is_file():
        copy_file_atomically(folder / CARD, served / CARD)


def export_new_version(
    repository: Path, checkpoint_path: Path, framing_videos: Sequence[Path] = ()
) -> int:
    """Export the checkpoint at ``checkpoint_path`` as the next ``face_classifier`` version.

    A checkpoint trained on face crops records the data's crop geometry; its served framing is
    calibrated on frames of ``framing_videos`` (:mod:`fakescope.export.framing`), which it
    then needs. Returns the new version number. Raises
    :class:`~fakescope.export.classifier.CheckpointError` (a ``ValueError``) for a file that is
    not a usable FakeScope checkpoint, ``ValueError`` for missing framing videos or a framing
    that cannot be matched, and ``RuntimeError`` when the ONNX parity check fails (nothing is
    left behind either way).
    """
    repository = Path(repository)
    folder = repository / contract.CLASSIFIER_MODEL
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: build the repository first")
    checkpoint = load_checkpoint(Path(checkpoint_path))
    checkpoint = _with_calibrated_framing(repository, checkpoint, checkpoint_path, framing_videos)
    version = (list_versions(repository) or [0])[-1] + 1
    with publishing(folder, version) as staging:
        export_classifier(
            checkpoint, staging / "model.onnx", parity_faces(checkpoint.spec.input_size)
        )
        card = model_card(checkpoint.spec, checkpoint.trained, checkpoint.provenance, version)
        (staging / CARD).write_text(card)
    logger.info("exported %s as %s version %d", checkpoint_path, contract.CLASSIFIER_MODEL, version)
    return version


@contextmanager
def publishing(folder: Path, version: int) -> Iterator[Path]:
    """Yield an empty staging folder for ``version`` of ``folder``; publish it once filled.

    When the block succeeds, the served card is kept in its own version folder (for a
    rollback), the staging folder is renamed to ``<version>`` and the config and card are
    regenerated to serve it (:func:`write_served_files`). When it raises, nothing is left.
    """
    staging = folder / f".staging-{version}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        yield staging
        _keep_card_of_served(folder)
        staging.rename(folder / str(version))
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    write_served_files(folder, version)


def _with_calibrated_framing(
    repository: Path,
    checkpoint: ClassifierCheckpoint,
    checkpoint_path: Path,
    videos: Sequence[Path],
) -> ClassifierCheckpoint:
    """Return the checkpoint with its served framing calibrated to its data (if it has any)."""
    recorded = checkpoint.provenance.get("crop_geometry")
    if recorded is None:
        if videos:
            raise ValueError(
                f"{checkpoint_path} records no crop geometry (not trained on face crops): "
                "there is no framing to calibrate, drop the framing videos"
            )
        return checkpoint
    if not videos:
        raise ValueError(
            f"{checkpoint_path} was trained on face crops: give videos of real faces "
            "(--framing-videos) to calibrate the served crops to the data's framing"
        )
    raw = json.loads(recorded)
    data = CropGeometry(**{**raw, "face_shift": tuple(raw["face_shift"])})
    detector = CropDetector(repository)
    framing = calibrate_framing(
        load_framing_frames(videos, detector), data, checkpoint.spec.input_size, detector
    )
    spec = dataclasses.replace(
        checkpoint.spec, face_margin=framing.face_margin, face_shift=framing.face_shift
    )
    command = " ".join(
        ["fakescope export --checkpoint", str(checkpoint_path), "--framing-videos"]
        + [str(v) for v in videos]
    )
    provenance = {
        **checkpoint.provenance,
        "framing_calibration": json.dumps(framing.to_json(), sort_keys=True),
        "export_command": command,
        "export_git_commit": git_commit(),
    }
    return dataclasses.replace(checkpoint, spec=spec, provenance=provenance)


def write_served_files(folder: Path, version: int) -> None:
    """Make ``version`` the described one: regenerate ``config.pbtxt``, copy its card."""
    onnx_path = folder / str(version) / "model.onnx"
    spec, trained = read_classifier_spec(onnx_path)
    config = classifier_config(
        spec, trained=trained, version=version, limitations=read_classifier_limitations(onnx_path)
    )
    write_text_atomically(folder / "config.pbtxt", config)
    card = folder / str(version) / CARD
    if card.is_file():
        copy_file_atomically(card, folder / CARD)
    else:
        logger.warning("version %d has no model card of its own; %s left as it is", version, CARD)


def render_card(repository: Path, version: int, results: Path | None, root: Path) -> Path:
    """Write the model card of ``version`` again from its ONNX metadata and ``results``.

    ``results`` holds the version's evaluation reports (``*/metrics.json``); their paths in
    the card are relative to ``root`` (the project). The served card is updated too when
    ``version`` is the served one. Returns the version's card path.
    """
    folder = Path(repository) / contract.CLASSIFIER_MODEL
    onnx_path = folder / str(version) / "model.onnx"
    spec, trained = read_classifier_spec(onnx_path)
    provenance = read_provenance(onnx_path)
    found = load_results(results, root) if results is not None else None
    card = folder / str(version) / CARD
    write_text_atomically(card, model_card(spec, trained, provenance, version, found))
    if version == served_version(Path(repository)):
        copy_file_atomically(card, folder / CARD)
    return card


def rollback(repository: Path, retired_dir: Path | None = None) -> int:
    """Retire the served classifier version; return the version now served.

    The config then pins the highest earlier version that has a ``model.onnx``
    (:func:`rollback_target`); versions above the served one are left alone.

    Raises:
        ValueError: no earlier version to roll back to.
        FileNotFoundError: the config pins a version that has no folder.

    """
    repository = Path(repository)
    folder = repository / contract.CLASSIFIER_MODEL
    versions = list_versions(repository)
    if len(versions) < 2:
        raise ValueError(
            f"cannot roll back: face_classifier has {len(versions)} version(s) in {repository}"
        )
    served = int(served_version_dir(folder).name)
    previous = rollback_target(
        versions, served, lambda v: (folder / str(v) / "model.onnx").is_file(), repository
    )
    retired = Path(retired_dir) if retired_dir else repository.parent / ".fakescope" / "retired"
    target = retired / contract.CLASSIFIER_MODEL / f"{served}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_served_files(folder, previous)  # the switch first: the retired folder is not served
    shutil.move(str(folder / str(served)), str(target))
    logger.info("rolled back face_classifier from %d to %d (%s)", served, previous, target)
    return previous
