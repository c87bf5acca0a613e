"""Calibrate the served crop framing so served crops look like the training data's crops.

``fakescope train`` measures where our MTCNN finds the face *inside* the data's crops
(:func:`~.crop_geometry.measure_geometry`). Those crops cut the face, and MTCNN finds a bigger
box in a crop that cuts the face than in the whole frame. So cutting served crops with the
measured margin around boxes found in *whole frames* frames faces more tightly than the data
does (the model card shows both framings, from the calibration record).

The fix measures served crops the way the data was measured. On frames of real videos,
:func:`calibrate_framing` searches the margin and centre shift whose crops, run through our
MTCNN again, give the data's geometry (median margin and shift): a few Newton steps on
a finite-difference Jacobian, since each parameter moves mostly its own measured value. The
frames should resemble the data (DFDC-like video, faces of a similar size) and must not be
the videos the result is then tested on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.video import sample_frames
from fakescope.export.crop_geometry import CropDetector, CropGeometry, measure_geometry
from fakescope.pipeline.crops import crop_faces
from fakescope.pipeline.mtcnn import detect_faces
from fakescope.training.dataset import file_sha256

__all__ = ["FramingCalibration", "FramingFrames", "calibrate_framing", "load_framing_frames"]

logger = logging.getLogger(__name__)

#: Largest |data - served| accepted on each re-measured median (margin, x and y shift).
FRAMING_TOLERANCE = 0.02
#: Step of the finite differences that estimate how served framing moves the measurement.
_PROBE_STEP = 0.05
_MAX_STEPS = 8


@dataclass(frozen=True)
class FramingFrames:
    """Frames of one video and the faces the served detector finds in them."""

    source: str  #: the video, as given
    sha256: str  #: of the video file
    frames: np.ndarray  #: UINT8 ``[N, H, W, 3]``
    face_boxes: np.ndarray  #: FP32 ``[F, 5]``: frame index, x1, y1, x2, y2


@dataclass(frozen=True)
class FramingCalibration:
    """Served framing whose re-measured geometry matches the data's."""

    face_margin: float
    face_shift: tuple[float, float]
    data: tuple[float, float, float]  #: the data's median margin, x shift, y shift
    served: tuple[float, float, float]  #: the same, re-measured on the calibrated crops
    faces: int  #: crops measured
    videos: list[dict[str, str]]  #: ``{"video", "sha256"}`` of the frames used
    steps: int  #: framings tried

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def load_framing_frames(
    videos: Sequence[Path], detector: CropDetector, num_frames: int = DEFAULT_NUM_FRAMES
) -> list[FramingFrames]:
    """Sample each video as ``fakescope analyze`` does and find its faces.

    Raises ``ValueError`` when no face is found in any of them.
    """
    found: list[FramingFrames] = []
    for video in videos:
        frames = sample_frames(video, num_frames, DEFAULT_MAX_SIDE).frames
        faces = detect_faces(frames, detector.nets, detector.params)
        boxes = np.concatenate(
            [faces.frame_index[:, None].astype(np.float32), faces.boxes[:, :4]], axis=1
        )
        logger.info("framing: %d faces in %d frames of %s", len(boxes), len(frames), video)
        found.append(FramingFrames(str(video), file_sha256(Path(video)), frames, boxes))
    if not any(len(f.face_boxes) for f in found):
        raise ValueError("no face found in the framing videos: nothing to calibrate on")
    return found


def _measure(
    frames: Sequence[FramingFrames], framing: np.ndarray, size: int, detector: CropDetector
) -> tuple[np.ndarray, CropGeometry]:
    """Median (margin, x shift, y shift) our MTCNN re-finds in crops cut with ``framing``."""
    margin, shift = float(framing[0]), (float(framing[1]), float(framing[2]))
    crops = np.concatenate(
        [
            crop_faces(f.frames, f.face_boxes, size=size, margin=margin, shift=shift)
            for f in frames
            if len(f.face_boxes)
        ]
    )
    geometry = measure_geometry(detector.detect(crops).scaled(1.0 / size), 1.0)
    values = np.array([geometry.face_margin, *geometry.face_shift], dtype=np.float64)
    return values, geometry


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    """(margin, x shift, y shift) as plain floats."""
    return float(values[0]), float(values[1]), float(values[2])


def calibrate_framing(
    frames: Sequence[FramingFrames], data: CropGeometry, size: int, detector: CropDetector
) -> FramingCalibration:
    """Find the served margin and shift that reproduce ``data`` (see the module doc).

    ``size`` is the served crop size (the classifier's input). Raises ``ValueError`` when no
    framing within :data:`FRAMING_TOLERANCE` is found.
    """
    target = np.array([data.face_margin, *data.face_shift], dtype=np.float64)
    framing = target.copy()
    measured, _ = _measure(frames, framing, size, detector)
    jacobian = np.empty((3, 3))
    for i in range(3):
        probe = framing.copy()
        probe[i] += _PROBE_STEP
        jacobian[:, i] = (_measure(frames, probe, size, detector)[0] - measured) / _PROBE_STEP
    steps = 4
    best = (float(np.max(np.abs(measured - target))), framing.copy(), measured)
    while best[0] > FRAMING_TOLERANCE / 2 and steps < 4 + _MAX_STEPS:
        framing = framing + np.linalg.solve(jacobian, target - measured)
        measured, _ = _measure(frames, framing, size, detector)
        steps += 1
        error = float(np.max(np.abs(measured - target)))
        logger.info("framing %s re-measured %s (data %s)", framing.round(4), measured, target)
        if error < best[0]:
            best = (error, framing.copy(), measured)
    error, framing, measured = best
    if error > FRAMING_TOLERANCE:
        raise ValueError(
            f"no served framing reproduces the data's crop geometry within {FRAMING_TOLERANCE}: "
            f"best {framing.round(4).tolist()} re-measures {measured.round(4).tolist()}, "
            f"data {target.round(4).tolist()}"
        )
    return FramingCalibration(
        face_margin=round(float(framing[0]), 4),
        face_shift=(round(float(framing[1]), 4), round(float(framing[2]), 4)),
        data=_triple(target),
        served=_triple(measured.round(4)),
        faces=int(sum(len(f.face_boxes) for f in frames)),
        videos=[{"video": f.source, "sha256": f.sha256} for f in frames],
        steps=steps,
    )
