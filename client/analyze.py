"""Analyse one video end to end: sample frames, call the detector, build the verdict.

``processing_seconds`` is wall clock (``time.perf_counter``) from the start of decoding to the
end of the server call; asking the server whether its classifier is trained (once per client)
is not counted. Library code: it logs (``logging``), it never prints.
"""

from __future__ import annotations

import logging
import os
import time

from fakescope import contract
from fakescope.client.triton import DetectorClient, Protocol
from fakescope.client.verdict import Verdict
from fakescope.client.video import SampledFrames, VideoReadError, sample_frames
from fakescope.contract import MIN_FRAME_SIDE

__all__ = ["DEFAULT_MAX_SIDE", "DEFAULT_NUM_FRAMES", "analyze", "check_frame_size"]

logger = logging.getLogger(__name__)

#: Frames sampled per video by default.
DEFAULT_NUM_FRAMES = 16
#: Long side (pixels) frames are downscaled to before sending, by default.
DEFAULT_MAX_SIDE = 1280


def analyze(
    path: str | os.PathLike[str],
    *,
    client: DetectorClient | None = None,
    url: str | None = None,
    protocol: Protocol = "grpc",
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_side: int | None = DEFAULT_MAX_SIDE,
    threshold: float | None = None,
    timeout_s: float = 60,
) -> Verdict:
    """Analyse the video at ``path`` and return its :class:`Verdict`.

    Args:
        path: a local video file.
        client: a reused :class:`DetectorClient`; when ``None`` one is made from ``url`` and
            ``protocol`` (and closed afterwards). Pass one client when analysing many videos.
        url: server ``host:port``; ``None`` is the protocol's default. Not allowed with
            ``client``.
        protocol: ``"grpc"`` or ``"http"``, for the client made here.
        num_frames: frames to sample, ``1 … contract.MAX_FRAMES_PER_REQUEST``.
        max_side: downscale frames so their long side is at most this (``None``: never).
        threshold: ``fake_probability`` at or above which the label is ``FAKE``; ``None``
            (the default): the served classifier's own threshold (calibrated on validation).
        timeout_s: per-call timeout of the client made here.

    Raises:
        fakescope.client.video.VideoReadError: the file cannot be read as a video, or its
            frames are smaller than face detection's minimum (``MIN_FRAME_SIDE``) per side.
        fakescope.client.triton.ServerUnreachableError: no answer from the server.
        fakescope.client.triton.ServerError: the server answered with an error.
        ValueError: an argument is out of range.

    """
    if not 1 <= num_frames <= contract.MAX_FRAMES_PER_REQUEST:
        raise ValueError(
            f"num_frames must be 1..{contract.MAX_FRAMES_PER_REQUEST}, got {num_frames}"
        )
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if client is not None and url is not None:
        raise ValueError("pass either client or url, not both")
    own_client = client is None
    detector = client if client is not None else DetectorClient(url, protocol, timeout_s=timeout_s)
    try:
        start = time.perf_counter()
        sampled = sample_frames(path, num_frames, max_side)
        check_frame_size(path, sampled, max_side)
        decoded = time.perf_counter()
        raw = detector.infer(sampled.frames, sampled.timestamps)
        end = time.perf_counter()
        trained = detector.model_trained()
        limitations = detector.model_limitations()
        if threshold is None:
            threshold = detector.model_threshold()
    finally:
        if own_client:
            detector.close()
    logger.info(
        "%s: %d frames %dx%d, decode %.3f s, infer %.3f s, status %s",
        path,
        sampled.frames.shape[0],
        *sampled.frame_size,
        decoded - start,
        end - decoded,
        raw.status,
    )
    return Verdict.from_result(
        os.fspath(path),
        raw,
        sampled,
        processing_seconds=end - start,
        model_trained=trained,
        threshold=threshold,
        decode_seconds=decoded - start,
        infer_seconds=end - decoded,
        model_limitations=limitations,
    )


def check_frame_size(
    path: str | os.PathLike[str], sampled: SampledFrames, max_side: int | None
) -> None:
    """Raise :class:`VideoReadError` (``too_small``) when the frames to send are too small.

    The server refuses frames under ``MIN_FRAME_SIDE`` pixels per side (``INVALID_ARGUMENT``);
    this says why before sending, in the input's terms (the video's size, or the downscale
    that made them so). For callers that compose the steps themselves (``web/jobs.py``).
    """
    width, height = sampled.frame_size
    if min(width, height) >= MIN_FRAME_SIDE:
        return
    source_w, source_h = sampled.source_size
    if (width, height) == (source_w, source_h):
        detail = f"the video is only {width}x{height} pixels"
    else:
        detail = (
            f"frames of the {source_w}x{source_h} video are {width}x{height} pixels after "
            f"downscaling to max side {max_side}"
        )
    raise VideoReadError(
        path,
        "too_small",
        f"{detail}; face detection needs at least {MIN_FRAME_SIDE} pixels per side",
    )
