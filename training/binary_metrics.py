"""Binary detection metrics in numpy (FAKE = positive class, label 1).

Conventions, chosen to agree with scikit-learn (the tests check it on the same predictions):

* a video is predicted FAKE when ``probability >= threshold``;
* precision is 0 when nothing is predicted FAKE (scikit-learn's ``zero_division`` result);
* LogLoss clips probabilities to ``[eps, 1 - eps]`` first, ``eps = 1e-15`` as in the DFDC
  (Kaggle) evaluation: ``-mean(y log p + (1 - y) log(1 - p))``;
* ROC-AUC is the Mann-Whitney statistic (ties count one half); NaN when only one class exists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "DFDC_EPS",
    "BinaryMetrics",
    "binary_metrics",
    "log_loss",
    "roc_auc",
    "roc_curve",
    "youden_threshold",
]

#: Clipping of the DFDC (Kaggle) log loss.
DFDC_EPS = 1e-15


@dataclass(frozen=True)
class BinaryMetrics:
    """Metrics at one threshold (FAKE is the positive class)."""

    recall: float
    precision: float
    accuracy: float
    logloss: float
    auc: float
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    n: int

    def to_json(self) -> dict[str, float | int | None]:
        """Return a JSON-safe dict (NaN becomes ``None``)."""
        return {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def _arrays(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ in length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (REAL) or 1 (FAKE)")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must be finite and in [0, 1]")
    return y, p


def log_loss(labels: np.ndarray, probabilities: np.ndarray, eps: float = DFDC_EPS) -> float:
    """Clipped binary log loss (see module docstring)."""
    y, p = _arrays(labels, probabilities)
    if y.size == 0:
        return float("nan")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg)); NaN with one class."""
    y, p = _arrays(labels, probabilities)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.size, dtype=np.float64)
    sorted_p = p[order]
    i = 0
    while i < p.size:  # average ranks over ties
        j = i
        while j + 1 < p.size and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(
    labels: np.ndarray, probabilities: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` for every distinct score (``inf`` first: nothing FAKE)."""
    y, p = _arrays(labels, probabilities)
    thresholds = np.concatenate([[np.inf], np.unique(p)[::-1]])
    n_pos, n_neg = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    tpr = np.array([np.sum((p >= t) & (y == 1)) / n_pos for t in thresholds])
    fpr = np.array([np.sum((p >= t) & (y == 0)) / n_neg for t in thresholds])
    return fpr, tpr, thresholds


def youden_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Return the threshold maximising TPR - FPR (Youden's J); 0.5 with one class."""
    y, p = _arrays(labels, probabilities)
    if y.min(initial=0) == y.max(initial=0):
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, p)
    best = int(np.argmax(tpr[1:] - fpr[1:])) + 1
    return float(thresholds[best])


def binary_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float | np.ndarray = 0.5,
    eps: float = DFDC_EPS,
) -> BinaryMetrics:
    """Recall (FAKE), precision, accuracy, LogLoss, ROC-AUC and the confusion matrix.

    ``threshold``: one for every prediction, or one per prediction (cross-fitted thresholds;
    the result's ``threshold`` is NaN then: there is no single one).
    """
    y, p = _arrays(labels, probabilities)
    cut = np.asarray(threshold, np.float64)
    if cut.ndim and cut.shape != p.shape:
        raise ValueError(f"thresholds {cut.shape} and probabilities {p.shape} differ in shape")
    predicted = p >= cut
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    tn = int(np.sum(~predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    return BinaryMetrics(
        recall=tp / (tp + fn) if tp + fn else 0.0,
        precision=tp / (tp + fp) if tp + fp else 0.0,
        accuracy=(tp + tn) / y.size if y.size else float("nan"),
        logloss=log_loss(y, p, eps),
        auc=roc_auc(y, p),
        threshold=float(cut) if cut.ndim == 0 else float("nan"),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        n=int(y.size),
    )
