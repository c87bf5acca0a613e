"""Face thumbnails: small JPEG crops of the faces the server found, cut from the sampled frames.

``Verdict.face_boxes`` are in the original video's pixels; the frames that were sent are the
sampled (possibly downscaled) ones, so boxes are divided by ``SampledFrames.scale`` first.
Each crop gets a margin around the box, is clipped to the frame and scaled so its long side is
``size`` pixels. At most ``limit`` faces are kept, highest fake score first (ties: the order of
the verdict).

Given the served classifier's framing, each thumbnail also carries the classifier's input for
that face (:func:`classifier_crop_png`), which the heatmaps score again on request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from fakescope.pipeline.crops import crop_faces

if TYPE_CHECKING:
    from fakescope.client.frames import SampledFrames
    from fakescope.client.triton import ClassifierInput

__all__ = ["FaceThumbnail", "classifier_crop_png", "face_thumbnails"]

#: Fraction of the box's size added on each side.
MARGIN = 0.2
JPEG_QUALITY = 85


@dataclass(frozen=True)
class FaceThumbnail:
    """One face: where and when it was, its scores, the JPEG bytes, the classifier's input.

    ``classifier_crop`` is the PNG of :func:`classifier_crop_png` (``None`` without a framing)
    and ``model_version`` the classifier version it was framed for.
    """

    position: int
    frame_index: int
    timestamp: float
    fake_score: float | None
    detection_score: float | None
    box: list[float]
    jpeg: bytes
    classifier_crop: bytes | None = None
    model_version: str | None = None


def _sort_key(item: tuple[int, dict[str, Any]]) -> tuple[float, int]:
    index, face = item
    score = face.get("fake_score")
    return (-(score if score is not None and math.isfinite(score) else -1.0), index)


def classifier_crop_png(
    frame: NDArray[np.uint8], box: tuple[float, float, float, float], framing: ClassifierInput
) -> bytes:
    """Return the classifier's input for the face at ``box`` (sent-frame pixels) as a PNG.

    The thumbnail is not that input: it has a 20 % margin, keeps the box's aspect, is at most
    ``size`` pixels and JPEG-compressed, while the classifier saw a square crop framed by the
    served ``face_margin`` and ``face_shift``, cut from the full-resolution sent frame and
    resized to the input size. The video is deleted once analysed, so the crop cannot be cut
    later: it is cut here, from the same frames with the same code as ``face_detector``
    (:func:`fakescope.pipeline.crops.crop_faces`) and the served framing, and kept lossless,
    so that a heatmap scores exactly what the verdict scored.
    """
    boxes = np.array([[0.0, *box]], dtype=np.float32)  # FACE_BOXES rows are float32, as served
    crop = crop_faces(
        frame[None],
        boxes,
        size=framing.input_size,
        margin=framing.face_margin,
        shift=framing.face_shift,
    )[0]
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("OpenCV could not encode the face crop as PNG")
    return encoded.tobytes()


def face_thumbnails(
    sampled: SampledFrames,
    face_boxes: list[dict[str, Any]],
    *,
    limit: int,
    size: int = 128,
    framing: ClassifierInput | None = None,
) -> list[FaceThumbnail]:
    """Crop up to ``limit`` faces from ``sampled.frames`` (boxes in original-video pixels).

    With ``framing`` (the served classifier's), each thumbnail also carries the classifier's
    input for its face (:func:`classifier_crop_png`).
    """
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
        classifier_crop = (
            None
            if framing is None
            else classifier_crop_png(frames[frame_index], (x1, y1, x2, y2), framing)
        )
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
                classifier_crop=classifier_crop,
                model_version=None if framing is None else framing.version,
            )
        )
    return out
