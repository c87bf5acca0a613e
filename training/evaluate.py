"""Per-video evaluation, scored exactly as the served ``deepfake_detector`` ensemble scores.

For each video: the faces the server would crop (:mod:`.faces`), the classifier ONNX file run
in-process with ONNX Runtime (the same file ``face_classifier`` serves), and
:func:`fakescope.pipeline.aggregation.aggregate` with the ``AggregationParams`` read from
``video_aggregator/config.pbtxt`` — the code the ``video_aggregator`` model runs. A test checks
that the result equals what the running ensemble returns for the same frames.

Metrics per video (FAKE positive, see :mod:`.metrics`): recall, precision, accuracy, LogLoss
(clipped as in the DFDC), ROC-AUC, the confusion matrix at the threshold, and the threshold
itself with where it came from (given, the model's recorded validation threshold, or 0.5). A
video in which no face is found gets no score from the server (``STATUS no_face``); for the
metrics it counts as 0.5 — the DFDC convention — and the report counts such videos
separately, so it is never silent.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fakescope import contract
from fakescope.files import write_text_atomically
from fakescope.pipeline.aggregation import AggregationParams, aggregate
from fakescope.pipeline.metadata import (
    ClassifierSpec,
    read_classifier_spec,
    read_onnx_metadata,
    read_provenance,
)
from fakescope.training.binary_metrics import (
    BinaryMetrics,
    binary_metrics,
    roc_curve,
    youden_threshold,
)
from fakescope.training.dataset import VideoEntry
from fakescope.training.video_faces import VideoFaces

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "NO_FACE_PROBABILITY",
    "Evaluation",
    "OnnxClassifier",
    "VideoResult",
    "evaluate_face_crops",
    "evaluate_videos",
    "format_table",
    "resolve_model",
    "score_video",
    "write_report",
]

logger = logging.getLogger(__name__)

#: Probability used *for the metrics only* when no face was found (DFDC convention).
NO_FACE_PROBABILITY = 0.5
#: Points of the ROC curve written into ``metrics.json`` (at most).
_ROC_POINTS = 201


class OnnxClassifier:
    """The classifier ONNX file in ONNX Runtime (what ``face_classifier`` serves)."""

    def __init__(
        self, path: Path, batch_size: int = 32, session_options: ort.SessionOptions | None = None
    ) -> None:
        """Open ``path`` on the CPU; ``session_options`` are ONNX Runtime's defaults if omitted."""
        import onnxruntime as ort

        self.path = Path(path)
        self.spec: ClassifierSpec
        self.spec, self.trained = read_classifier_spec(self.path)
        self.provenance = read_provenance(self.path)
        self.batch_size = batch_size
        self.session = ort.InferenceSession(
            str(self.path), sess_options=session_options, providers=["CPUExecutionProvider"]
        )

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """FP32 ``[F]`` fake probability of UINT8 crops ``[F, S, S, 3]``."""
        out = [np.zeros((0,), np.float32)]
        for start in range(0, len(crops), self.batch_size):
            batch = np.ascontiguousarray(crops[start : start + self.batch_size])
            result = self.session.run(
                [contract.CLASSIFIER_OUTPUT], {contract.CLASSIFIER_INPUT: batch}
            )[0]
            out.append(result.reshape(-1).astype(np.float32))
        return np.concatenate(out)


def resolve_model(model: Path, workdir: Path) -> Path:
    """Find the classifier ONNX file that ``model`` names.

    ``model`` may be a model repository (its served ``face_classifier`` version), the
    ``face_classifier`` folder itself, an ``.onnx`` file, or a training checkpoint (``.pt``,
    exported to ``workdir/model.onnx`` with the parity check of the real export).
    """
    from fakescope.serving.model_config import served_version_dir

    model = Path(model)
    if model.is_dir():
        nested = model / contract.CLASSIFIER_MODEL
        folder = nested if nested.is_dir() else model
        return served_version_dir(folder) / "model.onnx"
    if not model.is_file():
        raise FileNotFoundError(f"model not found: {model}")
    if model.suffix == ".onnx":
        return model
    if model.suffix in {".pt", ".pth"}:
        from fakescope.export.classifier import export_classifier, load_checkpoint
        from fakescope.export.repository import parity_faces

        checkpoint = load_checkpoint(model)
        target = workdir / "model.onnx"
        export_classifier(checkpoint, target, parity_faces(checkpoint.spec.input_size))
        return target
    raise ValueError(f"{model}: expected a model repository, an .onnx file or a .pt checkpoint")


def score_video(
    faces: VideoFaces, classifier: OnnxClassifier, params: AggregationParams
) -> tuple[float, np.ndarray, np.ndarray]:
    """``(FAKE_PROBABILITY, FRAME_SCORES, FACE_SCORES)`` as the ensemble computes them."""
    face_scores = classifier.predict(faces.crops)
    result = aggregate(faces.num_frames, faces.frame_index, face_scores, params)
    return result.fake_probability, result.frame_scores, face_scores


@dataclass(frozen=True)
class VideoResult:
    """One evaluated video."""

    name: str
    label: str
    probability: float | None  #: ``None`` when no face was found (server: ``no_face``)
    faces: int
    frames: int

    @property
    def status(self) -> str:
        """``ok`` or ``no_face``, as the server's ``STATUS``."""
        return contract.STATUS_OK if self.probability is not None else contract.STATUS_NO_FACE


@dataclass
class Evaluation:
    """Per-video results and the metrics over them."""

    videos: list[VideoResult]
    metrics: BinaryMetrics
    threshold_source: str
    youden_threshold: float
    model: str
    model_provenance: dict[str, str] = field(default_factory=dict)
    unit: str = "video"  #: what each result is: a ``video``, or a ``face`` crop

    @property
    def labels(self) -> np.ndarray:
        """0/1 labels (1 = FAKE)."""
        return np.array([int(v.label == "FAKE") for v in self.videos], np.int64)

    @property
    def scores(self) -> np.ndarray:
        """Per-video probabilities used for the metrics (no face = 0.5)."""
        return np.array(
            [NO_FACE_PROBABILITY if v.probability is None else v.probability for v in self.videos]
        )

    def roc_points(self) -> dict[str, list[float]] | None:
        """Return the ROC curve (false positive rate, recall, threshold); ``None``: one class."""
        labels = self.labels
        if labels.size == 0 or labels.min() == labels.max():
            return None
        fpr, tpr, thresholds = roc_curve(labels, self.scores)
        if fpr.size > _ROC_POINTS:  # keep the file readable: evenly spaced points, ends kept
            keep = np.unique(np.linspace(0, fpr.size - 1, _ROC_POINTS).round().astype(int))
            fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
        return {
            "fpr": [round(float(v), 6) for v in fpr],
            "tpr": [round(float(v), 6) for v in tpr],
            "thresholds": [round(float(v), 6) if np.isfinite(v) else None for v in thresholds],
        }

    def to_json(self) -> dict[str, Any]:
        """Return the report: metrics at the top level (``recall``, ``logloss``, ``auc``, …)."""
        metrics = self.metrics.to_json()
        return {
            **metrics,
            "confusion_matrix": {
                "rows": "true REAL, true FAKE",
                "columns": "predicted REAL, predicted FAKE",
                "matrix": [[self.metrics.tn, self.metrics.fp], [self.metrics.fn, self.metrics.tp]],
            },
            "unit": self.unit,
            "roc_curve": self.roc_points(),
            "threshold_source": self.threshold_source,
            "youden_threshold_on_this_set": self.youden_threshold,
            "no_face_videos": sum(v.probability is None for v in self.videos),
            "model": self.model,
            "model_provenance": self.model_provenance,
            "videos": [
                {
                    "video": v.name,
                    "label": v.label,
                    "fake_probability": v.probability,
                    "status": v.status,
                    "faces": v.faces,
                    "frames": v.frames,
                }
                for v in self.videos
            ],
        }


def choose_threshold(given: float | None, classifier: OnnxClassifier) -> tuple[float, str]:
    """Return the decision threshold and where it came from."""
    if given is not None:
        return float(given), "given (--threshold)"
    if contract.META_THRESHOLD in read_onnx_metadata(classifier.path):
        return classifier.spec.threshold, "the served threshold (model metadata)"
    return classifier.spec.threshold, "none stated (exported before version 3): 0.5"


def evaluate_videos(
    entries: Sequence[VideoEntry],
    faces: dict[str, VideoFaces],
    classifier: OnnxClassifier,
    params: AggregationParams,
    *,
    threshold: float | None = None,
) -> Evaluation:
    """Score every entry's video like the server and compute the metrics."""
    if not entries:
        raise ValueError("nothing to evaluate: no videos")
    results = []
    for entry in entries:
        found = faces[entry.name]
        probability, _, _ = score_video(found, classifier, params)
        results.append(
            VideoResult(
                entry.name,
                entry.label,
                None if math.isnan(probability) else float(probability),
                int(found.boxes.shape[0]),
                found.num_frames,
            )
        )
    return _summarise(results, classifier, threshold, "video")


def evaluate_face_crops(
    entries: Sequence[VideoEntry],
    crops: np.ndarray,
    classifier: OnnxClassifier,
    *,
    threshold: float | None = None,
) -> Evaluation:
    """Score face crops (already at the classifier's size) as the served classifier does."""
    if not entries:
        raise ValueError("nothing to evaluate: no faces")
    scores = classifier.predict(crops).astype(np.float64)
    results = [
        VideoResult(e.name, e.label, float(p), 1, 1) for e, p in zip(entries, scores, strict=True)
    ]
    return _summarise(results, classifier, threshold, "face")


def _summarise(
    results: list[VideoResult], classifier: OnnxClassifier, threshold: float | None, unit: str
) -> Evaluation:
    """Metrics over scored results at the chosen threshold (no face counts as 0.5)."""
    chosen, source = choose_threshold(threshold, classifier)
    labels = np.array([int(r.label == "FAKE") for r in results])
    scores = np.array(
        [NO_FACE_PROBABILITY if r.probability is None else r.probability for r in results]
    )
    return Evaluation(
        videos=results,
        metrics=binary_metrics(labels, scores, chosen),
        threshold_source=source,
        youden_threshold=youden_threshold(labels, scores),
        model=str(classifier.path),
        model_provenance=classifier.provenance,
        unit=unit,
    )


def format_table(evaluation: Evaluation) -> str:
    """Render a readable report: per-video lines, the metrics, the confusion matrix."""
    m = evaluation.metrics
    width = max([len(v.name) for v in evaluation.videos] + [5])
    unit = evaluation.unit
    lines = [f"{unit:<{width}}  label  p(fake)  status   faces"]
    shown = evaluation.videos if unit == "video" else evaluation.videos[:0]
    for v in shown:
        p = "   -   " if v.probability is None else f"{v.probability:7.4f}"
        lines.append(f"{v.name:<{width}}  {v.label:<5}  {p}  {v.status:<7}  {v.faces:5d}")

    def fmt(value: float) -> str:
        return "n/a (one class)" if not math.isfinite(value) else f"{value:.4f}"

    lines += [
        "",
        f"{unit}s {m.n}  (no face: {sum(v.probability is None for v in evaluation.videos)})",
        f"threshold {m.threshold:.4f}  ({evaluation.threshold_source}; "
        f"Youden-optimal on this set: {evaluation.youden_threshold:.4f})",
        f"recall (FAKE) {fmt(m.recall)}   precision {fmt(m.precision)}   "
        f"accuracy {fmt(m.accuracy)}",
        f"logloss {fmt(m.logloss)}   ROC-AUC {fmt(m.auc)}",
        "",
        "confusion matrix   pred REAL  pred FAKE",
        f"  true REAL        {m.tn:9d}  {m.fp:9d}",
        f"  true FAKE        {m.fn:9d}  {m.tp:9d}",
    ]
    return "\n".join(lines)


def write_report(evaluation: Evaluation, output_dir: Path) -> dict[str, Path]:
    """Write ``metrics.json``, ``roc.png`` and ``scores.png`` into ``output_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fakescope.training.tracking import report_figure

    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": output_dir / "metrics.json"}
    write_text_atomically(paths["metrics"], json.dumps(evaluation.to_json(), indent=2) + "\n")
    labels, scores = evaluation.labels, evaluation.scores

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if labels.min() != labels.max():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.step(fpr, tpr, where="post", label=f"AUC {evaluation.metrics.auc:.3f}")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "one class only: no ROC", ha="center")
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set(xlabel="false positive rate (REAL called FAKE)", ylabel="recall (FAKE)", title="ROC")
    fig.tight_layout()
    paths["roc"] = output_dir / "roc.png"
    fig.savefig(paths["roc"], dpi=100)
    report_figure("ROC", evaluation.unit, fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.linspace(0, 1, 21)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="REAL")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="FAKE")
    ax.axvline(evaluation.metrics.threshold, color="k", linestyle="--", label="threshold")
    unit = evaluation.unit
    ax.set(xlabel=f"{unit} fake probability", ylabel=f"{unit}s", title="Score histogram")
    ax.legend()
    fig.tight_layout()
    paths["scores"] = output_dir / "scores.png"
    fig.savefig(paths["scores"], dpi=100)
    report_figure("score histogram", unit, fig)
    plt.close(fig)
    return paths
