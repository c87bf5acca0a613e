"""Validation of an inference request before any work is done on it."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from fakescope.contract import MIN_FRAME_SIDE


def validate_request(
    frames: NDArray[Any],  # any dtype: checking that it is UINT8 is part of the job
    *,
    max_frames: int,
    max_frame_side: int,
    max_request_pixels: int,
) -> None:
    """Raise ``ValueError`` naming the problem when the request breaks the tensor contract.

    ``frames`` must be UINT8 ``[N, H, W, 3]`` with ``1 <= N <= max_frames`` and
    ``MIN_FRAME_SIDE <= H, W <= max_frame_side`` and ``N * H * W <= max_request_pixels``.
    """
    if frames.dtype != np.uint8:
        raise ValueError(f"FRAMES must be UINT8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"FRAMES must be [N, H, W, 3] RGB, got shape {list(frames.shape)}")
    n, height, width = frames.shape[:3]
    if n == 0:
        raise ValueError("FRAMES holds zero frames")
    if n > max_frames:
        raise ValueError(f"FRAMES holds {n} frames; the maximum per request is {max_frames}")
    if min(height, width) < MIN_FRAME_SIDE:
        raise ValueError(
            f"frame size {width}x{height} is outside {MIN_FRAME_SIDE}..{max_frame_side} pixels "
            f"per side: too small, the detector needs at least {MIN_FRAME_SIDE} pixels per side"
        )
    if max(height, width) > max_frame_side:
        raise ValueError(
            f"frame size {width}x{height} is outside {MIN_FRAME_SIDE}..{max_frame_side} pixels "
            "per side; downscale before sending"
        )
    if n * height * width > max_request_pixels:
        raise ValueError(
            f"{n} frames of {width}x{height} exceed the request limit of {max_request_pixels} "
            "pixels; send fewer or smaller frames"
        )
