"""MTCNN face detection in numpy + OpenCV, with pluggable networks.

This is a re-implementation of facenet-pytorch 2.6.0's ``detect_face`` / ``MTCNN.detect``
cascade (P-Net on an image pyramid, R-Net on 24x24 crops, O-Net on 48x48 crops) that never
imports torch. The three networks are called through the :class:`MtcnnNets` protocol, so the
same cascade runs in-process with ONNX Runtime (:class:`OnnxRuntimeMtcnnNets`) and inside a
Triton python-backend model that calls ``mtcnn_pnet`` / ``mtcnn_rnet`` / ``mtcnn_onet`` through
BLS.

Fidelity notes (see also :func:`detect_faces`):

* Resampling reproduces ``torch.nn.functional.interpolate(mode="area")`` (adaptive average
  pooling: output cell ``i`` averages input rows ``floor(i*in/out)`` .. ``ceil((i+1)*in/out)``)
  exactly, with integral images from ``cv2.integral``; this holds for down- *and* up-sampling
  (crops smaller than 24/48 px), where ``cv2.resize(INTER_AREA)`` would differ.
* IoU NMS uses ``cv2.dnn.NMSBoxesBatched`` (same IoU definition and ``> threshold`` rule as
  torchvision's ``batched_nms``); the final "Min" NMS is numpy.
* Per-frame separation in NMS is exact here; facenet's coordinate-offset trick can let boxes
  with negative coordinates of neighbouring frames suppress each other (rare).
* Crops that fall entirely outside the frame are dropped; facenet skips their crop but keeps
  the box, which misaligns its boxes and network outputs (a facenet bug, rare).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from fakescope.contract import (
    MTCNN_MODELS,
    ONET_INPUT,
    ONET_LANDMARKS,
    ONET_MODEL,
    ONET_PROBABILITY,
    ONET_REGRESSION,
    PNET_INPUT,
    PNET_MODEL,
    PNET_PROBABILITY,
    PNET_REGRESSION,
    RNET_INPUT,
    RNET_MODEL,
    RNET_PROBABILITY,
    RNET_REGRESSION,
)
from fakescope.pipeline.face_tracking import TEMPLATE_SIDE, follow_faces
from fakescope.pipeline.keyframes import (
    CARRY_MIN_SCORE,
    Proposals,
    SearchWindows,
    keyframe_indices,
    propose_boxes,
    search_windows,
)
from fakescope.pipeline.onnx_session import cpu_session_options

__all__ = [
    "FaceDetections",
    "MtcnnNets",
    "MtcnnParams",
    "OnnxRuntimeMtcnnNets",
    "detect_faces",
    "find_mtcnn_model",
]

logger = logging.getLogger(__name__)

#: The normalisation the MTCNN nets expect: ``(pixel - PIXEL_MEAN) * PIXEL_SCALE``.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125

_RNET_SIZE = 24
_ONET_SIZE = 48
_PNET_STRIDE = 2
_PNET_CELL = 12
#: With ``max_faces_per_frame``, O-Net scores at most this many candidates per face kept (the
#: largest R-Net passes of the frame).
ONET_CANDIDATES_PER_FACE = 4


# --------------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------------
class MtcnnNets(Protocol):
    """The three MTCNN networks; inputs are FP32 NCHW RGB, already normalised.

    Normalised means ``(pixel - 127.5) * 0.0078125``. Outputs are numpy arrays in the layout of
    the ONNX models (see ``fakescope.contract``).
    """

    def pnet(self, batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Run P-Net on ``[B, 3, H, W]``; return (regression ``[B,4,h,w]``, prob ``[B,2,h,w]``)."""
        ...

    def rnet(self, batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Run R-Net on ``[B, 3, 24, 24]``; return (regression ``[B, 4]``, prob ``[B, 2]``)."""
        ...

    def onet(
        self, batch: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
        """Run O-Net on ``[B, 3, 48, 48]``; return (regression, landmarks ``[B, 10]``, prob)."""
        ...


@dataclass(frozen=True)
class MtcnnParams:
    """Detection parameters (defaults are facenet-pytorch's ``MTCNN()`` defaults).

    Attributes:
        min_face_size: smallest face searched for, in pixels of the image MTCNN sees (that is,
            after the ``max_side`` downscale, when one applies).
        thresholds: score thresholds of P-Net, R-Net and O-Net.
        factor: scale step of the image pyramid.
        max_side: when set, frames whose longer side exceeds it are downscaled (``INTER_AREA``)
            so that the longer side is ``max_side`` before detection; boxes and landmarks are
            mapped back to the input frame's pixels. ``None`` detects at full resolution.
        pnet_batch_frames: how many frames go through the pyramid + P-Net together. ``None``
            (facenet's behaviour) sends all frames of a call in one P-Net batch per pyramid
            level; a number bounds the working memory (about 20 bytes per pixel per frame in
            flight). Results do not depend on it.
        keyframe_stride: 1 (facenet's behaviour) runs the whole cascade on every frame. ``k > 1``
            runs it on every ``k``-th frame and the last; the frames between get the boxes of
            the faces around them (:mod:`fakescope.pipeline.keyframes`), each verified and
            refined by O-Net on its own frame, and a frame where one fails is detected in full,
            as is a frame neither keyframe gives a face to carry. A face that enters a frame
            between keyframes beside faces carried there is not looked for.
        follow_template_side: with ``keyframe_stride > 1``, the side in pixels at which a lost
            face is matched when it is followed from its keyframe
            (:func:`fakescope.pipeline.face_tracking.follow_faces`).
        max_faces_per_frame: when set, only the largest faces of each frame are kept, this
            many at most, in every pass of the cascade (what keyframes carry included).
            ``None`` (facenet's behaviour) keeps every face: a frame tiled with small faces
            then costs a crop and a classifier call each.

    """

    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    max_side: int | None = None
    pnet_batch_frames: int | None = None
    keyframe_stride: int = 1
    follow_template_side: int = TEMPLATE_SIDE
    max_faces_per_frame: int | None = None

    def __post_init__(self) -> None:
        """Validate the parameters."""
        if self.min_face_size <= 0:
            raise ValueError(f"min_face_size must be > 0, got {self.min_face_size}")
        if len(self.thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must be 3 values in [0, 1], got {self.thresholds!r}")
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {self.factor}")
        if self.max_side is not None and self.max_side < _PNET_CELL:
            raise ValueError(f"max_side must be None or >= {_PNET_CELL}, got {self.max_side}")
        if self.keyframe_stride < 1:
            raise ValueError(f"keyframe_stride must be >= 1, got {self.keyframe_stride}")
        if self.follow_template_side < 1:
            raise ValueError(f"follow_template_side must be >= 1, got {self.follow_template_side}")
        if self.max_faces_per_frame is not None and self.max_faces_per_frame < 1:
            raise ValueError(
                f"max_faces_per_frame must be None or >= 1, got {self.max_faces_per_frame}"
            )
        if self.pnet_batch_frames is not None and self.pnet_batch_frames < 1:
            raise ValueError(
                f"pnet_batch_frames must be None or >= 1, got {self.pnet_batch_frames}"
            )
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))


@dataclass(frozen=True)
class FaceDetections:
    """Faces found in a batch of frames, as flat arrays (one row per face).

    Rows are grouped by frame (ascending ``frame_index``); within a frame the largest box comes
    first, as in ``MTCNN.detect`` with its default ``select_largest=True``.

    Attributes:
        frame_index: int32 ``[F]``, index of the frame in the input batch.
        boxes: float32 ``[F, 4]``, ``x1, y1, x2, y2`` in the input frame's pixels (may extend
            slightly beyond the frame, as facenet's boxes do).
        scores: float32 ``[F]``, O-Net face probability.
        landmarks: float32 ``[F, 5, 2]``, ``(x, y)`` of left eye, right eye, nose, left and
            right mouth corner, in the input frame's pixels.

    """

    frame_index: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0,), np.int32))
    boxes: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0,), np.float32))
    landmarks: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        """Return the number of faces."""
        return int(self.frame_index.shape[0])

    def for_frame(self, index: int) -> FaceDetections:
        """Return the faces of one frame."""
        keep = self.frame_index == index
        return FaceDetections(
            self.frame_index[keep], self.boxes[keep], self.scores[keep], self.landmarks[keep]
        )


# --------------------------------------------------------------------------------------------
# ONNX Runtime implementation of the nets
# --------------------------------------------------------------------------------------------
def find_mtcnn_model(model_dir: Path, model_name: str) -> Path:
    """Locate ``<model_name>.onnx`` in a flat folder or a Triton repository layout.

    Looks for ``model_dir/<model_name>.onnx`` first (what ``export_mtcnn`` writes), then
    ``model_dir/<model_name>/1/model.onnx`` (a Triton model repository).
    """
    candidates = [model_dir / f"{model_name}.onnx", model_dir / model_name / "1" / "model.onnx"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no ONNX model for {model_name!r}: looked for "
        + ", ".join(str(c) for c in candidates)
        + " (export them with fakescope.export.mtcnn_onnx.export_mtcnn)"
    )


class OnnxRuntimeMtcnnNets:
    """:class:`MtcnnNets` backed by ONNX Runtime, one ``InferenceSession`` per net.

    Args:
        model_dir: folder holding ``mtcnn_pnet.onnx``, ``mtcnn_rnet.onnx``, ``mtcnn_onet.onnx``
            (or a Triton repository with ``mtcnn_pnet/1/model.onnx`` etc.).
        max_batch_size: batches larger than this are run in chunks: one size for the three
            nets, or one per net name (0: that net takes any batch whole, as Triton's
            ``max_batch_size: 0`` says).
        providers: ONNX Runtime execution providers; default CPU.
        intra_op_num_threads: ORT intra-op threads; ``None`` keeps ORT's default.

    """

    def __init__(
        self,
        model_dir: Path,
        *,
        max_batch_size: int | Mapping[str, int] = 512,
        providers: Sequence[str] | None = None,
        intra_op_num_threads: int | None = None,
    ) -> None:
        import onnxruntime as ort  # imported here: the cascade itself needs only numpy + cv2

        options = cpu_session_options(intra_op_num_threads)
        chosen = list(providers) if providers is not None else ["CPUExecutionProvider"]
        model_dir = Path(model_dir)
        sessions = {
            name: ort.InferenceSession(
                str(find_mtcnn_model(model_dir, name)), sess_options=options, providers=chosen
            )
            for name in MTCNN_MODELS
        }
        self._use(sessions, max_batch_size)

    @classmethod
    def from_sessions(
        cls, sessions: Mapping[str, Any], *, max_batch_size: int | Mapping[str, int] = 512
    ) -> OnnxRuntimeMtcnnNets:
        """Wrap ONNX Runtime sessions opened elsewhere, one per name of :data:`MTCNN_MODELS`.

        For a caller that finds the model files and session settings itself (the served
        ``face_detector`` reads them from each net's own ``config.pbtxt``).
        """
        nets = cls.__new__(cls)
        nets._use(sessions, max_batch_size)
        return nets

    def _use(self, sessions: Mapping[str, Any], max_batch_size: int | Mapping[str, int]) -> None:
        if set(sessions) != set(MTCNN_MODELS):
            raise ValueError(f"need one session each for {MTCNN_MODELS}, got {sorted(sessions)}")
        if isinstance(max_batch_size, int):
            if max_batch_size < 1:
                raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
            sizes = dict.fromkeys(MTCNN_MODELS, max_batch_size)
        else:
            sizes = dict(max_batch_size)
            if set(sizes) != set(MTCNN_MODELS) or min(sizes.values()) < 0:
                raise ValueError(f"need a max_batch_size >= 0 for each of {MTCNN_MODELS}: {sizes}")
        self.max_batch_sizes = sizes
        self._sessions = dict(sessions)

    def _run(
        self,
        model: str,
        input_name: str,
        outputs: list[str],
        batch: NDArray[np.float32],
        chunk: int,
    ) -> tuple[NDArray[np.float32], ...]:
        session = self._sessions[model]
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        chunk = chunk or max(len(batch), 1)  # 0: the whole batch at once
        parts = [
            session.run(outputs, {input_name: batch[start : start + chunk]})
            for start in range(0, max(len(batch), 1), chunk)
        ]
        if len(parts) == 1:
            return tuple(parts[0])
        return tuple(np.concatenate(arrays, axis=0) for arrays in zip(*parts, strict=True))

    def pnet(self, batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Run P-Net; see :class:`MtcnnNets`."""
        reg, prob = self._run(
            PNET_MODEL,
            PNET_INPUT,
            [PNET_REGRESSION, PNET_PROBABILITY],
            batch,
            self.max_batch_sizes[PNET_MODEL],
        )
        return reg, prob

    def rnet(self, batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Run R-Net; see :class:`MtcnnNets`."""
        reg, prob = self._run(
            RNET_MODEL,
            RNET_INPUT,
            [RNET_REGRESSION, RNET_PROBABILITY],
            batch,
            self.max_batch_sizes[RNET_MODEL],
        )
        return reg, prob

    def onet(
        self, batch: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
        """Run O-Net; see :class:`MtcnnNets`."""
        reg, landmarks, prob = self._run(
            ONET_MODEL,
            ONET_INPUT,
            [ONET_REGRESSION, ONET_LANDMARKS, ONET_PROBABILITY],
            batch,
            self.max_batch_sizes[ONET_MODEL],
        )
        return reg, landmarks, prob


# --------------------------------------------------------------------------------------------
# Resampling: exact torch "area" interpolation (adaptive average pooling) via integral images
# --------------------------------------------------------------------------------------------
#: An integral image: int32, or float64 when int32 could overflow (see :func:`_integral`).
_Integral = NDArray[np.int32] | NDArray[np.float64]


def _pool_bounds(
    in_size: int | NDArray[np.int64], out_size: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Window [start, end) of each output cell of adaptive average pooling.

    ``in_size`` may be a scalar or an array ``[K]``; the result is ``[..., out_size]``.
    """
    in_size = np.asarray(in_size, dtype=np.int64)[..., None]
    i = np.arange(out_size, dtype=np.int64)
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)  # ceil((i + 1) * in / out)
    return start, end


def _integral(image: NDArray[np.uint8]) -> _Integral:
    """Integral image ``[H + 1, W + 1, C]`` of a uint8 image (int32, float64 when huge)."""
    # OpenCV's stubs type every result as MatLike (any numeric dtype); the depth is fixed here.
    if image.shape[0] * image.shape[1] * 255 >= 2**31:
        return cast("NDArray[np.float64]", cv2.integral(image, sdepth=cv2.CV_64F))
    return cast("NDArray[np.int32]", cv2.integral(image))


def _channel_integrals(frame: NDArray[np.uint8]) -> _Integral:
    """Per-channel integral images ``[3, H + 1, W + 1]`` of a uint8 HWC frame."""
    height, width = frame.shape[:2]
    if height * width * 255 >= 2**31:
        # OpenCV's stubs type the planes as MatLike: those of a uint8 frame are uint8, and as
        # large as the frame, so each of their integrals is float64 too.
        planes = cast("Sequence[NDArray[np.uint8]]", cv2.split(frame))
        return cast("NDArray[np.float64]", np.stack([_integral(plane) for plane in planes]))
    out = np.empty((3, height + 1, width + 1), np.int32)
    for channel, plane in enumerate(cv2.split(frame)):
        cv2.integral(plane, out[channel])  # written in place
    return out


def _area_resize_into(integrals: _Integral, out: NDArray[np.float32]) -> None:
    """Resize one frame like ``F.interpolate(mode="area")`` into ``out`` (float32 ``[3, h, w]``).

    ``integrals`` comes from :func:`_channel_integrals`.
    """
    out_h, out_w = out.shape[1:]
    ys, ye = _pool_bounds(integrals.shape[1] - 1, out_h)
    xs, xe = _pool_bounds(integrals.shape[2] - 1, out_w)
    rows = integrals[:, ye] - integrals[:, ys]  # [3, h, W + 1]: row-window sums, cumulative in x
    sums = np.take(rows, xe, axis=2)
    sums -= np.take(rows, xs, axis=2)
    counts = ((ye - ys)[:, None] * (xe - xs)[None, :]).astype(np.float32)
    np.divide(sums, counts, out=out, dtype=np.float32)


def _area_crops(
    integral: _Integral,
    y0: NDArray[np.int64],
    y1: NDArray[np.int64],
    x0: NDArray[np.int64],
    x1: NDArray[np.int64],
    size: int,
) -> NDArray[np.float32]:
    """Crop ``[y0:y1, x0:x1]`` regions and resize each to ``size`` like area interpolation.

    ``integral`` is an HWC integral image (:func:`_integral`); coordinates are relative to it.
    Returns float32 ``[K, size, size, 3]``.
    """
    ys, ye = _pool_bounds(y1 - y0, size)
    xs, xe = _pool_bounds(x1 - x0, size)
    ys, ye = ys + y0[:, None], ye + y0[:, None]
    xs, xe = xs + x0[:, None], xe + x0[:, None]
    row_stride = integral.shape[1]
    flat = integral.reshape(-1, integral.shape[2])  # corner lookups as one take per corner
    top, bottom = (ys * row_stride)[:, :, None], (ye * row_stride)[:, :, None]
    left, right = xs[:, None, :], xe[:, None, :]
    sums = flat.take(bottom + right, axis=0)
    sums -= flat.take(top + right, axis=0)
    sums -= flat.take(bottom + left, axis=0)
    sums += flat.take(top + left, axis=0)
    counts = ((ye - ys)[:, :, None] * (xe - xs)[:, None, :]).astype(np.float32)
    return np.divide(sums, counts[..., None], dtype=np.float32)


def _normalise_(images: NDArray[np.float32]) -> NDArray[np.float32]:
    """Normalise float32 pixels in place: ``(x - 127.5) * 0.0078125`` (facenet's order)."""
    images -= np.float32(PIXEL_MEAN)
    images *= np.float32(PIXEL_SCALE)
    return images


# --------------------------------------------------------------------------------------------
# Box helpers (float32 arithmetic in facenet's order of operations)
# --------------------------------------------------------------------------------------------
def _nms(
    boxes: NDArray[np.float32],
    scores: NDArray[np.float32],
    groups: NDArray[np.int64],
    threshold: float,
) -> NDArray[np.int64]:
    """IoU NMS per group (frame), like torchvision ``batched_nms``; kept indices, best first."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    # Shift every box to non-negative coordinates so OpenCV's per-class offset trick separates
    # the groups exactly (IoU is translation-invariant).
    xywh = boxes[:, :4].astype(np.float64)
    xywh -= min(float(xywh.min()), 0.0)
    xywh[:, 2:] -= xywh[:, :2]
    # OpenCV's generated stubs type these vector<> arguments as Python sequences; the binding
    # takes numpy arrays as they are, and converting to lists would only cost time.
    keep = cv2.dnn.NMSBoxesBatched(
        xywh,  # type: ignore[arg-type]
        scores.astype(np.float32),  # type: ignore[arg-type]
        groups.astype(np.int32),  # type: ignore[arg-type]
        0.0,
        float(threshold),
    )
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def _nms_min_one(
    boxes: NDArray[np.float32], scores: NDArray[np.float32], threshold: float
) -> NDArray[np.int64]:
    """Greedy "Min"-overlap NMS of one frame's boxes, exactly like facenet's ``nms_numpy``."""
    x1, y1, x2, y2 = (np.asarray(boxes[:, i], np.float32) for i in range(4))
    one, zero = np.float32(1), np.float32(0)
    area = (x2 - x1 + one) * (y2 - y1 + one)
    iw = np.maximum(zero, np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1) + one)
    ih = np.maximum(zero, np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1) + one)
    suppresses = iw * ih / np.minimum(area[:, None], area) > threshold
    removed = np.zeros(len(boxes), dtype=bool)
    keep = []
    for i in np.argsort(np.asarray(scores, np.float32))[::-1]:  # sequential by nature
        if not removed[i]:
            keep.append(i)
            removed |= suppresses[i]
    return np.asarray(keep, dtype=np.int64)


def _nms_min(
    boxes: NDArray[np.float32],
    scores: NDArray[np.float32],
    groups: NDArray[np.int64],
    threshold: float,
) -> NDArray[np.int64]:
    """Greedy NMS per group (frame) with facenet's "Min" overlap (``+1`` pixel areas).

    Mirrors facenet's ``nms_numpy`` (float32, ``np.argsort`` order, so ties between equal
    scores, which happen when two boxes give the same integer crop, resolve the same way).
    Returns kept indices.
    """
    keep = [np.zeros((0,), np.int64)]
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        keep.append(members[_nms_min_one(boxes[members], scores[members], threshold)])
    return np.concatenate(keep)


def _rerec(boxes: NDArray[np.float32]) -> NDArray[np.float32]:
    """Make boxes square around their centre (facenet ``rerec``), in place on float32."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * np.float32(0.5) - side * np.float32(0.5)
    boxes[:, 1] = boxes[:, 1] + h * np.float32(0.5) - side * np.float32(0.5)
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _bbreg(boxes: NDArray[np.float32], reg: NDArray[np.float32]) -> NDArray[np.float32]:
    """Apply R-/O-Net box regression (facenet ``bbreg``, ``+1`` widths), in place."""
    w = boxes[:, 2] - boxes[:, 0] + np.float32(1)
    h = boxes[:, 3] - boxes[:, 1] + np.float32(1)
    b1 = boxes[:, 0] + reg[:, 0] * w
    b2 = boxes[:, 1] + reg[:, 1] * h
    b3 = boxes[:, 2] + reg[:, 2] * w
    b4 = boxes[:, 3] + reg[:, 3] * h
    boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3] = b1, b2, b3, b4
    return boxes


def _crop_windows(
    boxes: NDArray[np.float32], width: int, height: int
) -> tuple[
    NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]
]:
    """Integer crop windows ``[y0:y1, x0:x1]`` like facenet's ``pad``, and which are non-empty."""
    coords = np.trunc(boxes[:, :4]).astype(np.int64)
    x = np.maximum(coords[:, 0], 1)
    y = np.maximum(coords[:, 1], 1)
    ex = np.minimum(coords[:, 2], width)
    ey = np.minimum(coords[:, 3], height)
    valid = (ey > y - 1) & (ex > x - 1)
    return y - 1, ey, x - 1, ex, valid


def _crop_batch(
    frames: NDArray[np.uint8], frame_index: NDArray[np.int64], boxes: NDArray[np.float32], size: int
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Crop every box from its frame and area-resize to ``size``.

    Returns (normalised NCHW batch for the valid boxes, boolean mask of valid boxes).
    """
    height, width = frames.shape[1:3]
    y0, y1, x0, x1, valid = _crop_windows(boxes, width, height)
    crops = np.empty((len(boxes), size, size, 3), np.float32)
    for n in np.unique(frame_index[valid]):
        rows = np.flatnonzero(valid & (frame_index == n))
        # integral image of just the region the crops of this frame cover
        top, left = int(y0[rows].min()), int(x0[rows].min())
        bottom, right = int(y1[rows].max()), int(x1[rows].max())
        integral = _integral(np.ascontiguousarray(frames[n, top:bottom, left:right]))
        crops[rows] = _area_crops(
            integral, y0[rows] - top, y1[rows] - top, x0[rows] - left, x1[rows] - left, size
        )
    if not valid.all():
        logger.debug("dropping %d crops outside the frame", int((~valid).sum()))
    batch = np.ascontiguousarray(crops[valid].transpose(0, 3, 1, 2))
    return _normalise_(batch), valid


def pyramid_scales(
    height: int, width: int, min_face: float, factor: float, max_face: float | None = None
) -> list[float]:
    """Return the scales of the image pyramid, exactly as facenet computes them.

    ``max_face`` (not facenet's) drops the levels that only find faces larger than it: P-Net
    sees a face of side ``F`` at scale ``12 / F``, and one more level is kept below that.
    """
    m = 12.0 / min_face
    min_side = min(height, width) * m
    scales = []
    scale = m
    while min_side >= 12:
        scales.append(scale)
        if max_face is not None and 12.0 / scale > max_face:
            break
        scale = scale * factor
        min_side = min_side * factor
    return scales


def _generate_boxes(
    reg: NDArray[np.float32],
    prob: NDArray[np.float32],
    scale: float,
    threshold: float,
    cell_offsets: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """P-Net output -> candidate rows ``[x1, y1, x2, y2, score, r1..r4]`` and frame indices.

    ``cell_offsets`` ``[N, 2]`` (x, y): where each image's first cell sits in the whole level,
    for P-Net run on a slice of the level.
    """
    mask = prob >= np.float32(threshold)
    image_inds, yy, xx = np.nonzero(mask)
    scores = prob[mask]
    regs = reg.transpose(0, 2, 3, 1)[mask]  # [K, 4], same order as np.nonzero
    cells = np.stack([xx, yy], axis=1)
    if cell_offsets is not None:
        cells = cells + cell_offsets[image_inds]
    cells = cells.astype(np.float32)
    scale32 = np.float32(scale)
    q1 = np.floor((np.float32(_PNET_STRIDE) * cells + np.float32(1)) / scale32)
    q2 = np.floor((np.float32(_PNET_STRIDE) * cells + np.float32(_PNET_CELL)) / scale32)
    rows = np.concatenate([q1, q2, scores[:, None], regs], axis=1).astype(np.float32)
    return rows, image_inds.astype(np.int64)


def _validate_frames(frames: NDArray[Any]) -> NDArray[np.uint8]:
    # any dtype: callers outside the type checker may pass anything, and checking is the job
    if not isinstance(frames, np.ndarray):
        raise ValueError(
            f"frames must be a numpy array UINT8 [N, H, W, 3], got {type(frames).__name__}"
        )
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB [N, H, W, 3], got dtype {frames.dtype}")
    if frames.ndim != 4:
        raise ValueError(
            f"frames must have rank 4 [N, H, W, 3], got rank {frames.ndim} shape {frames.shape}"
        )
    if frames.shape[3] != 3:
        raise ValueError(f"frames must have 3 channels (RGB) last, got shape {frames.shape}")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"frames must have a non-empty height and width, got {frames.shape}")
    return np.ascontiguousarray(frames)


def _downscale(
    frames: NDArray[np.uint8], max_side: int | None
) -> tuple[NDArray[np.uint8], float, float]:
    """Downscale frames so the long side is at most ``max_side``; return (frames, sx, sy)."""
    height, width = frames.shape[1:3]
    if max_side is None or max(height, width) <= max_side:
        return frames, 1.0, 1.0
    ratio = max_side / max(height, width)
    new_w = max(1, round(width * ratio))
    new_h = max(1, round(height * ratio))
    small = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_AREA) for f in frames])
    return small, width / new_w, height / new_h


def _empty() -> FaceDetections:
    return FaceDetections()


# --------------------------------------------------------------------------------------------
# The cascade
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Found:
    """Faces in the frames MTCNN sees (after the ``max_side`` downscale); rows unordered."""

    frame_index: NDArray[np.int64]
    boxes: NDArray[np.float32]  # [F, 5]: x1, y1, x2, y2, O-Net score
    landmarks: NDArray[np.float32]  # [F, 5, 2]
    # [F, 4]: the square box O-Net was given for each face, which is what keyframes carry to
    # the frames between: O-Net then sees what the cascade would have shown it there.
    onet_input: NDArray[np.float32]

    @staticmethod
    def empty() -> _Found:
        return _Found(
            np.zeros((0,), np.int64),
            np.zeros((0, 5), np.float32),
            np.zeros((0, 5, 2), np.float32),
            np.zeros((0, 4), np.float32),
        )

    @staticmethod
    def concat(parts: Sequence[_Found]) -> _Found:
        if not parts:
            return _Found.empty()
        return _Found(
            np.concatenate([p.frame_index for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.landmarks for p in parts]),
            np.concatenate([p.onet_input for p in parts]),
        )

    def select(self, keep: NDArray[Any]) -> _Found:
        return _Found(
            self.frame_index[keep], self.boxes[keep], self.landmarks[keep], self.onet_input[keep]
        )

    def largest_per_frame(self, limit: int | None) -> _Found:
        """Keep the ``limit`` largest faces of each frame (every face where ``None``)."""
        keep = _largest_per_frame(self.frame_index, self.boxes, limit)
        return self if keep is None else self.select(keep)

    def in_frames(self, frames: NDArray[np.int64]) -> _Found:
        """Return the same faces with ``frame_index`` mapped through ``frames``."""
        return _Found(frames[self.frame_index], self.boxes, self.landmarks, self.onet_input)


def _largest_per_frame(
    frame_index: NDArray[np.int64], boxes: NDArray[np.float32], limit: int | None
) -> NDArray[np.int64] | None:
    """Rows of the ``limit`` largest boxes of each frame, in order; ``None`` when all are."""
    if limit is None or len(frame_index) == 0 or int(np.bincount(frame_index).max()) <= limit:
        return None
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.lexsort((-area, frame_index))
    frames = frame_index[order]
    rank = np.arange(len(order)) - np.searchsorted(frames, frames)  # within its frame
    return np.sort(order[rank < limit])


def detect_faces(frames: NDArray[np.uint8], nets: MtcnnNets, params: MtcnnParams) -> FaceDetections:
    """Detect faces in a batch of same-size frames with the MTCNN cascade.

    With ``params.keyframe_stride == 1`` this behaves like facenet-pytorch 2.6.0
    ``MTCNN(keep_all=True).detect(frames, landmarks=True)`` with the same ``min_face_size``,
    ``thresholds`` and ``factor``: P-Net runs on every pyramid level for the whole batch at
    once, then per-level NMS 0.5, cross-level NMS 0.7, R-Net on 24x24 crops with NMS 0.7, O-Net
    on 48x48 crops, box regression, landmarks and a final "Min" NMS 0.7, all per frame. With a
    larger stride the cascade runs on keyframes only (see :class:`MtcnnParams`).

    Args:
        frames: UINT8 ``[N, H, W, 3]`` RGB frames.
        nets: the three networks (e.g. :class:`OnnxRuntimeMtcnnNets` or a Triton BLS adapter).
        params: detection parameters; ``params.max_side`` downscales before detection.

    Returns:
        The faces as flat arrays; zero faces gives arrays whose first dimension is 0.

    Raises:
        ValueError: when ``frames`` is not a uint8 ``[N, H, W, 3]`` array.

    """
    frames = _validate_frames(frames)
    if frames.shape[0] == 0:
        return _empty()
    frames, sx, sy = _downscale(frames, params.max_side)
    if params.keyframe_stride > 1:
        found = _detect_on_keyframes(frames, nets, params)
    else:
        found = _cascade(frames, nets, params)
    # each pass is bounded; a frame whose two keyframes' faces were both carried to it is not
    return _in_input_pixels(found.largest_per_frame(params.max_faces_per_frame), sx, sy)


def _detect_on_keyframes(frames: NDArray[np.uint8], nets: MtcnnNets, params: MtcnnParams) -> _Found:
    """Run the cascade on keyframes; O-Net verifies the boxes carried to the frames between."""
    keys = keyframe_indices(frames.shape[0], params.keyframe_stride)
    on_keys = _cascade(frames[keys], nets, params).in_frames(np.asarray(keys, np.int64))
    carried = on_keys.boxes[:, 4] >= np.float32(CARRY_MIN_SCORE)
    key_boxes = {k: on_keys.onet_input[carried & (on_keys.frame_index == k)] for k in keys}
    proposed = propose_boxes(keys, key_boxes)
    # A frame between keyframes that holds no face either of them carries is detected in
    # full: no face in a keyframe says nothing of the frames beside it (a face on screen only
    # between two keyframes, as after a cut, would otherwise never be looked for).
    unproposed = np.setdiff1d(np.setdiff1d(np.arange(frames.shape[0]), keys), proposed.frame_index)
    on_unproposed = (
        _cascade(frames[unproposed], nets, params).in_frames(unproposed)
        if len(unproposed)
        else _Found.empty()
    )
    if len(proposed) == 0:
        return _Found.concat([on_keys, on_unproposed])
    proposal_frames, proposals = proposed.frame_index, _unscored(proposed.boxes)
    # A carried box is kept only while O-Net stays as sure as it was on the keyframe: a face
    # it accepts below that (a patch it would not have found by itself) sends the frame to
    # full detection, which decides as it would without keyframes.
    threshold = max(params.thresholds[2], CARRY_MIN_SCORE)
    # An unmatched carry (a lone face in each keyframe: most likely one face that moved far)
    # would fail verification where it was carried: it goes straight to following.
    guessed = ~proposed.unmatched
    verified, passed_guesses = _onet_stage(
        frames, proposal_frames[guessed], proposals[guessed], nets, threshold
    )
    passed = np.zeros(len(proposed), dtype=bool)
    passed[guessed] = passed_guesses
    # A proposal O-Net rejects means the track is lost (the face left, turned, or moved beyond
    # what the interpolation guessed): the face is followed from its keyframe first; a frame
    # still lost is searched again, around its proposals first.
    lost = np.unique(proposal_frames[~passed])
    parts = [on_keys, on_unproposed, verified.select(~np.isin(verified.frame_index, lost))]
    followed_frames = 0
    if len(lost):
        followed, still_lost = _follow_lost(
            frames, lost, proposed, passed, nets, threshold, params.follow_template_side
        )
        parts.append(followed)
        followed_frames, lost = len(lost) - len(still_lost), still_lost
    if len(lost):
        parts.append(_redetect(frames, lost, proposal_frames, proposals, nets, params))
    logger.debug(
        "keyframes %d of %d, %d frames without proposals, %d proposals, %d frames found by "
        "following, %d re-detected",
        len(keys),
        frames.shape[0],
        len(unproposed),
        len(proposals),
        followed_frames,
        len(lost),
    )
    return _Found.concat(parts)


def _unscored(boxes: NDArray[np.float32]) -> NDArray[np.float32]:
    """Boxes ``[P, 4]`` as the cascade's candidate rows ``[P, 5]`` (a score column of 0)."""
    return np.concatenate([boxes[:, :4], np.zeros((len(boxes), 1), np.float32)], axis=1)


def _follow_lost(
    frames: NDArray[np.uint8],
    lost: NDArray[np.int64],
    proposed: Proposals,
    passed: NDArray[np.bool_],
    nets: MtcnnNets,
    threshold: float,
    template_side: int,
) -> tuple[_Found, NDArray[np.int64]]:
    """Second guesses for the lost frames; return the faces of the frames found, and the rest.

    Each proposal O-Net rejected, or never saw (an unmatched carry), is replaced by its face
    followed from its keyframe (:func:`fakescope.pipeline.face_tracking.follow_faces`), and
    O-Net sees every proposal of those frames again. A frame counts as found only when O-Net
    accepts all of its proposals and keeps at least as many faces as the fuller of its two
    keyframes holds (``Proposals.least_faces``). Two of its proposals may follow one face
    (seen far apart in the two keyframes, so never matched); fewer faces than that floor means
    a face was not found, and the frame is searched as before.
    """
    rows = np.flatnonzero(np.isin(proposed.frame_index, lost))
    frame_index, boxes = proposed.frame_index[rows], proposed.boxes[rows].copy()
    failed = ~passed[rows]
    boxes[failed] = follow_faces(
        frames,
        proposed.source_frame[rows[failed]],
        proposed.source_boxes[rows[failed]],
        frame_index[failed],
        template_side,
    )
    found, accepted = _onet_stage(frames, frame_index, _unscored(boxes), nets, threshold)
    least_faces = np.zeros(frames.shape[0], np.int64)
    least_faces[frame_index] = proposed.least_faces[rows]
    faces_per_frame = np.bincount(found.frame_index, minlength=frames.shape[0])
    complete = lost[faces_per_frame[lost] >= least_faces[lost]]
    complete = np.setdiff1d(complete, frame_index[~accepted])
    return found.select(np.isin(found.frame_index, complete)), np.setdiff1d(lost, complete)


def _redetect(
    frames: NDArray[np.uint8],
    lost: NDArray[np.int64],
    proposal_frames: NDArray[np.int64],
    proposals: NDArray[np.float32],
    nets: MtcnnNets,
    params: MtcnnParams,
) -> _Found:
    """Detect lost frames again, locally first, in full where that finds no face.

    Locally: P-Net in a window around each frame's proposals, for faces of about their size
    (:func:`fakescope.pipeline.keyframes.search_windows`), a fraction of a full pass; R-Net
    and O-Net as in a full pass.
    """
    height, width = frames.shape[1:3]
    windows = search_windows(
        (width, height), lost, proposal_frames, proposals, params.min_face_size
    )
    found = _cascade(frames[lost], nets, params, windows).in_frames(lost)
    missing = lost[~np.isin(lost, found.frame_index)]
    if len(missing) == 0:
        return found
    return _Found.concat([found, _cascade(frames[missing], nets, params).in_frames(missing)])


def _window_slices(
    level: NDArray[np.float32], windows: SearchWindows, scale: float, first: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Cut each frame's window (plus one P-Net cell) out of its pyramid level.

    Returns the slices ``[N, 3, h, w]`` (one size for all) and each slice's first P-Net cell in
    the whole level ``[N, 2]`` (x, y); ``first`` is the frame number of ``level[0]``.
    """
    out_h, out_w = level.shape[2:]
    slice_w = min(out_w, int(np.ceil(windows.width * scale)) + _PNET_CELL)
    slice_h = min(out_h, int(np.ceil(windows.height * scale)) + _PNET_CELL)
    origins = windows.origins[first : first + len(level)].astype(np.float64) * scale
    # even level pixels: P-Net's cells are 2 pixels apart, so a slice starting at an even pixel
    # holds the same cells as the whole level; and never past the level's last even start
    x0 = np.minimum(np.floor(origins[:, 0] / 2), (out_w - slice_w) // 2).astype(np.int64) * 2
    y0 = np.minimum(np.floor(origins[:, 1] / 2), (out_h - slice_h) // 2).astype(np.int64) * 2
    slices = np.stack(
        [
            level[i, :, y : y + slice_h, x : x + slice_w]
            for i, (x, y) in enumerate(zip(x0, y0, strict=True))
        ]
    )
    return slices, np.stack([x0 // 2, y0 // 2], axis=1)


def _cascade(
    frames: NDArray[np.uint8],
    nets: MtcnnNets,
    params: MtcnnParams,
    windows: SearchWindows | None = None,
) -> _Found:
    """P-Net, R-Net and O-Net on every frame (facenet's ``detect_face``).

    With ``windows`` (one per frame) P-Net looks only inside each frame's window, for faces of
    the windows' sizes: on slices of the frame's pyramid levels cut at even level pixels, so
    every P-Net cell inside a window is the cell the whole frame gives (P-Net's stride is 2).
    R-Net and O-Net then work on the whole frames, as without windows.
    """
    n_frames, height, width = frames.shape[:3]
    t1, t2, t3 = params.thresholds

    # ---- Stage 1: P-Net over the image pyramid ------------------------------------------
    if windows is None:
        scales = pyramid_scales(height, width, params.min_face_size, params.factor)
    else:
        scales = pyramid_scales(height, width, windows.min_face, params.factor, windows.max_face)
    if not scales:
        return _Found.empty()
    chunk = params.pnet_batch_frames or n_frames
    candidates, candidate_frames = [], []
    for first in range(0, n_frames, chunk):
        integrals = [_channel_integrals(f) for f in frames[first : first + chunk]]
        for scale in scales:
            out_h, out_w = int(height * scale + 1), int(width * scale + 1)
            level = np.empty((len(integrals), 3, out_h, out_w), np.float32)
            for i, integral in enumerate(integrals):
                _area_resize_into(integral, level[i])
            offsets = None
            if windows is not None:
                level, offsets = _window_slices(level, windows, scale, first)
            reg, prob = nets.pnet(_normalise_(level))
            rows, inds = _generate_boxes(reg, prob[:, 1], scale, t1, offsets)
            keep = _nms(rows[:, :4], rows[:, 4], inds, 0.5)
            candidates.append(rows[keep])
            candidate_frames.append(inds[keep] + first)
        del integrals
    boxes = np.concatenate(candidates, axis=0)
    frame_index = np.concatenate(candidate_frames, axis=0)
    keep = _nms(boxes[:, :4], boxes[:, 4], frame_index, 0.7)
    boxes, frame_index = boxes[keep], frame_index[keep]
    logger.debug("P-Net: %d candidates over %d scales", len(boxes), len(scales))
    if len(boxes) == 0:
        return _Found.empty()

    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    boxes = np.stack(
        [
            boxes[:, 0] + boxes[:, 5] * regw,
            boxes[:, 1] + boxes[:, 6] * regh,
            boxes[:, 2] + boxes[:, 7] * regw,
            boxes[:, 3] + boxes[:, 8] * regh,
            boxes[:, 4],
        ],
        axis=1,
    ).astype(np.float32)
    boxes = _rerec(boxes)

    # ---- Stage 2: R-Net on 24x24 crops -----------------------------------------------------
    batch, valid = _crop_batch(frames, frame_index, boxes, _RNET_SIZE)
    boxes, frame_index = boxes[valid], frame_index[valid]
    if len(boxes) == 0:
        return _Found.empty()
    reg, prob = nets.rnet(batch)
    score = prob[:, 1]
    passed = score > np.float32(t2)
    boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1).astype(np.float32)
    frame_index, reg = frame_index[passed], reg[passed]
    keep = _nms(boxes[:, :4], boxes[:, 4], frame_index, 0.7)
    boxes, frame_index, reg = boxes[keep], frame_index[keep], reg[keep]
    boxes = _rerec(_bbreg(boxes, reg))
    logger.debug("R-Net: %d candidates", len(boxes))
    if len(boxes) == 0:
        return _Found.empty()

    # ---- Stage 3: O-Net on 48x48 crops -----------------------------------------------------
    if params.max_faces_per_frame is not None:
        # O-Net's work bounded too: on a frame tiled with faces it scored thousands
        limit = ONET_CANDIDATES_PER_FACE * params.max_faces_per_frame
        largest = _largest_per_frame(frame_index, boxes, limit)
        if largest is not None:
            boxes, frame_index = boxes[largest], frame_index[largest]
    found, _ = _onet_stage(frames, frame_index, boxes, nets, t3)
    logger.debug("O-Net: %d faces in %d frames", len(found.frame_index), n_frames)
    return found.largest_per_frame(params.max_faces_per_frame)


def _onet_stage(
    frames: NDArray[np.uint8],
    frame_index: NDArray[np.int64],
    boxes: NDArray[np.float32],
    nets: MtcnnNets,
    threshold: float,
) -> tuple[_Found, NDArray[np.bool_]]:
    """O-Net on square candidate boxes: score, regression, landmarks and the "Min" NMS 0.7.

    Returns the faces and, per candidate, whether O-Net accepted it (a crop outside the frame
    counts as rejected).
    """
    accepted = np.zeros(len(boxes), dtype=bool)
    batch, valid = _crop_batch(frames, frame_index, boxes, _ONET_SIZE)
    boxes, frame_index = boxes[valid], frame_index[valid]
    if len(boxes) == 0:
        return _Found.empty(), accepted
    reg, points, prob = nets.onet(batch)
    score = prob[:, 1]
    passed = score > np.float32(threshold)
    accepted[np.flatnonzero(valid)[passed]] = True
    onet_input = boxes[passed, :4].copy()
    boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1).astype(np.float32)
    frame_index, reg, points = frame_index[passed], reg[passed], points[passed]
    w = boxes[:, 2:3] - boxes[:, 0:1] + np.float32(1)
    h = boxes[:, 3:4] - boxes[:, 1:2] + np.float32(1)
    points_x = w * points[:, :5] + boxes[:, 0:1] - np.float32(1)
    points_y = h * points[:, 5:10] + boxes[:, 1:2] - np.float32(1)
    landmarks = np.stack([points_x, points_y], axis=2).astype(np.float32)
    boxes = _bbreg(boxes, reg)
    keep = _nms_min(boxes[:, :4], boxes[:, 4], frame_index, 0.7)
    return _Found(frame_index[keep], boxes[keep], landmarks[keep], onet_input[keep]), accepted


def _in_input_pixels(found: _Found, sx: float, sy: float) -> FaceDetections:
    """Order like ``MTCNN.detect`` (per frame, largest first) and map back to input pixels."""
    boxes, frame_index, landmarks = found.boxes, found.frame_index, found.landmarks
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.lexsort((-area, frame_index))
    boxes, frame_index, landmarks = boxes[order], frame_index[order], landmarks[order]
    out_boxes = boxes[:, :4].copy()
    if sx != 1.0 or sy != 1.0:
        out_boxes *= np.array([sx, sy, sx, sy], np.float32)
        landmarks = landmarks * np.array([sx, sy], np.float32)
    return FaceDetections(
        frame_index=frame_index.astype(np.int32),
        boxes=np.ascontiguousarray(out_boxes, dtype=np.float32),
        scores=np.ascontiguousarray(boxes[:, 4], dtype=np.float32),
        landmarks=np.ascontiguousarray(landmarks, dtype=np.float32),
    )
