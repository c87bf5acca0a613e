"""The served ``face_detector``'s queue, watched through Triton's metrics, and users to fill it."""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import pytest

from fakescope import contract
from fakescope.client.triton import DetectorClient, ServerError
from fakescope.serving.embedded import EmbeddedTriton
from fakescope.serving.watchdog import PENDING_METRIC, SUCCESS_METRIC


def model_counts(metrics_url: str, model: str) -> tuple[int, int]:
    """Return ``model``'s waiting requests and its completed ones so far (Triton's metrics)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    counts = {PENDING_METRIC: 0, SUCCESS_METRIC: 0}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in counts and f'model="{model}"' in rest:
            counts[name] += int(float(line.rsplit(" ", 1)[1]))
    return counts[PENDING_METRIC], counts[SUCCESS_METRIC]


def detector_counts(triton: EmbeddedTriton) -> tuple[int, int]:
    """Return ``face_detector``'s waiting requests and its completed ones so far (metrics)."""
    return model_counts(triton.metrics_url, contract.FACE_DETECTOR_MODEL)


def wait_until_waiting(triton: EmbeddedTriton, count: int) -> None:
    """Wait until ``count`` requests wait in ``face_detector``'s queue (Triton's metrics)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if detector_counts(triton)[0] >= count:
            return
        time.sleep(0.01)
    pytest.fail(f"face_detector never had {count} requests waiting")


def analyze_in_thread(
    url: str,
    frames: np.ndarray,
    duration: float | None,
    outcomes: dict[str, str],
    name: str,
    spent: float = 0.0,
) -> threading.Thread:
    """Start a user analysing ``frames`` (gRPC, shared memory, default retries).

    Records ``ok`` or the error under ``name``.
    """

    def analyze() -> None:
        with DetectorClient(url, "grpc", shared_memory=True, timeout_s=120) as client:
            try:
                result = client.infer(frames, duration_seconds=duration, spent_seconds=spent)
                outcomes[name] = result.status
            except ServerError as exc:
                outcomes[name] = f"{exc.status}: {exc}"

    user = threading.Thread(target=analyze)
    user.start()
    return user
