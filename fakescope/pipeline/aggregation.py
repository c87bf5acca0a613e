"""Per-video aggregation of per-face fake probabilities.

Frame score = the most suspicious face of the frame (a swap usually targets one person, so a
mean over faces would dilute it). Video score = a "confident strategy" in the spirit of the DFDC
winner (selimsef, ``kernel_utils.confident_strategy``), with its absolute frame count (> 11 of 32)
replaced by fractions so that it means the same for any number of sampled frames:

* when at least ``fake_fraction`` of the frames with a face are confidently fake
  (> ``fake_threshold``), and at least ``min_confident_frames`` of them, the video score is
  their mean — a fake that shows in a solid share of frames is not averaged away;
* else, when at least ``real_fraction`` of the frames are confidently real (< ``real_threshold``),
  the mean of those — stable real videos get confidently low scores;
* else the mean of all frame scores.

So one or two confident frames (compression glitches, motion blur) can never decide a video on
their own: they need ``min_confident_frames`` and ``fake_fraction`` of the frames with them.
The thresholds are data: they come from the ``video_aggregator`` model's ``config.pbtxt``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fakescope.contract import MAX_FRAMES_PER_REQUEST


@dataclass(frozen=True)
class AggregationParams:
    """Thresholds of the confident strategy (see module docstring)."""

    # No defaults: the served values are video_aggregator's config.pbtxt parameters, read by
    # from_parameters (fakescope.serving.model_config.aggregation_params), and nowhere else.
    fake_threshold: float
    real_threshold: float
    fake_fraction: float
    real_fraction: float
    min_confident_frames: int

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> AggregationParams:
        """Build from Triton ``parameters`` (string values); a missing or unknown key: error."""
        types = {"float": float, "int": int}
        known = {name: types[str(f.type)] for name, f in cls.__dataclass_fields__.items()}
        unknown = set(parameters) - set(known)
        if unknown:
            raise ValueError(f"unknown aggregation parameters: {sorted(unknown)}")
        missing = set(known) - set(parameters)
        if missing:
            raise ValueError(f"aggregation parameters missing: {sorted(missing)}")
        return cls(**{k: known[k](v) for k, v in parameters.items()})


@dataclass(frozen=True)
class VideoScore:
    """The aggregated verdict of one video."""

    fake_probability: float  #: NaN when no frame has a face
    frame_scores: NDArray[np.float32]  #: FP32 [N], NaN for frames without a face


def frame_scores(
    num_frames: int, frame_index: NDArray[np.integer[Any]], face_scores: NDArray[np.floating[Any]]
) -> NDArray[np.float32]:
    """Max face score per frame; NaN for frames without a face. Returns FP32 ``[num_frames]``."""
    scores = np.full(num_frames, -np.inf, dtype=np.float32)
    np.maximum.at(scores, frame_index.astype(np.int64), face_scores.astype(np.float32))
    scores[np.isneginf(scores)] = np.nan
    return scores


def confident_score(scores: NDArray[np.floating[Any]], params: AggregationParams) -> float:
    """Aggregate per-frame scores (NaN = no face, ignored) into one probability; NaN if empty."""
    valid = scores[~np.isnan(scores)].astype(np.float64)
    if valid.size == 0:
        return math.nan
    fakes = valid[valid > params.fake_threshold]
    if fakes.size >= max(params.min_confident_frames, params.fake_fraction * valid.size):
        return float(fakes.mean())
    reals = valid[valid < params.real_threshold]
    if reals.size >= params.real_fraction * valid.size:
        return float(reals.mean())
    return float(valid.mean())


def aggregate(
    num_frames: int,
    frame_index: NDArray[np.integer[Any]],
    face_scores: NDArray[np.floating[Any]],
    params: AggregationParams,
) -> VideoScore:
    """Aggregate per-face scores of one video into frame scores and a video probability.

    Raises:
        ValueError: ``num_frames`` is more than a request's frames (a direct call to
            ``video_aggregator`` must not make it allocate what it names), or the faces do
            not fit it.

    """
    if not 0 <= num_frames <= MAX_FRAMES_PER_REQUEST:
        raise ValueError(
            f"the frame count must be 0..{MAX_FRAMES_PER_REQUEST} (a request's frames), "
            f"got {num_frames}"
        )
    if frame_index.shape != face_scores.shape:
        raise ValueError("frame_index and face_scores must have the same shape")
    if frame_index.size and (frame_index.min() < 0 or frame_index.max() >= num_frames):
        raise ValueError("face frame index out of range")
    per_frame = frame_scores(num_frames, frame_index, face_scores)
    return VideoScore(confident_score(per_frame, params), per_frame)
