"""Analyse one video: sample its frames, call the detector, build the verdict.

The one orchestration every caller uses: the CLI (:func:`analyze`), the web jobs and the Locust
users (:func:`decode_video` then :func:`verdict_for`, so the web can check the duration and keep
the frames for thumbnails, and the load test can decode in a thread pool).

``processing_seconds`` is wall clock (``time.perf_counter``): the decode plus the server call.
Asking the server what its classifier states (once per client) is not counted. Library code:
it logs (``logging``), it never prints.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from fakescope import contract
from fakescope.client.frames import FrameAllocator, SampledFrames, VideoReadError, new_frames
from fakescope.client.triton import CALL_TIMEOUT_S, DetectorClient, Protocol
from fakescope.client.verdict import Verdict
from fakescope.client.video import sample_frames
from fakescope.contract import MIN_FRAME_SIDE

__all__ = [
    "DEFAULT_MAX_SIDE",
    "DEFAULT_NUM_FRAMES",
    "DecodedVideo",
    "analyze",
    "decode_video",
    "verdict_for",
]

logger = logging.getLogger(__name__)

#: Frames sampled per video by default.
DEFAULT_NUM_FRAMES = 16
#: Long side (pixels) frames are downscaled to before sending, by default.
DEFAULT_MAX_SIDE = 1280


@dataclass(frozen=True)
class DecodedVideo:
    """A video's sampled frames, ready to send, and how long sampling took."""

    sampled: SampledFrames
    decode_seconds: float


def decode_video(
    path: str | os.PathLike[str],
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_side: int | None = DEFAULT_MAX_SIDE,
    *,
    allocate: FrameAllocator = new_frames,
) -> DecodedVideo:
    """Sample ``num_frames`` frames of ``path`` (downscaled to ``max_side``) and time it.

    ``allocate`` makes the array the frames are decoded into: pass the client's
    :meth:`~fakescope.client.triton.DetectorClient.frames_buffer` to have them sent without a
    copy.

    Raises:
        fakescope.client.frames.VideoReadError: the file cannot be read as a video, or its
            frames are smaller than face detection's minimum (``MIN_FRAME_SIDE``) per side.
        ValueError: ``num_frames`` is outside ``1 … contract.MAX_FRAMES_PER_REQUEST``.

    """
    if not 1 <= num_frames <= contract.MAX_FRAMES_PER_REQUEST:
        raise ValueError(
            f"num_frames must be 1..{contract.MAX_FRAMES_PER_REQUEST}, got {num_frames}"
        )
    start = time.perf_counter()
    sampled = sample_frames(path, num_frames, max_side, allocate=allocate)
    _check_frame_size(path, sampled, max_side)
    return DecodedVideo(sampled, time.perf_counter() - start)


def verdict_for(
    name: str, decoded: DecodedVideo, client: DetectorClient, *, threshold: float | None = None
) -> Verdict:
    """Send ``decoded`` to the detector and return the verdict on the video called ``name``.

    ``threshold`` (``None``: the served classifier's own) is the ``fake_probability`` at or
    above which the label is ``FAKE``.

    Raises:
        fakescope.client.triton.ServerUnreachableError: no answer from the server.
        fakescope.client.triton.ServerError: the server answered with an error.

    """
    sampled = decoded.sampled
    start = time.perf_counter()
    # the decode was spent from the video's budget: the server may queue it for what is left
    raw = client.infer(
        sampled.frames,
        duration_seconds=sampled.duration_seconds,
        spent_seconds=decoded.decode_seconds,
    )
    infer_seconds = time.perf_counter() - start
    facts = client.model_facts()
    logger.info(
        "%s: %d frames %dx%d, decode %.3f s, infer %.3f s, status %s",
        name,
        sampled.frames.shape[0],
        *sampled.frame_size,
        decoded.decode_seconds,
        infer_seconds,
        raw.status,
    )
    return Verdict.from_result(
        name,
        raw,
        sampled,
        processing_seconds=decoded.decode_seconds + infer_seconds,
        model_trained=facts.trained,
        threshold=facts.threshold if threshold is None else threshold,
        decode_seconds=decoded.decode_seconds,
        infer_seconds=infer_seconds,
        model_limitations=facts.limitations,
    )


def analyze(
    path: str | os.PathLike[str],
    *,
    client: DetectorClient | None = None,
    url: str | None = None,
    protocol: Protocol = "grpc",
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_side: int | None = DEFAULT_MAX_SIDE,
    threshold: float | None = None,
    timeout_s: float = CALL_TIMEOUT_S,
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
        fakescope.client.frames.VideoReadError: see :func:`decode_video`.
        fakescope.client.triton.ServerUnreachableError: no answer from the server.
        fakescope.client.triton.ServerError: the server answered with an error.
        ValueError: an argument is out of range.

    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if client is not None and url is not None:
        raise ValueError("pass either client or url, not both")
    own_client = client is None
    detector = client if client is not None else DetectorClient(url, protocol, timeout_s=timeout_s)
    try:
        decoded = decode_video(path, num_frames, max_side, allocate=detector.frames_buffer)
        return verdict_for(os.fspath(path), decoded, detector, threshold=threshold)
    finally:
        if own_client:
            detector.close()


def _check_frame_size(
    path: str | os.PathLike[str], sampled: SampledFrames, max_side: int | None
) -> None:
    """Raise :class:`VideoReadError` (``too_small``) when the frames to send are too small.

    The server refuses frames under ``MIN_FRAME_SIDE`` pixels per side (``INVALID_ARGUMENT``);
    this says why before sending, in the input's terms (the video's size, or the downscale
    that made them so).
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
