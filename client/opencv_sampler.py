"""The exact path of frame sampling: one sequential OpenCV scan that decodes every frame.

:func:`fakescope.client.video.sample_frames` comes here when the PyAV fast path returns
``None`` (broken or truncated files, no or repeated timestamps, odd rotations) or when the
first bytes say the file may not be a video. This scan picks exactly the frames
:func:`~fakescope.client.frames.even_frame_indices` names and names what is wrong with a bad
file (with :mod:`fakescope.client.containers`, or the codec tag when no frame decodes).

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
sample, never by the video. No seeking: one sequential pass is faster than a seek per sample,
and exact on streams with sparse keyframes. No one-pass reservoir/decimation buffer for unknown
counts either: it keeps up to ``2k`` frames and its picks are only roughly even (spacing error
up to a factor of two); the second pass is exact, holds ``k`` frames and is only paid when the
container lied. Measurements: ``benchmarks/README.md``, section "Frame sampling".

Timestamps are ``CAP_PROP_POS_MSEC`` of each sampled frame, in seconds. If the per-frame
timestamps of the whole stream are not finite, non-negative and strictly increasing (raw
``.h264`` streams report 0 for every frame; AVI with B-frames reports shifted and then wrapped
values), all timestamps are replaced by ``index / fps`` (logged as a warning). The duration is
the last decoded frame's timestamp plus one frame period ``1 / fps``.

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
from array import array
from collections.abc import Iterator, Sequence
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from fakescope.client.containers import ContainerFacts, explain_failure, refuse_single_frame
from fakescope.client.frames import (
    NOT_A_VIDEO,
    FrameAllocator,
    SampledFrames,
    VideoReadError,
    even_frame_indices,
    ffmpeg_file_name,
    fit_size,
    frames_array,
    new_frames,
)

__all__ = [
    "FALLBACK_FPS",
    "MAX_PLAUSIBLE_FRAME_COUNT",
    "TARGET_TOLERANCE",
    "sample_with_opencv",
]

logger = logging.getLogger(__name__)

#: Reported frame counts above this are treated as garbage (not used to plan the targets).
MAX_PLAUSIBLE_FRAME_COUNT: Final = 100_000_000
#: Frame rate assumed (with a warning) when neither the container nor the timestamps give one.
FALLBACK_FPS: Final = 25.0
#: A planned target may be this fraction of a segment away from the ideal one and still count.
TARGET_TOLERANCE: Final = 0.05


def sample_with_opencv(
    path: str | os.PathLike[str],
    num_frames: int,
    max_side: int | None,
    facts: ContainerFacts,
    allocate: FrameAllocator = new_frames,
) -> SampledFrames:
    """Scan ``path`` once (twice if its frame count lied) and return the evenly spaced frames.

    Args:
        path: the video file, already through
            :func:`~fakescope.client.containers.inspect_container`.
        num_frames: how many frames to sample (≥ 1); fewer come back when the video is shorter.
        max_side: the long-side limit of the returned frames (``None``: full size).
        facts: what :func:`~fakescope.client.containers.inspect_container` found, to explain
            a failure.
        allocate: makes the array the frames are decoded into (:data:`FrameAllocator`).

    Raises:
        VideoReadError: FFmpeg cannot open the file, no frame decodes, or the file is a still
            image or an audio file that decoded as one frame.

    """
    try:
        with _capture(path) as cap:
            reported = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            reported_fps = float(cap.get(cv2.CAP_PROP_FPS))
            rotation = _rotation(cap)
            codec = _fourcc(cap)
            planned = _plausible_count(reported)
            targets = even_frame_indices(planned, num_frames) if planned else []
            collector = _Collector(max(len(targets), 1), max_side, allocate)
            total, pos_msec = _scan(cap, targets, collector, to_end=True)
    except VideoReadError:
        explained = explain_failure(facts, opened=False)
        if explained is None:
            raise
        raise VideoReadError(path, *explained) from None

    if total == 0:
        what = f"'{codec}' stream: " if codec else ""
        failure = explain_failure(facts, opened=True) or (
            "no_frames",
            f"no frame could be decoded ({what}unsupported codec, or truncated or corrupt data)",
        )
        raise VideoReadError(path, *failure)
    if total == 1:
        refuse_single_frame(path, facts)
    ideal = even_frame_indices(total, num_frames)
    if not _close_enough(collector.indices, ideal, total):
        logger.info(
            "%s: container reports %s frames, %d decoded; second pass for even sampling",
            path,
            f"{reported:g}",
            total,
        )
        collector = _Collector(len(ideal), max_side, allocate)
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
        cap = cv2.VideoCapture(ffmpeg_file_name(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise VideoReadError(path, "not_video", NOT_A_VIDEO)
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        yield cap
    finally:
        cap.release()


def _fourcc(cap: cv2.VideoCapture) -> str:
    """Return the stream's codec tag as text (``""`` when unknown or not printable)."""
    value = cap.get(cv2.CAP_PROP_FOURCC)
    if not math.isfinite(value) or value <= 0:
        return ""
    raw = int(value).to_bytes(4, "little", signed=False) if value < 2**32 else b""
    text = raw.decode("latin-1").strip()
    return text if raw and all(32 <= b < 127 for b in raw) else ""


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

    def __init__(self, capacity: int, max_side: int | None, allocate: FrameAllocator):
        self._capacity = capacity
        self._max_side = max_side
        self._allocate = allocate
        self._buffer: NDArray[np.uint8] | None = None
        self.indices: list[int] = []
        self.source_size: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None

    def add(self, index: int, bgr: cv2.typing.MatLike) -> None:
        h, w = bgr.shape[:2]
        if self._buffer is None:
            self.source_size = (w, h)
            self.size = fit_size(w, h, self._max_side)
            tw, th = self.size
            self._buffer = frames_array(self._allocate, (self._capacity, th, tw, 3))
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

    def frames(self) -> NDArray[np.uint8]:
        assert self._buffer is not None
        n = len(self.indices)
        return self._buffer if n == self._capacity else self._buffer[:n].copy()


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
) -> tuple[NDArray[np.float64], float]:
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
