"""Face thumbnails: small JPEG crops of the faces the server found, cut from the sampled frames.

``Verdict.face_boxes`` are in the original video's pixels; the frames that were sent are the
sampled (possibly downscaled) ones, so boxes are divided by ``SampledFrames.scale`` first.
Each crop gets a margin around the box, is clipped to the frame and scaled so its long side is
``size`` pixels. At most ``limit`` faces are kept, highest fake score first (ties: the order of
the verdict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from fakescope.client.frames import SampledFrames

__all__ = ["FaceThumbnail", "face_thumbnails"]

#: Fraction of the box's size added on each side.
MARGIN = 0.2
JPEG_QUALITY = 85


@dataclass(frozen=True)
class FaceThumbnail:
    """One face: where and when it was, its scores, and the JPEG bytes."""

    position: int
    frame_index: int
    timestamp: float
    fake_score: float | None
    detection_score: float | None
    box: list[float]
    jpeg: bytes


def _sort_key(item: tuple[int, dict[str, Any]]) -> tuple[float, int]:
    index, face = item
    score = face.get("fake_score")
    return (-(score if score is not None and math.isfinite(score) else -1.0), index)


def face_thumbnails(
    sampled: SampledFrames,
    face_boxes: list[dict[str, Any]],
    *,
    limit: int,
    size: int = 128,
) -> list[FaceThumbnail]:
    """Crop up to ``limit`` faces from ``sampled.frames`` (boxes in original-video pixels)."""
    sx, sy = sampled.scale
    frames = sampled.frames
    n, h, w = frames.shape[:3]
    out: list[FaceThumbnail] = []
    for _index, face in sorted(enumerate(face_boxes), key=_sort_key)[:limit]:
        frame_index = int(face["frame_index"])
        if not 0 <= frame_index < n:
            continue
        x1, y1, x2, y2 = (float(v) for v in face["box"])
        x1, x2, y1, y2 = x1 / sx, x2 / sx, y1 / sy, y2 / sy
        mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
        left, top = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
        right, bottom = min(w, math.ceil(x2 + mx)), min(h, math.ceil(y2 + my))
        if right - left < 2 or bottom - top < 2:
            continue
        crop = np.ascontiguousarray(frames[frame_index, top:bottom, left:right])
        scale = size / max(crop.shape[:2])
        if scale < 1:
            crop = cv2.resize(
                crop,
                (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                interpolation=cv2.INTER_AREA,
            )
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        if not ok:
            continue
        out.append(
            FaceThumbnail(
                position=len(out),
                frame_index=frame_index,
                timestamp=float(face["timestamp"]),
                fake_score=face.get("fake_score"),
                detection_score=face.get("detection_score"),
                box=[float(v) for v in face["box"]],
                jpeg=encoded.tobytes(),
            )
        )
    return out
