"""Temperature scaling (Guo et al., 2017): one positive scalar that calibrates the logits.

The served probability is ``sigmoid(logit / T)``; ``T`` minimises the validation LogLoss.
A single parameter barely overfits, but the figures reported for a model are still
*cross-fitted*: each half of the validation groups is scored with the ``T`` fitted on the other
half (:func:`cross_fitted_probabilities`), and the served ``T`` is fitted on all of it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cross_fitted_probabilities", "fit_temperature", "sigmoid"]

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


def cross_fitted_probabilities(
    labels: np.ndarray, logits: np.ndarray, groups: list[str]
) -> np.ndarray:
    """Probabilities where each half of the groups uses the ``T`` fitted on the other half.

    Groups (a REAL video and its fakes) are halved by a stable hash of their name, so the
    halves do not depend on order.
    """
    import hashlib

    labels = np.asarray(labels, np.float64).ravel()
    logits = np.asarray(logits, np.float64).ravel()
    half = np.asarray([hashlib.sha256(g.encode()).digest()[0] & 1 for g in groups], dtype=bool)
    out = np.empty_like(logits)
    for part in (half, ~half):
        other = ~part
        if not part.any():
            continue
        fit_on = other if np.unique(labels[other]).size == 2 else np.ones_like(other)
        t = fit_temperature(labels[fit_on], logits[fit_on])
        out[part] = sigmoid(logits[part] / t)
    return out
