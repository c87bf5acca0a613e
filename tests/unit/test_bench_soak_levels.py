"""The soak's load generators (benchmarks/soak.py): a level that fails fails the soak."""

from __future__ import annotations

from typing import Any

import pytest

from fakescope.benchmarks.soak import LoadGeneratorError, run_levels

RECORD = {"finished_at": 1.0, "status": "ok", "ratio": 0.1}


def test_run_levels_names_the_level_that_raised_when_the_others_have_ended():
    ended: list[str] = []

    def level(protocol: str, users: int) -> list[dict[str, Any]]:
        if protocol == "http":
            raise RuntimeError("locust wrote no records for http at 1 users")
        ended.append(protocol)
        return [RECORD]

    with pytest.raises(LoadGeneratorError) as raised:
        run_levels({"grpc": 1, "http": 1}, level)
    assert str(raised.value) == (
        "load generator failed: http (1 users): RuntimeError: locust wrote no records for http "
        "at 1 users"
    )
    assert ended == ["grpc"]  # the other level ran to its end first


def test_run_levels_fails_when_a_level_records_no_video():
    with pytest.raises(LoadGeneratorError, match=r"grpc \(2 users\): no video recorded"):
        run_levels({"grpc": 2, "http": 2}, lambda p, n: [] if p == "grpc" else [RECORD])


def test_run_levels_returns_each_protocols_records_when_every_level_recorded_videos():
    records = run_levels({"grpc": 2, "http": 1}, lambda p, n: [dict(RECORD, users=n)] * n)
    assert {p: [r["users"] for r in rs] for p, rs in records.items()} == {
        "grpc": [2, 2],
        "http": [1],
    }
