"""The soak's judgement (benchmarks/soak.py): every window, every record, the capacity it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fakescope.benchmarks.soak import (
    WINDOW_S,
    measured_capacity,
    render_markdown,
    verdict,
    windows,
)

START = 1000.0
MINUTES = 15  # three windows


def _samples(seconds: int) -> list[dict[str, Any]]:
    """A sample every 10 s for ``seconds``, the server's RSS flat."""
    return [
        {
            "t": START + t,
            "rss": {"tritonserver": 100 * 2**20},
            "rss_shmem": {},
            "client_regions": 0,
            "load1": 1.0,
        }
        for t in range(0, seconds, 10)
    ]


def _answered(ratio_at: Any, seconds: int = MINUTES * 60) -> list[dict[str, Any]]:
    """One video answered every second, its ratio ``ratio_at(seconds since the start)``."""
    return [
        {"finished_at": START + t, "status": "ok", "ratio": ratio_at(t)} for t in range(1, seconds)
    ]


def test_soak_verdict_misses_the_limit_when_only_the_warm_up_window_is_above_it():
    records = _answered(lambda t: 0.9 if t < WINDOW_S else 0.1)
    judged = verdict(windows(records, _samples(MINUTES * 60), START, MINUTES), 0.5, [])
    assert judged["targets"]["p95_within_limit_every_window"] is False
    assert not judged["passed"]
    assert judged["p95_drift"] == pytest.approx(0.0)  # the drift is still taken after warm-up


def test_soak_verdict_misses_the_limit_when_a_window_answered_nothing():
    records = _answered(lambda t: 0.1)
    records = [r for r in records if not WINDOW_S <= r["finished_at"] - START < 2 * WINDOW_S]
    rows = windows(records, _samples(MINUTES * 60), START, MINUTES)
    assert [row["p95_ratio"] is None for row in rows] == [False, True, False]
    assert verdict(rows, 0.5, [])["targets"]["p95_within_limit_every_window"] is False


def test_soak_windows_count_videos_lost_after_the_run_when_users_finish_them_late():
    # Locust's users finish the videos they hold after the run's minutes: five of them failed
    late = [{"finished_at": START + MINUTES * 60 + 3, "status": "error"}] * 5
    rows = windows(_answered(lambda t: 0.1) + late, _samples(MINUTES * 60), START, MINUTES)
    judged = verdict(rows, 0.5, [])
    assert (judged["lost"], judged["answered"]) == (5, MINUTES * 60 - 1)
    assert judged["targets"]["nothing_lost"] is False
    assert rows[-1]["minutes"] == pytest.approx([10.0, 15.05])  # to the last video's end


def test_soak_report_renders_n_a_when_a_window_has_no_sample():
    # the sampler stopped with the load generators at minute 3: two windows without a sample
    rows = windows(_answered(lambda t: 0.1, 180), _samples(180), START, MINUTES)
    result = {
        "users": 8,
        "users_grpc": 4,
        "users_http": 4,
        "minutes": MINUTES,
        "sample_seconds": 10,
        "windows": rows,
        "verdict": verdict(rows, 0.5, []),
        "server_exits": [],
        "limit": 0.5,
    }
    text = render_markdown(result)
    assert "| 0–5 | 179 | 0 | 0 | 0.100 | 100 | 0 | 1.0 |" in text
    assert "| 5–10 | 0 | 0 | 0 | — | n/a | n/a | n/a |" in text
    assert "The p95 limit is checked in every window; RSS growth and p95 drift" in text


def _level(p95: float | None, *, rejected: int = 0, **more: Any) -> dict[str, Any]:
    return {"ratio": {"p95": p95}, "rejected": rejected, "failures": 0, **more}


def _capacity(tmp_path: Path, levels: dict[str, dict[str, Any]]) -> int:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"levels": levels}))
    return measured_capacity(summary, 0.5)


def test_measured_capacity_stops_below_a_missed_level_when_a_higher_one_fits(tmp_path):
    levels = {"grpc": {"2": _level(0.3), "4": _level(0.7), "8": _level(0.45)}}
    assert _capacity(tmp_path, levels) == 2


def test_measured_capacity_needs_every_protocol_when_one_refused_at_the_top_level(tmp_path):
    levels = {
        "grpc": {"4": _level(0.3), "8": _level(0.45)},
        "http": {"4": _level(0.3), "8": _level(0.4, rejected=12)},
    }
    assert _capacity(tmp_path, levels) == 4


def test_measured_capacity_leaves_out_a_level_when_it_was_stopped_after_its_limit(tmp_path):
    # its records look fine, but the videos in flight when it was stopped have none
    levels = {"grpc": {"4": _level(0.3), "8": _level(0.4, stopped=True, locust_exit_code=0)}}
    assert _capacity(tmp_path, levels) == 4
