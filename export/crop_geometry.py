"""Where our own MTCNN finds the face inside face crops cut by someone else's detector.

A classifier trained on ``dfdc_faces`` has seen faces framed the way *that* data's detector
framed them. The server cuts its crops around *our* MTCNN boxes (``face_detector``), so the two
framings must agree. :func:`measure_geometry` turns our boxes inside the data's crops into
the crop geometry ``face_detector`` reproduces:

* ``face_margin``: the crop's side is ``max(box w, box h) * (1 + 2 * margin)``;
* ``face_shift``: the crop's centre is the box centre plus ``shift * max(box w, box h)``
  (x, y), since another detector need not centre the face where MTCNN does.

:class:`CropDetector` runs the served detector on the data's crops; the same detections
give the five landmarks that self-blending needs for each REAL face.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets, detect_faces
from fakescope.serving.model_config import detector_params

__all__ = ["CropDetections", "CropDetector", "CropGeometry", "crop_framing", "measure_geometry"]

logger = logging.getLogger(__name__)

#: Crops per detector call (all crops of a set have one size, so they batch).
DETECT_BATCH = 64


@dataclass(frozen=True)
class CropDetections:
    """The largest face MTCNN found in each crop (NaN rows where it found none)."""

    boxes: np.ndarray  #: FP32 ``[N, 4]`` x1, y1, x2, y2 in crop pixels
    scores: np.ndarray  #: FP32 ``[N]``
    landmarks: np.ndarray  #: FP32 ``[N, 5, 2]`` in crop pixels

    @property
    def found(self) -> np.ndarray:
        """Boolean ``[N]``: whether a face was found."""
        return np.isfinite(self.scores)

    def scaled(self, factor: float) -> CropDetections:
        """Return the same detections in a crop resized by ``factor``."""
        return CropDetections(self.boxes * factor, self.scores, self.landmarks * factor)


class CropDetector:
    """The served MTCNN (the repository's nets and ``face_detector`` parameters) on crops."""

    def __init__(self, repository: Path) -> None:
        self.nets = OnnxRuntimeMtcnnNets(repository)
        self.params = detector_params(repository, video=False)

    def detect(self, crops: np.ndarray) -> CropDetections:
        """Detect the largest face of each UINT8 crop ``[N, S, S, 3]`` (one face per crop)."""
        n = crops.shape[0]
        boxes = np.full((n, 4), np.nan, np.float32)
        scores = np.full((n,), np.nan, np.float32)
        landmarks = np.full((n, 5, 2), np.nan, np.float32)
        for start in range(0, n, DETECT_BATCH):
            batch = crops[start : start + DETECT_BATCH]
            found = detect_faces(batch, self.nets, self.params)
            for i in range(batch.shape[0]):
                rows = np.flatnonzero(found.frame_index == i)
                if rows.size == 0:
                    continue
                sides = np.max(found.boxes[rows, 2:4] - found.boxes[rows, 0:2], axis=1)
                best = rows[int(np.argmax(sides))]
                boxes[start + i] = found.boxes[best]
                scores[start + i] = found.scores[best]
                landmarks[start + i] = found.landmarks[best]
        return CropDetections(boxes, scores, landmarks)


@dataclass(frozen=True)
class CropGeometry:
    """How the data's crops frame our detector's face box (medians, with spreads)."""

    crops: int  #: crops measured
    faces_found: int  #: crops in which MTCNN found a face
    face_margin: float  #: median margin: crop side = max(w, h) * (1 + 2 * margin)
    face_shift: tuple[float, float]  #: median (crop centre - box centre) / max(w, h)
    margin_iqr: tuple[float, float]  #: 25th and 75th percentiles of the margin
    shift_iqr: tuple[tuple[float, float], tuple[float, float]]  #: same for x and y
    box_aspect: float  #: median box height / width (MTCNN boxes are not square)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def crop_framing(boxes: np.ndarray, crop_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Per box: the margin and the (x, y) shift of a ``crop_size`` square crop around it."""
    side = np.max(boxes[:, 2:4] - boxes[:, 0:2], axis=1)
    margin = (crop_size / side - 1.0) / 2.0
    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2.0
    shift = (crop_size / 2.0 - centre) / side[:, None]
    return margin, shift


def measure_geometry(detections: CropDetections, crop_size: float) -> CropGeometry:
    """Summarise where the face boxes sit in ``crop_size`` px crops (see the module doc)."""
    found = detections.found
    if not np.any(found):
        raise ValueError("MTCNN found no face in any crop: the geometry cannot be measured")
    boxes = detections.boxes[found].astype(np.float64)
    margin, shift = crop_framing(boxes, crop_size)
    aspect = (boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0])

    def q(values: np.ndarray) -> tuple[float, float]:
        lo, hi = np.percentile(values, [25, 75])
        return round(float(lo), 4), round(float(hi), 4)

    return CropGeometry(
        crops=int(found.size),
        faces_found=int(found.sum()),
        face_margin=round(float(np.median(margin)), 4),
        face_shift=(
            round(float(np.median(shift[:, 0])), 4),
            round(float(np.median(shift[:, 1])), 4),
        ),
        margin_iqr=q(margin),
        shift_iqr=(q(shift[:, 0]), q(shift[:, 1])),
        box_aspect=round(float(np.median(aspect)), 4),
    )
