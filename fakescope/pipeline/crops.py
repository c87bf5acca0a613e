"""Face crops: square, margin around the detected box, zero padding outside the frame."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray


def crop_window(
    box: NDArray[np.floating[Any]], margin: float, shift: tuple[float, float]
) -> tuple[int, int, int]:
    """Return ``(left, top, side)`` in frame pixels of the crop around ``x1, y1, x2, y2``.

    The square has side ``max(w, h) * (1 + 2 * margin)`` (isotropic, so faces are never
    stretched; a negative margin cuts inside the box) and is centred on the box centre moved
    by ``shift * max(w, h)``: the framing of the classifier's training crops
    (``fakescope.export.crop_geometry`` measures it).
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    longest = max(x2 - x1, y2 - y1)
    side = longest * (1.0 + 2.0 * margin)
    if not side > 0:
        raise ValueError("empty box (or a margin of -0.5 or less)")
    cx = (x1 + x2) / 2.0 + shift[0] * longest
    cy = (y1 + y2) / 2.0 + shift[1] * longest
    return round(cx - side / 2.0), round(cy - side / 2.0), max(1, round(side))


def crop_faces(
    frames: NDArray[np.uint8],
    face_boxes: NDArray[np.float32],
    *,
    size: int,
    margin: float,
    shift: tuple[float, float] = (0.0, 0.0),
) -> NDArray[np.uint8]:
    """Cut one ``size``×``size`` RGB crop per face.

    ``frames`` is UINT8 ``[N, H, W, 3]``; ``face_boxes`` is FP32 ``[F, >=5]`` with rows
    ``frame_index, x1, y1, x2, y2, ...`` in frame pixels. Each crop is the square of
    :func:`crop_window`, zero-padded where it leaves the frame, then resized to ``size``.
    Returns UINT8 ``[F, S, S, 3]``.
    """
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
    if face_boxes.ndim != 2 or face_boxes.shape[1] < 5:
        raise ValueError(f"face boxes must be [F, >=5], got {face_boxes.shape}")
    crops = np.zeros((face_boxes.shape[0], size, size, 3), dtype=np.uint8)
    n, height, width = frames.shape[:3]
    for i, row in enumerate(face_boxes[:, :5].astype(np.float64)):
        index = row[0]
        if not 0 <= index < n:
            raise ValueError(f"face {i} refers to frame {int(index)} of {n}")
        try:
            left, top, side_px = crop_window(row[1:5], margin, shift)
        except ValueError as exc:
            raise ValueError(f"face {i}: {exc}") from None
        square = np.zeros((side_px, side_px, 3), dtype=np.uint8)
        sx0, sy0 = max(left, 0), max(top, 0)
        sx1, sy1 = min(left + side_px, width), min(top + side_px, height)
        if sx1 > sx0 and sy1 > sy0:
            square[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = frames[
                int(index), sy0:sy1, sx0:sx1
            ]
        interpolation = cv2.INTER_AREA if side_px > size else cv2.INTER_LINEAR
        crops[i] = cv2.resize(square, (size, size), interpolation=interpolation)
    return crops
