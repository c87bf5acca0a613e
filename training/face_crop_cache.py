"""Decode a face-crop dataset once: crops at the classifier's size, landmarks, geometry.

One pass over the shards decodes every image, resizes it to the classifier's input size and,
for each REAL face, runs the served MTCNN on the crop at its stored size (the landmarks that
self-blending needs, and the boxes that :func:`~.crop_geometry.measure_geometry` summarises).
The result is cached under ``<cache>/<key>-<size>/`` (written to a temporary folder, renamed
when complete, so an interrupted run leaves nothing half-written); the key is the SHA-256 of
``metadata.csv`` and of every shard or image file, with the detector's files and parameters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fakescope import contract
from fakescope.export.crop_geometry import (
    CropDetections,
    CropDetector,
    CropGeometry,
    measure_geometry,
)
from fakescope.serving.model_config import detector_params
from fakescope.training.dataset import DatasetError, Problem, content_sha256, file_sha256
from fakescope.training.face_crops import METADATA_CSV, FaceCropSet, decode_face, image_bytes

__all__ = ["PreparedFaces", "prepare_face_crops"]

logger = logging.getLogger(__name__)

_FORMAT = 2
#: REAL crops sent to the detector together.
_DETECT_CHUNK = 256


@dataclass(frozen=True)
class PreparedFaces:
    """Every face of a set, in the set's order, ready for training and evaluation."""

    names: list[str]
    crops: np.ndarray  #: UINT8 ``[N, S, S, 3]`` at the classifier's size
    landmarks: np.ndarray  #: FP32 ``[N, 5, 2]`` in crop pixels (NaN: FAKE or no face found)
    content_hash: str  #: :func:`~.dataset.content_sha256` of the images and ``metadata.csv``
    image_sha256: dict[str, str]  #: videoname -> SHA-256 of its image bytes
    geometry: CropGeometry  #: where our MTCNN finds the face in the data's REAL crops


def _source_key(dataset: FaceCropSet, size: int, repository: Path) -> str:
    digest = hashlib.sha256()
    files = {dataset.root / METADATA_CSV} | {
        ref.shard if ref.shard else dataset.root / ref.name for ref in dataset.images.values()
    }
    for path in sorted(files):
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    for model in contract.MTCNN_MODELS:
        digest.update(file_sha256(repository / model / "1" / "model.onnx").encode())
    settings = {
        "format": _FORMAT,
        "size": size,
        "params": asdict(detector_params(repository, video=False)),
    }
    digest.update(json.dumps(settings, sort_keys=True, default=list).encode())
    return digest.hexdigest()[:16]


def _load(folder: Path, names: list[str]) -> PreparedFaces | None:
    try:
        meta: dict[str, Any] = json.loads((folder / "meta.json").read_text())
        if meta["names"] != names:
            return None
        geometry = CropGeometry(
            **{
                **meta["geometry"],
                "face_shift": tuple(meta["geometry"]["face_shift"]),
                "margin_iqr": tuple(meta["geometry"]["margin_iqr"]),
                "shift_iqr": tuple(tuple(v) for v in meta["geometry"]["shift_iqr"]),
            }
        )
        return PreparedFaces(
            names,
            np.load(folder / "crops.npy", mmap_mode="r"),
            np.load(folder / "landmarks.npy"),
            meta["content_hash"],
            meta["image_sha256"],
            geometry,
        )
    except (OSError, KeyError, ValueError, TypeError):
        return None


def prepare_face_crops(
    dataset: FaceCropSet,
    size: int,
    repository: Path,
    cache: Path,
    *,
    on_image: Callable[[], None] | None = None,
) -> PreparedFaces:
    """Decode, resize and detect every face of ``dataset`` (cached; see the module doc).

    Raises:
        DatasetError: naming every image that does not decode, or saying that MTCNN finds
            no face in any REAL image; nothing is cached then.

    """
    names = [e.name for e in dataset.entries]
    folder = Path(cache) / f"{_source_key(dataset, size, repository)}-{size}"
    found = _load(folder, names)
    if found is not None:
        logger.info("face crops from the cache %s", folder)
        return found
    labels = {e.name: e.label for e in dataset.entries}
    position = {name: i for i, name in enumerate(names)}
    crops = np.zeros((len(names), size, size, 3), np.uint8)
    landmarks = np.full((len(names), 5, 2), np.nan, np.float32)
    detector = CropDetector(repository)
    hashes: dict[str, str] = {}
    problems: list[Problem] = []
    pending: list[tuple[int, np.ndarray]] = []
    detections: list[CropDetections] = []

    def flush() -> None:
        if not pending:
            return
        stored = {p[1].shape for p in pending}
        for shape in stored:  # the detector batches crops of one size
            group = [(i, c) for i, c in pending if c.shape == shape]
            found_here = detector.detect(np.stack([c for _, c in group]))
            detections.append(found_here.scaled(1.0 / shape[0]))  # unit-side crop
            scale = size / shape[0]
            for row, (i, _) in enumerate(group):
                landmarks[i] = found_here.landmarks[row] * scale
        pending.clear()

    for name, data in image_bytes(dataset, names):
        hashes[name] = hashlib.sha256(data).hexdigest()
        native = decode_face(data, None)
        image = decode_face(data, size)
        if native is None or image is None:
            ref = dataset.images[name]
            where = f"{ref.shard.name}:{ref.name}" if ref.shard else ref.name
            problems.append(Problem(where, f"image of {name} does not decode (corrupt?)"))
            continue
        crops[position[name]] = image
        if labels[name] == "REAL":
            pending.append((position[name], native))
            if len(pending) >= _DETECT_CHUNK:
                flush()
        if on_image is not None:
            on_image()
    if problems:
        raise DatasetError(dataset.root, problems)
    flush()
    try:
        geometry = _geometry(detections)
    except ValueError as exc:  # no face in any REAL crop: not face crops, or not these
        reals = sum(label == "REAL" for label in labels.values())
        why = (
            f"MTCNN finds no face in any of its {reals} REAL images, so their crop framing "
            "cannot be measured: are they face crops?"
        )
        raise DatasetError(dataset.root, [Problem(METADATA_CSV, why)]) from exc
    content = content_sha256({**hashes, METADATA_CSV: file_sha256(dataset.root / METADATA_CSV)})
    _store(folder, names, crops, landmarks, content, hashes, geometry)
    return PreparedFaces(names, crops, landmarks, content, hashes, geometry)


def _geometry(detections: list[CropDetections]) -> CropGeometry:
    """Geometry over every detected REAL crop (detections in unit-side crop coordinates)."""
    boxes = np.concatenate([d.boxes for d in detections])
    scores = np.concatenate([d.scores for d in detections])
    marks = np.concatenate([d.landmarks for d in detections])
    return measure_geometry(CropDetections(boxes, scores, marks), 1.0)


def _store(
    folder: Path,
    names: list[str],
    crops: np.ndarray,
    landmarks: np.ndarray,
    content: str,
    hashes: dict[str, str],
    geometry: CropGeometry,
) -> None:
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "crops.npy", crops)
    np.save(tmp / "landmarks.npy", landmarks)
    meta = {
        "names": names,
        "content_hash": content,
        "image_sha256": hashes,
        "geometry": geometry.to_json(),
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
