"""Temperature scaling (Guo et al., 2017): one positive scalar that calibrates the logits.

The served probability is ``sigmoid(logit / T)``; ``T`` minimises the validation LogLoss.
A single parameter barely overfits, but the figures reported for a model are still
*cross-fitted* (:func:`cross_fit`): each half of the validation groups is scored with the ``T``
fitted on the other half and labelled at the threshold chosen (Youden's J) on the other half,
while the served ``T`` and threshold are fitted on all of it. When a half lacks a class there
is nothing to fit on without the faces scored: no cross-fitted figures exist then.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from fakescope.training.binary_metrics import youden_threshold

__all__ = ["CrossFit", "cross_fit", "fit_temperature", "sigmoid"]

#: Search range of log(T): T in [0.05, 20].
_LOG_T_RANGE = (np.log(0.05), np.log(20.0))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    z = np.exp(x[~pos])
    out[~pos] = z / (1.0 + z)
    return out


def _nll(labels: np.ndarray, logits: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # log(1 + exp(-|z|)) + max(z, 0) - y z  == binary cross-entropy with logits
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """Return the ``T`` minimising the mean binary cross-entropy of ``sigmoid(logits / T)``.

    Golden-section search on ``log T`` (the loss is unimodal in it for a fixed sign of the
    logits' correlation with the labels).

    Raises:
        ValueError: when both classes are not present.

    """
    labels = np.asarray(labels, np.float64).ravel()
    logits = np.asarray(logits, np.float64).ravel()
    if labels.size != logits.size or labels.size == 0:
        raise ValueError("labels and logits must be non-empty and of one length")
    if np.all(labels == labels[0]):
        raise ValueError("temperature fitting needs both classes")
    lo, hi = _LOG_T_RANGE
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo + (1 - ratio) * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(labels, logits, np.exp(a)), _nll(labels, logits, np.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - ratio) * (hi - lo)
            fa = _nll(labels, logits, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(labels, logits, np.exp(b))
    return float(np.exp((lo + hi) / 2.0))


@dataclass(frozen=True)
class CrossFit:
    """Validation scores where no face is scored by what was fitted on its own half."""

    #: each face's probability, calibrated with the ``T`` fitted on the other half
    probabilities: np.ndarray
    #: each face's threshold: Youden's J on the other half's (so calibrated) probabilities
    thresholds: np.ndarray


def cross_fit(labels: np.ndarray, logits: np.ndarray, groups: list[str]) -> CrossFit | None:
    """Cross-fit the temperature and the threshold over two halves of the groups.

    Groups (a REAL video and its fakes) are halved by a stable hash of their name, so the
    halves do not depend on order. ``None`` when a half lacks REAL or FAKE faces: fitting on
    it is impossible, and fitting on every face would score faces with what they fitted.
    """
    labels = np.asarray(labels, np.float64).ravel()
    logits = np.asarray(logits, np.float64).ravel()
    half = np.asarray([hashlib.sha256(g.encode()).digest()[0] & 1 for g in groups], dtype=bool)
    probabilities = np.empty_like(logits)
    thresholds = np.empty_like(logits)
    for part in (half, ~half):
        other = ~part
        if np.unique(labels[other]).size != 2:
            return None
        t = fit_temperature(labels[other], logits[other])
        probabilities[part] = sigmoid(logits[part] / t)
        thresholds[part] = youden_threshold(labels[other], sigmoid(logits[other] / t))
    return CrossFit(probabilities, thresholds)
