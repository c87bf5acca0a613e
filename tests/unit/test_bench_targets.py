"""Issue #14's targets as each `fakescope bench` run reports them: met, not met, not measured."""

from __future__ import annotations

from typing import Any

import pytest

from fakescope.benchmarks.targets import check_targets, render_targets
from fakescope.benchmarks.videos import FACE_720P_10S

VIDEO = FACE_720P_10S.file_name


def _level(p95: float, *, video_p95: float | None = None, rejected: int = 0) -> dict[str, Any]:
    level: dict[str, Any] = {"ratio": {"p95": p95}, "rejected": rejected, "failures": 0}
    if video_p95 is not None:
        level["ratio_per_video"] = {VIDEO: {"p95": video_p95}, "other.mp4": {"p95": 0.9}}
    return level


def _speedup(median: float) -> dict[str, Any]:
    return {"median": median, "min": median - 1, "max": median + 1, "per_video": {}}


def _summary(**overrides: Any) -> dict[str, Any]:
    summary = {
        "mode": "load",
        "levels": {
            "grpc": {"1": _level(0.2, video_p95=0.05), "8": _level(0.5)},
            "http": {"1": _level(0.2, video_p95=0.04), "8": _level(0.3)},
        },
        "triton_overhead": 0.1,
        "speedup_vs_like_for_like_baseline": _speedup(15.0),
        "speedup_ceiling_vs_like_for_like_baseline": _speedup(20.0),
        "speedup_vs_seed_pipeline": _speedup(25.0),
    }
    return summary | overrides


def _met(summary: dict[str, Any]) -> dict[str, bool | None]:
    return {check["name"]: check["met"] for check in check_targets(summary)}


def test_check_targets_meets_every_target_when_each_figure_sits_on_its_bound():
    assert _met(_summary()) == {
        "1 user, 10 s 720p": True,
        "8 users": True,
        "Triton vs in-process": True,
        "like-for-like speed-up": True,
        "seed speed-up": True,
    }


def test_check_targets_fails_each_target_when_its_figure_is_past_the_bound():
    summary = _summary(
        levels={
            "grpc": {"1": _level(0.01, video_p95=0.051), "8": _level(0.4, rejected=1)},
            "http": {"1": _level(0.01, video_p95=0.01), "8": _level(0.4)},
        },
        triton_overhead=0.101,
        speedup_vs_like_for_like_baseline=_speedup(14.9),
        speedup_vs_seed_pipeline=_speedup(24.9),
    )
    # the 1-user target reads the 10 s 720p video alone; one refusal at 8 users misses it
    assert set(_met(summary).values()) == {False}


def test_check_targets_says_not_measured_when_the_run_lacks_the_level_or_the_baseline():
    summary = _summary(
        levels={"grpc": {"1": _level(0.2), "2": _level(0.3)}},
        triton_overhead=None,
    )
    del summary["speedup_vs_like_for_like_baseline"], summary["speedup_vs_seed_pipeline"]
    assert set(_met(summary).values()) == {None}


def test_check_targets_names_what_was_measured_when_rendered():
    summary = _summary()
    summary["levels"]["grpc"]["1"]["ratio_per_video"][VIDEO]["count"] = 11  # older runs: none
    checks = check_targets(summary)
    measured = {check["name"]: check["measured"] for check in checks}
    assert measured["1 user, 10 s 720p"] == "grpc 0.050 (11 videos), http 0.040"
    assert measured["like-for-like speed-up"] == (
        "15.0x (14.0-16.0x); at most 20.0x after the client's decode"
    )
    lines = render_targets(checks)
    assert lines[2] == "| target | what | measured | met |"
    assert lines[-1].startswith("| seed speed-up | >= 25x, median over videos | 25.0x")
    assert lines[-1].endswith("| met |")


def test_check_targets_has_none_when_the_run_is_an_overload_run():
    assert check_targets(_summary(mode="overload")) == []
    assert render_targets([]) == []


def test_check_targets_reports_the_gpu_capacity_with_its_name_when_the_host_has_a_gpu():
    def level(p95: float, per_minute: float, rejected: int = 0) -> dict[str, Any]:
        return _level(p95, rejected=rejected) | {"videos_per_minute": per_minute}

    gpu = {"gpus": [{"name": "NVIDIA H200", "memory_total": "1 MiB", "driver": "1"}]}
    summary = _summary(
        machine=gpu,
        limit=0.5,
        levels={
            # the busiest level within the limit counts, not one that refused or ran past it
            "grpc": {"1": level(0.2, 52), "8": level(0.29, 84), "16": level(0.52, 96)},
            "http": {"8": level(0.23, 88), "16": level(0.49, 92, rejected=8)},
        },
    )
    capacity = check_targets(summary)[-1]
    assert capacity["name"] == "GPU capacity"
    assert capacity["measured"] == (
        "1 × NVIDIA H200: grpc 84 videos/min (8 users); http 88 videos/min (8 users)"
    )
    assert capacity["met"] is True
    # no level within the limit on one protocol: the figure is missing there
    summary["levels"]["http"] = {"16": level(0.6, 92)}
    capacity = check_targets(summary)[-1]
    assert capacity["measured"].endswith("http: no level within the limit")
    assert capacity["met"] is False
    # a host without a GPU has no such row
    assert "GPU capacity" not in _met(_summary())
    # where the run says which models were on the GPU, the row names them, or says none was
    summary["served_instances"] = {"face_classifier": ["1 KIND_GPU"], "x": ["1 KIND_CPU"]}
    assert check_targets(summary)[-1]["measured"].startswith(
        "1 × NVIDIA H200 (face_classifier on it): grpc 84"
    )
    # nets run in the detector's own process: their served GPU instances are not counted
    summary["served_instances"]["mtcnn_pnet"] = ["1 KIND_GPU"]
    summary["detector_nets"] = "in_process"
    assert "(face_classifier on it)" in check_targets(summary)[-1]["measured"]
    summary["served_instances"] = {"face_classifier": ["1 KIND_CPU"]}
    capacity = check_targets(summary)[-1]
    assert (capacity["measured"], capacity["met"]) == (
        "1 × NVIDIA H200, no model served on it",
        None,
    )


def _load_check(grpc_8: dict[str, Any]) -> dict[str, Any]:
    summary = _summary()
    summary["levels"]["grpc"]["8"] = grpc_8
    (load,) = [check for check in check_targets(summary) if check["name"] == "8 users"]
    return load


@pytest.mark.parametrize(
    ("rejected", "failures"), [(120, 0), (0, 137), (0, 0)], ids=["refused", "failed", "none"]
)
def test_check_targets_misses_the_load_target_when_the_8_user_level_answered_nothing(
    rejected, failures
):
    level = {"ratio": {"p95": None}, "rejected": rejected, "failures": failures}
    load = _load_check(level)
    assert load["met"] is False  # measured, and missed: not "not measured"
    assert load["measured"].startswith(f"grpc n/a, {rejected + failures} refused or failed;")


def test_check_targets_misses_the_load_target_when_the_8_user_level_was_stopped():
    load = _load_check(_level(0.3) | {"stopped": True, "locust_exit_code": 0})
    assert load["met"] is False
    assert load["measured"].startswith(
        "grpc 0.300, 0 refused or failed, stopped after its limit, the videos then in flight "
        "have no record;"
    )
