"""Sample evenly spaced RGB frames from a video file with OpenCV, in one sequential pass.

How frames are chosen
---------------------
``num_frames`` frames are taken at the centres of ``num_frames`` equal segments of the stream's
*decoded* frames: frame ``floor((j + 0.5) * M / k)`` for ``j = 0 … k-1`` when the stream has
``M`` frames and ``k = num_frames``; when ``k >= M`` every frame is returned (fewer than asked;
timestamps must stay strictly increasing, so nothing is duplicated). Segment centres rather than
the first and last frame: the ends of a clip are often fades or black frames.

The container's frame count (``CAP_PROP_FRAME_COUNT``) can be wrong (a truncated download keeps
the full index; raw or broken streams report 0 or garbage). The sampler therefore:

1. **Plans** the target indices from the reported count when it is plausible (1 … 10⁸).
2. **Scans** the stream once, in order: ``grab()`` for every frame (demux + decode, no colour
   conversion), ``retrieve()`` only for the targets, recording ``CAP_PROP_POS_MSEC`` of every
   frame (8 bytes a frame). The scan always runs to the end of the stream, so the real frame
   count ``M`` is known; with segment centres that costs only the last half-segment.
3. **Verifies**: if every target was decoded and each lies within ``max(1, 5 % of a segment)``
   of the ideal index for the real ``M``, the result is kept (the common case: one pass).
   Otherwise (count wrong or not reported) a **second pass** over a freshly opened capture
   retrieves the ideal targets for ``M`` and stops after the last one.

At most ``k`` retrieved frames are ever held (one preallocated ``[k, H, W, 3]`` buffer; RGB
conversion and the ``max_side`` resize write straight into it): memory is bounded by the
sample, never by the video. No seeking is done: seeking per sample is 3–5x slower than one
sequential pass here, and inexact on streams with sparse keyframes.

Why not a one-pass reservoir/decimation buffer for unknown counts: it keeps up to ``2k`` frames
and its picks are only roughly even (spacing error up to a factor of two); the second pass is
exact, holds ``k`` frames and is only paid when the container lied. Measured here (2 busy
cores, 10 s 720p 30 fps H.264 made with PyAV, medians of 7 interleaved runs), 16 / 32 frames:

=================================  ================  ====================  ============
method                             light (0.5 MB)    heavy (38 MB, grain)  peak RSS
=================================  ================  ====================  ============
this sampler, one pass             0.16 s / 0.19 s   1.81 s / 1.77 s       191 MB (32)
two-pass fallback (count unknown)  0.30 s / 0.32 s   3.55 s / 3.71 s
naive ``read()`` all, then pick    0.68 s / 0.68 s   2.42 s / 2.58 s       889 MB
=================================  ================  ====================  ============

Decoding is the floor (``grab()`` decodes every frame); the sampler saves the colour
conversion of unused frames and all their memory.

Timestamps and duration
-----------------------
Timestamps are ``CAP_PROP_POS_MSEC`` of each sampled frame, in seconds. If the per-frame
timestamps of the whole stream are not finite, non-negative and strictly increasing (raw
``.h264`` streams report 0 for every frame; AVI with B-frames reports shifted and then
wrapped values), all timestamps are replaced by ``index / fps`` (logged as a warning). The
duration is the last decoded frame's timestamp plus one frame period ``1 / fps``.

Rotation
--------
``CAP_PROP_ORIENTATION_AUTO`` is switched on for every capture: OpenCV 4.11's FFmpeg backend
reads the display matrix (``CAP_PROP_ORIENTATION_META``) but does **not** apply it by default
(checked: the property reads 0 after opening and frames come out unrotated). With it on,
portrait phone videos come out upright, and ``source_size`` is the upright (displayed) size.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import cv2
import numpy as np

__all__ = [
    "SampledFrames",
    "VideoReadError",
    "even_frame_indices",
    "sample_frames",
]

logger = logging.getLogger(__name__)

#: Reported frame counts above this are treated as garbage (not used to plan the targets).
MAX_PLAUSIBLE_FRAME_COUNT: Final = 100_000_000
#: Frame rate assumed (with a warning) when neither the container nor the timestamps give one.
FALLBACK_FPS: Final = 25.0
#: A planned target may be this fraction of a segment away from the ideal one and still count.
TARGET_TOLERANCE: Final = 0.05

ReadErrorReason = Literal[
    "missing",
    "directory",
    "not_file",
    "permission",
    "unreadable",
    "empty",
    "not_video",
    "no_frames",
]


class VideoReadError(Exception):
    """The input cannot be read as a video; ``str()`` is one line, ``path: detail``.

    Attributes:
        path: the path as given.
        reason: a stable machine-readable cause (see ``ReadErrorReason``).
        detail: the one-line human explanation, without the path.

    """

    def __init__(self, path: str | os.PathLike[str], reason: ReadErrorReason, detail: str):
        self.path = os.fspath(path)
        self.reason: ReadErrorReason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


@dataclass(frozen=True)
class SampledFrames:
    """Frames sampled from one video, ready to send as one request.

    Attributes:
        frames: uint8 ``[N, H, W, 3]`` RGB, all at one size (after ``max_side``).
        timestamps: float32 ``[N]`` seconds from the start of the video, strictly increasing.
        duration_seconds: last decoded frame's timestamp + one frame period.
        source_size: ``(width, height)`` of the decoded, upright video before any downscale;
            face boxes found on ``frames`` scale back to it with :attr:`scale`.
        fps: frames per second (container value, or derived from the timestamps).
        frame_indices: int64 ``[N]`` index of each sampled frame in the decoded stream.
        total_frames: frames decoded in the whole stream (the real count).
        reported_frames: the container's ``CAP_PROP_FRAME_COUNT`` (may be wrong).
        rotation: display rotation (degrees) the container asked for and that was applied.

    """

    frames: np.ndarray
    timestamps: np.ndarray
    duration_seconds: float
    source_size: tuple[int, int]
    fps: float
    frame_indices: np.ndarray
    total_frames: int
    reported_frames: float
    rotation: int = 0

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(width, height)`` of the sampled frames (what the server sees)."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)`` multiplying a box on ``frames`` gives the box in ``source_size`` pixels."""
        (sw, sh), (fw, fh) = self.source_size, self.frame_size
        return sw / fw, sh / fh


def even_frame_indices(total: int, num_frames: int) -> list[int]:
    """Return ``num_frames`` indices at the centres of equal segments of ``total`` frames.

    Returns every index (``0 … total-1``) when ``num_frames >= total``; strictly increasing.
    """
    if total <= 0 or num_frames <= 0:
        return []
    if num_frames >= total:
        return list(range(total))
    return [math.floor((j + 0.5) * total / num_frames) for j in range(num_frames)]


def sample_frames(
    path: str | os.PathLike[str], num_frames: int, max_side: int | None = None
) -> SampledFrames:
    """Decode ``path`` once and return ``num_frames`` evenly spaced RGB frames.

    Args:
        path: a local video file (anything FFmpeg in OpenCV can demux and decode); URLs and
            streams are not accepted.
        num_frames: how many frames to sample (≥ 1); fewer come back when the video is shorter.
        max_side: if given, frames whose long side exceeds it are downscaled (``INTER_AREA``)
            so that it equals ``max_side``; all frames of the video share one size.

    Raises:
        VideoReadError: missing path, directory, unreadable, empty, not a video, or no frame
            decodes.
        ValueError: ``num_frames < 1`` or ``max_side < 1``.

    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1 or None, got {max_side}")
    _check_file(path)

    with _capture(path) as cap:
        reported = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        reported_fps = float(cap.get(cv2.CAP_PROP_FPS))
        rotation = _rotation(cap)
        planned = _plausible_count(reported)
        targets = even_frame_indices(planned, num_frames) if planned else []
        collector = _Collector(max(len(targets), 1), max_side)
        total, pos_msec = _scan(cap, targets, collector, to_end=True)

    if total == 0:
        raise VideoReadError(
            path, "no_frames", "no frame could be decoded (truncated or corrupt video stream)"
        )
    ideal = even_frame_indices(total, num_frames)
    if not _close_enough(collector.indices, ideal, total):
        logger.info(
            "%s: container reports %s frames, %d decoded; second pass for even sampling",
            path,
            f"{reported:g}",
            total,
        )
        collector = _Collector(len(ideal), max_side)
        with _capture(path) as cap:
            _scan(cap, ideal, collector, to_end=False)
        if not collector.indices:
            raise VideoReadError(
                path, "no_frames", "frames decoded on the first pass failed on the second"
            )
        if len(collector.indices) < len(ideal):
            logger.warning(
                "%s: only %d of %d sampled frames decoded on the second pass",
                path,
                len(collector.indices),
                len(ideal),
            )
    if len(ideal) < num_frames:
        logger.info("%s: only %d frames in the video, %d asked", path, total, num_frames)

    all_ts, fps = _timing(path, pos_msec, total, reported_fps)
    indices = np.asarray(collector.indices, dtype=np.int64)
    assert collector.source_size is not None  # at least one frame was retrieved
    return SampledFrames(
        frames=collector.frames(),
        timestamps=all_ts[indices].astype(np.float32),
        duration_seconds=float(all_ts[-1] + 1.0 / fps),
        source_size=collector.source_size,
        fps=fps,
        frame_indices=indices,
        total_frames=total,
        reported_frames=reported,
        rotation=rotation,
    )


# --- internals -------------------------------------------------------------------------------


def _check_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`VideoReadError` unless ``path`` is a non-empty readable regular file."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise VideoReadError(path, "missing", "no such file") from None
    except PermissionError:
        raise VideoReadError(path, "permission", "permission denied") from None
    except OSError as exc:
        raise VideoReadError(path, "unreadable", f"cannot access: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoReadError(path, "directory", "is a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise VideoReadError(path, "not_file", "not a regular file")
    if st.st_size == 0:
        raise VideoReadError(path, "empty", "empty file (0 bytes)")
    try:
        with p.open("rb") as fh:
            fh.read(1)
    except PermissionError:
        raise VideoReadError(path, "permission", "permission denied") from None
    except OSError as exc:
        raise VideoReadError(path, "unreadable", f"cannot read: {exc.strerror}") from None


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log (not FFmpeg's) while opening; errors are reported by us."""
    previous = cv2.setLogLevel(0)  # 0 = LOG_LEVEL_SILENT; returns the previous level
    try:
        yield
    finally:
        cv2.setLogLevel(previous)


@contextlib.contextmanager
def _capture(path: str | os.PathLike[str]) -> Iterator[cv2.VideoCapture]:
    """Open ``path`` with the FFmpeg backend, rotation applied; release on exit."""
    with _quiet_opencv():
        cap = cv2.VideoCapture(os.fspath(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise VideoReadError(
                path,
                "not_video",
                "not a readable video (unknown format, unsupported codec, or truncated file)",
            )
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        yield cap
    finally:
        cap.release()


def _rotation(cap: cv2.VideoCapture) -> int:
    meta = cap.get(cv2.CAP_PROP_ORIENTATION_META)
    return int(meta) % 360 if math.isfinite(meta) else 0


def _plausible_count(reported: float) -> int | None:
    if not math.isfinite(reported) or reported < 1 or reported > MAX_PLAUSIBLE_FRAME_COUNT:
        return None
    return round(reported)


def _close_enough(got: Sequence[int], ideal: Sequence[int], total: int) -> bool:
    """Whether the planned picks ``got`` are an acceptable stand-in for ``ideal``."""
    if len(got) != len(ideal):
        return False
    tolerance = max(1.0, TARGET_TOLERANCE * total / max(len(ideal), 1))
    return all(abs(a - b) <= tolerance for a, b in zip(got, ideal, strict=True))


class _Collector:
    """Holds at most ``capacity`` retrieved frames, converted to RGB at one output size."""

    def __init__(self, capacity: int, max_side: int | None):
        self._capacity = capacity
        self._max_side = max_side
        self._buffer: np.ndarray | None = None
        self.indices: list[int] = []
        self.source_size: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None

    def add(self, index: int, bgr: np.ndarray) -> None:
        h, w = bgr.shape[:2]
        if self._buffer is None:
            self.source_size = (w, h)
            self.size = _fit(w, h, self._max_side)
            tw, th = self.size
            self._buffer = np.empty((self._capacity, th, tw, 3), np.uint8)
        assert self.size is not None
        if len(self.indices) >= self._capacity:  # never hold more than planned
            raise RuntimeError("frame collector overflow")
        slot = self._buffer[len(self.indices)]
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        if (w, h) != self.size:
            shrink = self.size[0] * self.size[1] < w * h
            interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            bgr = cv2.resize(bgr, self.size, interpolation=interp)
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=slot)
        self.indices.append(index)

    def frames(self) -> np.ndarray:
        assert self._buffer is not None
        n = len(self.indices)
        return self._buffer if n == self._capacity else self._buffer[:n].copy()


def _fit(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    if w >= h:
        return max_side, max(1, round(h * s))
    return max(1, round(w * s)), max_side


def _scan(
    cap: cv2.VideoCapture, targets: Sequence[int], collector: _Collector, *, to_end: bool
) -> tuple[int, array[float]]:
    """Grab frames in order, retrieve the ``targets``; return (frames grabbed, POS_MSEC each)."""
    pos_msec: array[float] = array("d")
    next_target = 0
    index = 0
    while to_end or next_target < len(targets):
        if not cap.grab():
            break
        pos_msec.append(cap.get(cv2.CAP_PROP_POS_MSEC))
        if next_target < len(targets) and targets[next_target] == index:
            next_target += 1
            ok, frame = cap.retrieve()
            if ok and frame is not None:
                collector.add(index, frame)
            else:
                logger.warning("frame %d was grabbed but could not be converted", index)
        index += 1
    return index, pos_msec


def _timing(
    path: str | os.PathLike[str], pos_msec: array[float], total: int, reported_fps: float
) -> tuple[np.ndarray, float]:
    """Per-frame timestamps (seconds, float64 ``[total]``) and the frame rate."""
    ts = np.frombuffer(pos_msec, dtype=np.float64)[:total] / 1000.0
    valid = (
        len(ts) == total
        and bool(np.all(np.isfinite(ts)))
        and ts[0] >= 0
        and bool(np.all(np.diff(ts) > 0))
    )
    fps: float | None = reported_fps if math.isfinite(reported_fps) and reported_fps > 0 else None
    if fps is None and valid and total > 1 and ts[-1] > ts[0]:
        fps = (total - 1) / float(ts[-1] - ts[0])
    if fps is None:
        logger.warning("%s: frame rate unknown; assuming %g fps", path, FALLBACK_FPS)
        fps = FALLBACK_FPS
    if not valid:
        logger.warning(
            "%s: container timestamps are unusable (not strictly increasing); "
            "using frame index / fps",
            path,
        )
        ts = np.arange(total, dtype=np.float64) / fps
    return ts, float(fps)
