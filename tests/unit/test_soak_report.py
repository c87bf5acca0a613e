"""The soak run's arithmetic (benchmarks/soak.py): capacity, 5-minute windows and targets."""

from __future__ import annotations

import json
import os
from multiprocessing import shared_memory

import pytest

from fakescope.benchmarks.soak import (
    WINDOW_S,
    client_regions_bytes,
    measured_capacity,
    render_markdown,
    shmem_rss_bytes,
    verdict,
    windows,
)
from fakescope.client.shared_memory import REGION_PREFIX


def _level(p95: float, rejected: int = 0) -> dict:
    return {"ratio": {"p95": p95}, "rejected": rejected, "failures": 0}


def test_measured_capacity_is_most_users_within_limit_when_bench_summary_given(tmp_path):
    summary = tmp_path / "summary.json"
    levels = {"1": _level(0.1), "4": _level(0.4), "8": _level(0.45, rejected=3)}
    summary.write_text(json.dumps({"levels": {"grpc": levels, "http": {"2": _level(0.3)}}}))
    assert measured_capacity(summary, 0.5) == 4


def test_measured_capacity_raises_value_error_when_no_level_fits(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"levels": {"grpc": {"1": _level(0.9)}}}))
    with pytest.raises(ValueError, match="no level within the limit"):
        measured_capacity(summary, 0.5)


def _run(rss_growth: float, lost_in_last: int) -> dict:
    start = 1000.0
    records, samples = [], []
    for w in range(3):
        t = start + w * WINDOW_S + 10
        records += [{"finished_at": t, "status": "ok", "ratio": 0.2 + 0.01 * i} for i in range(20)]
        if w == 2:
            records += [{"finished_at": t, "status": "error"}] * lost_in_last
        rss = 1000 * (1 + rss_growth * (w >= 2))
        samples.append(
            {"t": t, "load1": 1.0, "rss": {"tritonserver": rss * 2**20, "locust:grpc": 7 * 2**20}}
        )
    return verdict(windows(records, samples, start, 15), 0.5, [])


def test_soak_verdict_passes_when_rss_is_flat_and_nothing_lost():
    judged = _run(rss_growth=0.01, lost_in_last=0)
    assert judged["passed"], judged
    assert judged["server_rss_growth"] == pytest.approx(0.01)


def test_soak_verdict_fails_when_server_rss_grows_5_percent_after_warm_up():
    judged = _run(rss_growth=0.06, lost_in_last=0)
    assert not judged["targets"]["server_rss_growth_below_5_percent"]
    assert not judged["passed"]


def test_soak_verdict_fails_when_a_request_is_lost():
    judged = _run(rss_growth=0.0, lost_in_last=1)
    assert judged["lost"] == 1
    assert not judged["passed"]


def test_soak_verdict_fails_when_the_server_exited():
    records = [
        {"finished_at": 1010.0 + w * WINDOW_S, "status": "ok", "ratio": 0.2} for w in range(3)
    ]
    samples = [
        {"t": 1010.0 + w * WINDOW_S, "load1": 1.0, "rss": {"tritonserver": 2**30}} for w in range(3)
    ]
    judged = verdict(windows(records, samples, 1000.0, 15), 0.5, [{"t": 1500.0, "code": -6}])
    assert judged["server_exits"] == 1
    assert not judged["targets"]["server_never_exited"]
    assert not judged["passed"]


def test_soak_verdict_separates_shared_memory_when_only_the_pools_grew():
    start = 1000.0
    records, samples = [], []
    for w in range(3):
        t = start + w * WINDOW_S + 10
        records += [{"finished_at": t, "status": "ok", "ratio": 0.2} for _ in range(5)]
        shmem = 100 + 80 * (w >= 2)  # a python backend pool touched further, in both processes
        samples.append(
            {
                "t": t,
                "load1": 1.0,
                "rss": {"tritonserver": (500 + shmem) * 2**20, "stub:x": (100 + shmem) * 2**20},
                "rss_shmem": {"tritonserver": shmem * 2**20, "stub:x": shmem * 2**20},
            }
        )
    judged = verdict(windows(records, samples, start, 15), 0.5, [])
    assert judged["server_rss_growth"] == pytest.approx(160 / 800)
    assert judged["server_private_rss_growth"] == pytest.approx(0.0)
    assert judged["private_rss_growth_per_process"] == pytest.approx(
        {"tritonserver": 0.0, "stub:x": 0.0}
    )
    assert not judged["targets"]["server_rss_growth_below_5_percent"]  # the target is all RSS


def test_shmem_rss_bytes_counts_shared_memory_when_process_touches_a_segment():
    before = shmem_rss_bytes(os.getpid())
    segment = shared_memory.SharedMemory(create=True, size=16 * 2**20)
    try:
        segment.buf[:] = b"\x01" * segment.size  # resident only once touched
        assert shmem_rss_bytes(os.getpid()) - before >= 15 * 2**20
    finally:
        segment.close()
        segment.unlink()


def _client_side_run(regions_mib: list[float], locust_mib: list[float]) -> list[dict]:
    start = 1000.0
    records, samples = [], []
    for w, (regions, locust) in enumerate(zip(regions_mib, locust_mib, strict=True)):
        t = start + w * WINDOW_S + 10
        records += [{"finished_at": t, "status": "ok", "ratio": 0.2} for _ in range(5)]
        samples.append(
            {
                "t": t,
                "load1": 1.0,
                "rss": {"tritonserver": 2**30, "locust:grpc": locust * 2**20},
                "rss_shmem": {"locust:grpc": regions * 2**20},
                "client_regions": int(regions * 2**20),
            }
        )
    return windows(records, samples, start, 5 * len(regions_mib))


def test_soak_verdict_reports_load_generator_growth_apart_when_only_the_client_grew():
    rows = _client_side_run(regions_mib=[88, 88, 176], locust_mib=[300, 300, 400])
    judged = verdict(rows, 0.5, [])
    assert judged["passed"]  # the client side is reported, not judged
    assert judged["rss_growth_per_process"] == {"tritonserver": 0.0}
    assert judged["load_generator_rss_growth_per_process"] == pytest.approx(
        {"locust:grpc": 100 / 300}
    )
    assert judged["load_generator_private_rss_growth_per_process"] == pytest.approx(
        {"locust:grpc": 12 / 212}
    )
    assert judged["client_regions_mib"] == pytest.approx([88, 176])
    report = render_markdown(
        {
            "users": 2,
            "users_grpc": 2,
            "users_http": 0,
            "minutes": 15,
            "sample_seconds": 10.0,
            "windows": rows,
            "server_exits": [],
            "verdict": judged,
        }
    )
    assert "locust:grpc +33.3 % (+5.7 % without shared memory)" in report
    assert "88 MiB in the first window after warm-up, 176 MiB in the last" in report


def test_client_regions_bytes_counts_only_client_regions_when_others_share_the_folder(tmp_path):
    (tmp_path / f"{REGION_PREFIX}1_0").write_bytes(b"\0" * 4096)
    (tmp_path / f"{REGION_PREFIX}1_1").write_bytes(b"\0" * 1024)
    (tmp_path / "fakescope_18400_stub_pool").write_bytes(b"\0" * 8192)  # a server's pool
    assert client_regions_bytes(tmp_path) == 5120
