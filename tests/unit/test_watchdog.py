"""The progress watchdog's decision (fakescope/serving/watchdog.py): snapshots in, stall out."""

from __future__ import annotations

import pytest

from fakescope.serving.watchdog import (
    MetricsUnavailableError,
    ModelProgress,
    ProgressWatchdog,
    parse_metrics,
)

TIMEOUT = 60.0


def _watchdog() -> ProgressWatchdog:
    return ProgressWatchdog(TIMEOUT, started_at=0.0)


def _snap(**models: tuple[int, int]) -> dict[str, ModelProgress]:
    """``model=(pending, finished)``."""
    return {m: ModelProgress(pending=p, finished=f) for m, (p, f) in models.items()}


def test_watchdog_never_stalls_when_server_is_idle():
    watchdog = _watchdog()
    for t in range(0, 600, 5):
        assert watchdog.observe(_snap(face_detector=(0, 7), deepfake_detector=(0, 7)), t) is None


def test_watchdog_does_not_stall_when_pending_model_keeps_finishing_requests():
    watchdog = _watchdog()
    for i, t in enumerate(range(0, 600, 5)):
        assert watchdog.observe(_snap(face_detector=(4, i)), t) is None


def test_watchdog_stalls_naming_model_and_pending_when_nothing_finishes_past_timeout():
    watchdog = _watchdog()
    assert watchdog.observe(_snap(face_detector=(0, 10), face_classifier=(0, 3)), 0) is None
    assert watchdog.observe(_snap(face_detector=(2, 10), face_classifier=(0, 3)), 5) is None
    assert watchdog.observe(_snap(face_detector=(3, 10), face_classifier=(0, 3)), 65) is None
    stall = watchdog.observe(_snap(face_detector=(4, 10), face_classifier=(0, 3)), 66)
    assert stall is not None
    assert stall.pending == {"face_detector": 4}
    assert stall.waited_s == pytest.approx(61)
    assert not stall.metrics_unanswered
    assert "face_detector (4 pending)" in stall.describe()


def test_watchdog_stalls_when_waiting_requests_are_refused_and_the_next_one_waits():
    """The soak's hang: each request waits out the 5 s queue timeout, nothing is executed."""
    watchdog = _watchdog()
    watchdog.observe(_snap(face_detector=(1, 10)), 0)
    for t in range(5, 60, 5):  # refused (not progress); the queue is empty between requests
        assert watchdog.observe(_snap(face_detector=(0, 10)), t) is None
    stall = watchdog.observe(_snap(face_detector=(1, 10)), 61)
    assert stall is not None and stall.pending == {"face_detector": 1}


def test_watchdog_restarts_its_clock_when_the_waiting_model_finishes_a_request():
    watchdog = _watchdog()
    watchdog.observe(_snap(face_detector=(2, 10), face_classifier=(0, 1)), 0)
    assert watchdog.observe(_snap(face_detector=(2, 11), face_classifier=(0, 1)), 50) is None
    assert watchdog.observe(_snap(face_detector=(2, 11), face_classifier=(0, 1)), 100) is None
    assert watchdog.observe(_snap(face_detector=(2, 11), face_classifier=(0, 1)), 111) is not None


def test_watchdog_stalls_one_model_when_other_models_keep_finishing():
    """Per model: an upstream step that keeps working does not hide a hung later step."""
    watchdog = _watchdog()
    for i, t in enumerate(range(0, 61, 5)):
        assert watchdog.observe(_snap(face_detector=(1, i), face_scorer=(3, 5)), t) is None
    stall = watchdog.observe(_snap(face_detector=(1, 99), face_scorer=(3, 5)), 65)
    assert stall is not None and stall.pending == {"face_scorer": 3}


def test_watchdog_stalls_when_metrics_do_not_answer_past_timeout():
    watchdog = _watchdog()
    assert watchdog.observe(_snap(face_detector=(0, 1)), 10) is None
    assert watchdog.observe(None, 40) is None
    assert watchdog.observe(None, 70) is None
    stall = watchdog.observe(None, 71)
    assert stall is not None and stall.metrics_unanswered and stall.pending == {}
    assert "unanswered for 61 s" in stall.describe()


def test_watchdog_stalls_when_metrics_never_answer_from_the_start():
    watchdog = ProgressWatchdog(TIMEOUT, started_at=100.0)
    assert watchdog.observe(None, 150) is None
    assert watchdog.observe(None, 161) is not None


def test_watchdog_starts_over_when_counters_go_down_after_a_restart():
    """A new server process counts from 0: not negative progress, and old waits are forgotten."""
    watchdog = _watchdog()
    # face_scorer has waited since t=0 without finishing anything (its counter is still 0)
    watchdog.observe(_snap(face_detector=(1, 500), face_scorer=(1, 0)), 0)
    assert watchdog.observe(_snap(face_detector=(1, 500), face_scorer=(1, 0)), 50) is None
    # restarted at t=55: face_detector's counter is back near 0; face_scorer's reads the same,
    # yet its wait began with the new process, not at t=0
    assert watchdog.observe(_snap(face_detector=(0, 2), face_scorer=(1, 0)), 62) is None
    assert watchdog.observe(_snap(face_detector=(0, 2), face_scorer=(1, 0)), 100) is None
    stall = watchdog.observe(_snap(face_detector=(0, 2), face_scorer=(1, 0)), 123)
    assert stall is not None and stall.pending == {"face_scorer": 1}
    assert stall.waited_s == pytest.approx(61)


def test_watchdog_refuses_when_timeout_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        ProgressWatchdog(0, started_at=0.0)


# What tritonserver 2.51 answered here (lines of a real /metrics answer, trimmed) while a python
# model hung and one request waited behind it, after one request refused by its queue.
TRITON_METRICS = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="pipeline",version="1"} 1
nv_inference_request_success{model="face_detector",version="1"} 3
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="pipeline",reason="OTHER",version="1"} 4
nv_inference_request_failure{model="face_detector",reason="REJECTED",version="1"} 1
nv_inference_request_failure{model="face_detector",reason="CANCELED",version="1"} 2
nv_inference_request_failure{model="face_detector",reason="BACKEND",version="1"} 5
# HELP nv_inference_exec_count Number of model executions performed
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="pipeline",version="1"} 1
nv_inference_exec_count{model="face_detector",version="1"} 3
# HELP nv_inference_pending_request_count Instantaneous number of pending requests
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="pipeline",version="1"} 0
nv_inference_pending_request_count{model="face_detector",version="1"} 1
# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0.25
"""


def test_parse_metrics_counts_finished_without_refused_or_canceled_when_given_triton_text():
    parsed = parse_metrics(TRITON_METRICS)
    # face_detector: 3 successes + 3 executions + 5 BACKEND failures; REJECTED/CANCELED left out
    assert parsed["face_detector"] == ModelProgress(pending=1, finished=11)
    assert parsed["pipeline"] == ModelProgress(pending=0, finished=6)


def test_parse_metrics_raises_when_answer_has_no_triton_request_metrics():
    with pytest.raises(MetricsUnavailableError, match="no per-model request metrics"):
        parse_metrics("<html>not found</html>\nnv_cpu_utilization 0.2\n")
