"""The measurements the capacity model is driven by, read from the committed result files."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakescope.paths import PROJECT_ROOT

BENCH_SUMMARY = PROJECT_ROOT / "benchmarks" / "results" / "summary.json"
SERVICE_TIMES = PROJECT_ROOT / "benchmarks" / "results" / "service_times.json"


class InputError(ValueError):
    """A result file is missing or lacks what the model needs; the message says which."""


@dataclass(frozen=True)
class VideoKind:
    """One video of the benchmark mix: its duration and its 1-user service-time quantiles."""

    name: str
    duration_s: float
    p50_s: float
    p95_s: float


@dataclass(frozen=True)
class SpeedUp:
    """How much 1-user work per second a replica does with ``n`` videos in hand.

    ``factors[i]`` is the measured throughput at ``users[i]`` closed-loop users divided by the
    1-user throughput (so 1.0 at 1 user). Between measured levels it is interpolated linearly;
    past the last level the box is saturated and the factor stays at its last value.
    """

    users: tuple[int, ...]
    factors: tuple[float, ...]

    def __post_init__(self) -> None:
        """Refuse a curve that does not start at 1 user with factor 1 or is not increasing."""
        if not self.users or self.users[0] != 1 or abs(self.factors[0] - 1.0) > 1e-9:
            raise InputError(f"speed-up must start at 1 user with factor 1: {self}")
        if list(self.users) != sorted(set(self.users)) or len(self.users) != len(self.factors):
            raise InputError(f"speed-up levels must be distinct and increasing: {self}")

    def __call__(self, n: int) -> float:
        """Total work rate with ``n`` videos in hand (0 for none)."""
        if n <= 0:
            return 0.0
        if n >= self.users[-1]:
            return self.factors[-1]
        for (u0, f0), (u1, f1) in zip(
            zip(self.users, self.factors, strict=True),
            zip(self.users[1:], self.factors[1:], strict=True),
            strict=False,
        ):
            if u0 <= n <= u1:
                return f0 + (f1 - f0) * (n - u0) / (u1 - u0)
        raise AssertionError("unreachable: n is within the measured levels")


@dataclass(frozen=True)
class BenchLevel:
    """One measured closed-loop level of ``make bench``: users, throughput, ratio quantiles."""

    protocol: str
    users: int
    videos_per_minute: float
    p50_ratio: float
    p95_ratio: float
    accepted: int
    #: video name -> (p50, p95) of its processing time / duration at this level
    per_video: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class Measured:
    """Everything the model takes from the result files."""

    durations_s: dict[str, float]
    bench_levels: tuple[BenchLevel, ...]
    bench_run_seconds: float
    bench_load: tuple[float, float]
    cores: int
    replica_start_s: float
    replica_start_runs: tuple[float, ...]
    #: today's per-video medians from service_times.json (processing, decode, stages, CPU)
    service_median: dict[str, dict[str, float]]
    service_runs_per_video: int
    service_code_version: str
    service_load: tuple[float, float]
    video_files: dict[str, dict[str, float]]
    frames_bytes: int

    def levels(self, protocol: str) -> list[BenchLevel]:
        """Return the bench levels of one protocol, by users."""
        levels = sorted((b for b in self.bench_levels if b.protocol == protocol), key=_users)
        if not levels:
            raise InputError(f"no bench levels for protocol {protocol!r}")
        return levels

    def speedup(self, protocol: str) -> SpeedUp:
        """Return the replica's speed-up curve from ``protocol``'s measured throughputs."""
        levels = self.levels(protocol)
        if levels[0].users != 1:
            raise InputError(f"the {protocol} bench has no 1-user level")
        base = levels[0].videos_per_minute
        return SpeedUp(
            tuple(b.users for b in levels), tuple(b.videos_per_minute / base for b in levels)
        )

    def kinds(self, protocol: str) -> tuple[VideoKind, ...]:
        """Return the bench videos with their 1-user service-time median and p95 (seconds)."""
        one_user = self.levels(protocol)[0]
        return tuple(
            VideoKind(
                name,
                self.durations_s[name],
                p50 * self.durations_s[name],
                p95 * self.durations_s[name],
            )
            for name, (p50, p95) in sorted(one_user.per_video.items())
        )


def _users(level: BenchLevel) -> int:
    return level.users


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path} is missing: run the measurement that writes it")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def read_bench_levels(summary: dict[str, Any]) -> tuple[BenchLevel, ...]:
    """Return the closed-loop levels of ``summary.json`` (load mode), every protocol."""
    if summary.get("mode") != "load":
        raise InputError("the bench summary is not a load run (mode != 'load')")
    levels = []
    for protocol, by_users in summary["levels"].items():
        for users, level in by_users.items():
            ratio = level["ratio"]
            if ratio["p50"] is None:
                raise InputError(f"bench level {protocol} {users} users has no answered video")
            per_video = {
                name: (float(q["p50"]), float(q["p95"]))
                for name, q in level["ratio_per_video"].items()
            }
            levels.append(
                BenchLevel(
                    protocol,
                    int(users),
                    float(level["videos_per_minute"]),
                    float(ratio["p50"]),
                    float(ratio["p95"]),
                    int(level["accepted"]),
                    per_video,
                )
            )
    return tuple(levels)


def load_measurements(
    bench_summary: Path = BENCH_SUMMARY, service_times: Path = SERVICE_TIMES
) -> Measured:
    """Read both result files; raise :class:`InputError` naming what is missing."""
    summary = _read(bench_summary)
    times = _read(service_times)
    try:
        durations = {k: float(v) for k, v in summary["inprocess"]["durations"].items()}
        medians = times["per_video_median"]
        missing = set(durations) - set(medians)
        if missing:
            raise InputError(f"service_times.json lacks the bench videos {sorted(missing)}")
        runs = times["runs"]
        return Measured(
            durations_s=durations,
            bench_levels=read_bench_levels(summary),
            bench_run_seconds=float(summary["run_time_seconds_per_level"]),
            bench_load=(
                float(summary["machine"]["load_average_at_start"][0]),
                float(summary["machine"]["load_average_at_end"][0]),
            ),
            cores=int(summary["machine"]["cores"]),
            replica_start_s=float(times["replica_start_seconds"]["median"]),
            replica_start_runs=tuple(float(s) for s in times["replica_start_seconds"]["runs"]),
            service_median=medians,
            service_runs_per_video=int(times["runs_per_video"]),
            service_code_version=str(times.get("code_version", "not recorded")),
            service_load=(
                float(times["machine"]["load_average_at_start"][0]),
                float(times["machine"]["load_average_at_end"][0]),
            ),
            video_files=times["video_files"],
            frames_bytes=int(statistics.median(r["frames_bytes"] for r in runs)),
        )
    except KeyError as exc:
        raise InputError(f"a result file lacks the field {exc}") from exc
