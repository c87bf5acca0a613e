"""What frame sampling returns, how it fails, and the two rules both samplers follow.

Both decoders (:mod:`fakescope.client.pyav_sampler` and :mod:`fakescope.client.opencv_sampler`)
build a :class:`SampledFrames`, pick frames with :func:`even_frame_indices` and size them with
:func:`fit_size`; every failure to read an input is a :class:`VideoReadError`. This module sits
below both of them and imports nothing from the project.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "NOT_A_VIDEO",
    "FrameAllocator",
    "ReadErrorReason",
    "SampledFrames",
    "VideoReadError",
    "even_frame_indices",
    "ffmpeg_file_name",
    "fit_size",
    "frames_array",
    "new_frames",
]

#: The detail of a :class:`VideoReadError` when nothing more specific can be told.
NOT_A_VIDEO: Final = "not a readable video (unknown format, unsupported codec, or truncated file)"

ReadErrorReason = Literal[
    "missing",
    "directory",
    "not_file",
    "permission",
    "unreadable",
    "empty",
    "not_video",
    "no_video_stream",
    "no_frames",
    "too_small",
]

#: Makes the uninitialised uint8 array ``(frames, height, width, 3)`` a sampler decodes into:
#: :func:`new_frames`, or a client's memory that is sent without a copy
#: (:meth:`fakescope.client.triton.DetectorClient.frames_buffer`).
FrameAllocator = Callable[[tuple[int, int, int, int]], NDArray[np.uint8]]


def ffmpeg_file_name(path: str | os.PathLike[str]) -> str:
    """Return the name to open local file ``path`` by in FFmpeg (PyAV or OpenCV): absolute.

    FFmpeg reads what precedes a colon as a protocol (``12:30.mp4`` as protocol ``12``); an
    absolute path starts with ``/``, which no protocol name holds.
    """
    return os.path.abspath(os.fspath(path))


def new_frames(shape: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    """Return an uninitialised uint8 array of ``shape`` in this process's memory."""
    return np.empty(shape, np.uint8)


def frames_array(allocate: FrameAllocator, shape: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    """Return ``allocate(shape)``, checked to be a writable C-contiguous uint8 array of ``shape``.

    Raises:
        ValueError: the allocator returned something else.

    """
    array = allocate(shape)
    if (
        array.shape != shape
        or array.dtype != np.uint8
        or not array.flags.c_contiguous
        or not array.flags.writeable
    ):
        raise ValueError(
            f"the frame allocator gave {array.dtype} {array.shape}, not a writable C-contiguous "
            f"uint8 array of {shape}"
        )
    return array


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

    frames: NDArray[np.uint8]
    timestamps: NDArray[np.float32]
    duration_seconds: float
    source_size: tuple[int, int]
    fps: float
    frame_indices: NDArray[np.int64]
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

    Frame ``floor((j + 0.5) * total / num_frames)`` for ``j = 0 … num_frames-1``: segment
    centres rather than the first and last frame, because the ends of a clip are often fades or
    black frames. Returns every index (``0 … total-1``) when ``num_frames >= total`` (fewer than
    asked: timestamps must stay strictly increasing, so nothing is duplicated).
    """
    if total <= 0 or num_frames <= 0:
        return []
    if num_frames >= total:
        return list(range(total))
    return [math.floor((j + 0.5) * total / num_frames) for j in range(num_frames)]


def fit_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    """``(w, h)`` scaled so that the long side is at most ``max_side`` (aspect kept)."""
    if max_side is None or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    if w >= h:
        return max_side, max(1, round(h * s))
    return max(1, round(w * s)), max_side
