"""Sample evenly spaced RGB frames from a video file: :func:`sample_frames`, the one entry point.

It only dispatches, in this order:

1. :mod:`fakescope.client.containers` checks the file and refuses, before any decoder sees it,
   what must never be decoded (playlists that would open other files) or plainly is not a video.
2. :mod:`fakescope.client.pyav_sampler` decodes only what the sample needs (one keyframe per
   segment for long videos, reference frames only otherwise) and may pick a frame or two away
   from the segment centre. It returns ``None`` whenever it meets something it does not expect.
3. :mod:`fakescope.client.opencv_sampler` then decides: it decodes every frame, picks exactly,
   and names what is wrong with a bad file.

Which frames are picked (segment centres) is :func:`fakescope.client.frames.even_frame_indices`.
What each path costs is measured in ``benchmarks/README.md``, section "Frame sampling".
"""

from __future__ import annotations

import os

from fakescope.client.containers import inspect_container
from fakescope.client.frames import FrameAllocator, SampledFrames, even_frame_indices, new_frames
from fakescope.client.opencv_sampler import sample_with_opencv
from fakescope.client.pyav_sampler import sample_with_pyav

__all__ = ["sample_frames"]


def sample_frames(
    path: str | os.PathLike[str],
    num_frames: int,
    max_side: int | None = None,
    *,
    allocate: FrameAllocator = new_frames,
) -> SampledFrames:
    """Decode ``path`` once and return ``num_frames`` evenly spaced RGB frames.

    Args:
        path: a local video file (anything FFmpeg in OpenCV can demux and decode); URLs and
            streams are not accepted.
        num_frames: how many frames to sample (≥ 1); fewer come back when the video is shorter.
        max_side: if given, frames whose long side exceeds it are downscaled (``INTER_AREA``)
            so that it equals ``max_side``; all frames of the video share one size.
        allocate: makes the array the frames are decoded into (:data:`FrameAllocator`); the
            default is this process's memory.

    Raises:
        VideoReadError: missing path, directory, unreadable, empty, not a video, or no frame
            decodes (:class:`fakescope.client.frames.VideoReadError`).
        ValueError: ``num_frames < 1`` or ``max_side < 1``.

    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1 or None, got {max_side}")
    facts = inspect_container(path)
    if facts.sniffed is None:  # maybe a video: try decoding only what the sample needs
        fast = sample_with_pyav(
            path, lambda total: even_frame_indices(total, num_frames), max_side, allocate=allocate
        )
        if fast is not None:
            return fast
    return sample_with_opencv(path, num_frames, max_side, facts, allocate)
