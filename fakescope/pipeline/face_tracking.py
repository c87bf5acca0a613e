"""Find a face of one frame again in another frame, by template matching.

Detection on keyframes (:mod:`fakescope.pipeline.keyframes`) guesses where a face is in the
frames between keyframes by interpolating its keyframe boxes linearly. A face that moves along
a curve, or faster than a face width between samples, is missed by that guess, and its frame
would be searched again with the cascade's first two stages. Before that, the face is
*followed*: its picture in the keyframe it was seen in is looked for in the whole frame, by
normalised cross-correlation on grey frames shrunk so that the face is a few pixels wide
(``template_side``: the served detector's ``follow_template_side``), and the best match
becomes the new guess, which O-Net verifies as it verifies the interpolated ones. Far cheaper
than a pyramid search; a face that turned or changed size beyond recognition is not found, and
its frame is searched as before.

Pure OpenCV and numpy: no nets.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["TEMPLATE_SIDE", "follow_faces"]

#: The face's side, in pixels, at which it is matched, where the caller does not choose (the
#: served detector does: its ``follow_template_side``). The whole frame is searched, so the
#: match's cost grows with the square of this (shrinking the frame costs about the same at
#: any side); at 16 px the eyes, nose and mouth are still a few pixels apart, and one step of
#: the match (1/16 of the face) is well inside what O-Net's box regression corrects. Other
#: sides, faces kept and CPU: ``python -m fakescope.benchmarks.follow_template``.
TEMPLATE_SIDE = 16


def follow_faces(
    frames: NDArray[np.uint8],
    source_frame: NDArray[np.int64],
    source_boxes: NDArray[np.float32],
    target_frame: NDArray[np.int64],
    template_side: int = TEMPLATE_SIDE,
) -> NDArray[np.float32]:
    """Find each face of ``source_boxes`` again in its target frame.

    Args:
        frames: uint8 RGB ``[N, H, W, 3]`` frames the boxes are in.
        source_frame: ``[P]`` the frame each face was seen in.
        source_boxes: ``[P, >=4]`` its box there (x1, y1, x2, y2).
        target_frame: ``[P]`` the frame to find it in.
        template_side: the face's side, in pixels, at which it is matched.

    Returns:
        ``[P, 4]`` float32: each source box moved to where its picture matches the target
        frame best; the source box unmoved when it holds no pixels to match (outside the
        frame, or degenerate).

    """
    grey: dict[int, NDArray[np.uint8]] = {}

    def grey_frame(index: int) -> NDArray[np.uint8]:
        if index not in grey:
            grey[index] = cv2.cvtColor(frames[index], cv2.COLOR_RGB2GRAY)
        return grey[index]

    out = source_boxes[:, :4].astype(np.float32, copy=True)
    for row in range(len(source_boxes)):
        moved = _follow_one(
            grey_frame(int(source_frame[row])),
            grey_frame(int(target_frame[row])),
            source_boxes[row, :4].astype(np.float64),
            template_side,
        )
        if moved is not None:
            out[row] = moved
    return out


def _follow_one(
    source: NDArray[np.uint8],
    target: NDArray[np.uint8],
    box: NDArray[np.float64],
    template_side: int,
) -> NDArray[np.float32] | None:
    """Return the box moved to its best match in ``target`` (None: nothing to match)."""
    height, width = source.shape
    side = max(box[2] - box[0], box[3] - box[1])
    if not side > 0:
        return None
    scale = template_side / side
    # the face's picture: the part of its box inside the frame
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    template = _shrunk(source[y0:y1, x0:x1], scale)
    frame = _shrunk(target, scale)
    if template is None or frame is None:
        return None
    if template.shape[0] > frame.shape[0] or template.shape[1] > frame.shape[1]:
        return None
    scores = cv2.matchTemplate(frame, template, cv2.TM_CCOEFF_NORMED)
    # a flat template has no correlation (NaN): nothing to follow
    scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
    y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
    # the match's top-left corner back in frame pixels (each axis by its own rounded scale),
    # then the whole box moved by as much as the picture's corner
    dx = x * width / frame.shape[1] - x0
    dy = y * height / frame.shape[0] - y0
    return np.array([box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy], np.float32)


def _shrunk(image: NDArray[np.uint8], scale: float) -> NDArray[np.uint8] | None:
    """``image`` resized by ``scale`` (area interpolation); None when it would be empty."""
    if image.size == 0:
        return None
    w = round(image.shape[1] * scale)
    h = round(image.shape[0] * scale)
    if w < 1 or h < 1:
        return None
    # OpenCV's stubs type every result as MatLike: that of a uint8 image is uint8
    return cast("NDArray[np.uint8]", cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
