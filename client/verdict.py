"""The verdict on one video: what the server found, in the video's own coordinates and time.

Labels: ``NO_FACE`` when the server found no face (``fake_probability`` is then ``None``);
otherwise ``FAKE`` when ``fake_probability >= threshold`` (the served classifier's threshold),
else ``REAL``. Face boxes come back from the server in the pixels of the frames that were
sent; they are scaled back to the original (upright) video's pixels here. Nothing NaN reaches
JSON: missing values are ``None``/``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from fakescope import contract

if TYPE_CHECKING:
    from fakescope.client.frames import SampledFrames
    from fakescope.client.triton import RawResult

__all__ = [
    "DEFAULT_THRESHOLD",
    "LABEL_FAKE",
    "LABEL_NO_FACE",
    "LABEL_REAL",
    "UNTRAINED_WARNING",
    "Verdict",
    "label_for",
]

#: fake_probability at or above which a video is labelled FAKE when the served classifier
#: states no threshold of its own (versions before 3); clients use the served one otherwise.
DEFAULT_THRESHOLD: Final = contract.UNSTATED_THRESHOLD
LABEL_FAKE: Final = "FAKE"
LABEL_REAL: Final = "REAL"
LABEL_NO_FACE: Final = "NO_FACE"
Label = Literal["FAKE", "REAL", "NO_FACE"]
#: Shown with every verdict of an untrained classifier.
UNTRAINED_WARNING: Final = "WARNING: the classifier is untrained; this probability is not a finding"


def _finite(value: float | None) -> float | None:
    """``float(value)`` or ``None`` for None/NaN/inf."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _rounded(value: float | None, digits: int) -> float | None:
    v = _finite(value)
    return None if v is None else round(v, digits)


def label_for(status: str, fake_probability: float | None, threshold: float) -> Label:
    """Return the label for a server status and probability (see the module docstring)."""
    if status == contract.STATUS_NO_FACE:
        return LABEL_NO_FACE
    if status != contract.STATUS_OK:
        raise ValueError(f"unknown status {status!r}")
    p = _finite(fake_probability)
    if p is None:
        raise ValueError("status ok without a finite fake_probability")
    return LABEL_FAKE if p >= threshold else LABEL_REAL


@dataclass(frozen=True)
class Verdict:
    """Everything reported about one analysed video.

    Attributes:
        video: the path as given.
        status: the server's ``STATUS`` (``ok`` | ``no_face``).
        label: ``FAKE`` | ``REAL`` | ``NO_FACE``.
        fake_probability: the video's fake probability; ``None`` when no face was found.
        frames: number of frames sent.
        faces: number of faces found over all frames.
        frame_scores: per sent frame, the max fake score of its faces, ``None`` without a face.
        face_boxes: one dict per face: ``frame_index`` (index among the sent frames),
            ``box`` ``[x1, y1, x2, y2]`` in the original video's pixels, ``detection_score``,
            ``fake_score``, ``timestamp`` (seconds).
        processing_seconds: wall clock for decode + inference.
        duration_seconds: the video's duration.
        ratio: ``processing_seconds / duration_seconds`` (< 1 is faster than real time).
        model_trained: whether the server's classifier was trained.
        threshold: the threshold used for ``label``.
        source_size: ``(width, height)`` of the original (upright) video.
        frame_size: ``(width, height)`` of the frames sent.
        decode_seconds: the part of ``processing_seconds`` spent decoding/sampling.
        infer_seconds: the part of ``processing_seconds`` spent in the server call.

    """

    video: str
    status: str
    label: Label
    fake_probability: float | None
    frames: int
    faces: int
    frame_scores: list[float | None]
    face_boxes: list[dict[str, Any]]
    processing_seconds: float
    duration_seconds: float
    ratio: float | None
    model_trained: bool
    threshold: float = DEFAULT_THRESHOLD
    source_size: tuple[int, int] | None = None
    frame_size: tuple[int, int] | None = None
    decode_seconds: float | None = None
    infer_seconds: float | None = None
    model_limitations: str | None = None

    @classmethod
    def from_result(
        cls,
        video: str,
        raw: RawResult,
        sampled: SampledFrames,
        *,
        processing_seconds: float,
        model_trained: bool,
        threshold: float,
        decode_seconds: float | None = None,
        infer_seconds: float | None = None,
        model_limitations: str | None = None,
    ) -> Verdict:
        """Combine the server's outputs with the sampling facts into a verdict.

        Boxes are scaled from the sent frames' pixels back to ``sampled.source_size``; each
        face gets the timestamp of its frame.
        """
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        probability = _finite(raw.fake_probability) if raw.status == contract.STATUS_OK else None
        label = label_for(raw.status, probability, threshold)
        sx, sy = sampled.scale
        timestamps = [float(t) for t in sampled.timestamps]
        boxes: list[dict[str, Any]] = []
        for row, score in zip(raw.face_boxes.tolist(), raw.face_scores.tolist(), strict=True):
            frame_index = int(row[0])
            x1, y1, x2, y2 = row[1:5]
            boxes.append(
                {
                    "frame_index": frame_index,
                    "box": [x1 * sx, y1 * sy, x2 * sx, y2 * sy],
                    "detection_score": _finite(row[5]),
                    "fake_score": _finite(score),
                    "timestamp": timestamps[frame_index],
                }
            )
        duration = float(sampled.duration_seconds)
        return cls(
            video=video,
            status=raw.status,
            label=label,
            fake_probability=probability,
            frames=int(sampled.frames.shape[0]),
            faces=len(boxes),
            frame_scores=[_finite(s) for s in raw.frame_scores.tolist()],
            face_boxes=boxes,
            processing_seconds=float(processing_seconds),
            duration_seconds=duration,
            ratio=processing_seconds / duration if duration > 0 else None,
            model_trained=bool(model_trained),
            threshold=float(threshold),
            source_size=sampled.source_size,
            frame_size=sampled.frame_size,
            decode_seconds=_finite(decode_seconds),
            infer_seconds=_finite(infer_seconds),
            model_limitations=model_limitations,
        )

    @property
    def warning(self) -> str | None:
        """The warning that must accompany this verdict, if any."""
        return None if self.model_trained else UNTRAINED_WARNING

    def to_json_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (``json.dumps(..., allow_nan=False)`` works; NaN -> None).

        Probabilities are rounded to 6 decimals, seconds to 4, box coordinates to 2.
        """
        boxes = [
            {
                "frame_index": b["frame_index"],
                "box": [_rounded(c, 2) for c in b["box"]],
                "detection_score": _rounded(b["detection_score"], 6),
                "fake_score": _rounded(b["fake_score"], 6),
                "timestamp": _rounded(b["timestamp"], 4),
            }
            for b in self.face_boxes
        ]
        return {
            "video": self.video,
            "status": self.status,
            "label": self.label,
            "fake_probability": _rounded(self.fake_probability, 6),
            "frames": self.frames,
            "faces": self.faces,
            "processing_seconds": _rounded(self.processing_seconds, 4),
            "duration_seconds": _rounded(self.duration_seconds, 4),
            "ratio": _rounded(self.ratio, 4),
            "decode_seconds": _rounded(self.decode_seconds, 4),
            "infer_seconds": _rounded(self.infer_seconds, 4),
            "model_trained": self.model_trained,
            "warning": self.warning,
            "model_limitations": self.model_limitations,
            "threshold": _finite(self.threshold),
            "source_size": list(self.source_size) if self.source_size else None,
            "frame_size": list(self.frame_size) if self.frame_size else None,
            "frame_scores": [_rounded(s, 6) for s in self.frame_scores],
            "face_boxes": boxes,
        }
