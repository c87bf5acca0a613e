"""The host-speed reading a benchmark takes beside its timings."""

from __future__ import annotations

import hashlib

import pytest

from fakescope.benchmarks.host_speed import (
    PROBE_MODEL,
    CpuTicks,
    HostProbe,
    read_cpu_ticks,
    steal_share,
)

PROBE_MODEL_SHA256 = "88bd28c12c9cd6d194f6c40b8600b8a6fdadb92f7a077b49138b1f6bad07ba7e"

STAT = """cpu  100 5 20 800 10 0 3 12 7 0
cpu0 50 2 10 400 5 0 1 6 3 0
intr 12345
"""


def test_read_cpu_ticks_sums_the_first_eight_fields_when_guest_time_follows():
    # guest (7) and guest_nice (0) are already inside user time: not counted twice
    assert read_cpu_ticks(STAT) == CpuTicks(total=950, steal=12)


def test_read_cpu_ticks_is_unknown_when_the_kernel_has_no_steal_field():
    assert read_cpu_ticks("cpu  100 5 20 800\n") is None
    assert read_cpu_ticks("intr 1\n") is None


def test_steal_share_is_the_stolen_part_of_the_ticks_between_readings_when_both_exist():
    assert steal_share(CpuTicks(1000, 10), CpuTicks(3000, 110)) == pytest.approx(0.05)
    assert steal_share(None, CpuTicks(3000, 110)) is None
    assert steal_share(CpuTicks(1000, 10), CpuTicks(1000, 10)) is None


def test_read_cpu_ticks_reads_this_machine_when_it_has_proc_stat():
    ticks = read_cpu_ticks()
    if ticks is None:
        pytest.skip("no /proc/stat with a steal field on this machine")
    assert ticks.total > 0
    assert 0 <= ticks.steal <= ticks.total


def test_host_probe_times_its_pinned_rnet_when_read():
    probe = HostProbe()
    reading = probe.read(rounds=3)
    assert reading["rounds"] == 3
    assert 0 < reading["min_ms"] <= reading["median_ms"] <= reading["max_ms"]


def test_host_probe_model_is_the_pinned_rnet_of_earlier_runs_when_read_from_disk():
    # runs compare through the probe only while it times the same network: the served R-Net
    # up to commit a373ed6 (with ONNX PRelu), whatever the served one has become since
    assert hashlib.sha256(PROBE_MODEL.read_bytes()).hexdigest() == PROBE_MODEL_SHA256


def test_host_probe_refuses_when_rounds_is_below_one():
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        HostProbe().read(rounds=0)
