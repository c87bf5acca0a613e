"""The soak report records a stall like an exit (benchmarks/soak.py): kind, time, models waiting."""

from __future__ import annotations

from fakescope.benchmarks.soak import (
    WINDOW_S,
    describe_host_probe,
    describe_server_exit,
    render_markdown,
    verdict,
)
from fakescope.benchmarks.soak import windows as soak_windows


def _result(events: list[dict]) -> dict:
    records = [
        {"finished_at": 1010.0 + w * WINDOW_S, "status": "ok", "ratio": 0.2} for w in range(3)
    ]
    samples = [
        {"t": 1010.0 + w * WINDOW_S, "load1": 1.0, "rss": {"tritonserver": 2**30}} for w in range(3)
    ]
    rows = soak_windows(records, samples, 1000.0, 15)
    return {
        "users": 4,
        "users_grpc": 2,
        "users_http": 2,
        "minutes": 15,
        "sample_seconds": 10.0,
        "windows": rows,
        "server_exits": events,
        "verdict": verdict(rows, 0.5, events),
    }


def test_soak_report_names_stall_and_waiting_models_when_server_stalled():
    stall = {"minute": 28.1, "kind": "stall", "code": None, "pending": {"face_detector": 4}}
    exit_ = {"minute": 24.0, "kind": "exit", "code": -6, "pending": {}}
    result = _result([exit_, stall])
    assert result["verdict"]["server_exits"] == 2
    assert result["verdict"]["server_stalls"] == 1
    assert not result["verdict"]["targets"]["server_never_exited"]
    text = render_markdown(result)
    assert (
        "Server exits and stalls (restarted each time): minute 24.0, exit code -6, "
        "minute 28.1, stall (face_detector 4 pending), killed" in text
    )


def test_describe_server_exit_reads_entries_without_kind_when_written_before_stalls():
    assert describe_server_exit({"minute": 23.96, "code": -6}) == "minute 24.0, exit code -6"


def test_describe_server_exit_says_metrics_unanswered_when_stall_had_no_waiting_model():
    event = {"minute": 3.0, "kind": "stall", "code": None, "pending": {}}
    assert describe_server_exit(event) == "minute 3.0, stall (metrics unanswered), killed"


def test_soak_report_gives_host_probe_before_and_after_when_the_run_probed_the_host():
    result = _result([])
    assert "Host probe" not in render_markdown(result)  # runs from before the probe
    result["host_probe"] = {
        "what": "R-Net",
        "before": {"median_ms": 64.84},
        "after": {"median_ms": 130.2},
        "steal_share": 0.004,
    }
    assert (
        "- Host probe before / after the load: 64.8 / 130.2 ms (R-Net); steal: 0.4 % of the "
        "run's CPU time." in render_markdown(result)
    )


def test_describe_host_probe_says_steal_is_unknown_when_the_machine_gives_none():
    host = {
        "what": "R-Net",
        "before": {"median_ms": 65.0},
        "after": {"median_ms": 66.0},
        "steal_share": None,
    }
    assert describe_host_probe(host) == (
        "- Host probe before / after the load: 65.0 / 66.0 ms (R-Net); steal: n/a of the run's "
        "CPU time."
    )


def test_soak_report_names_the_code_it_ran_when_the_run_recorded_it():
    result = _result([])
    assert "Code `" not in render_markdown(result)  # runs from before the soak recorded it
    result["code_version"] = "abc1234-dirty"
    assert "The first window is the warm-up. Code `abc1234-dirty`." in render_markdown(result)
