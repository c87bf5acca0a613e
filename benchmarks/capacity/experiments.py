"""The model's runs: calibration against the bench, the arrival-rate sweep, the daily volumes.

Every run is seeded, so the same inputs give the same result file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from fakescope.benchmarks.capacity.cluster import (
    Cluster,
    Mix,
    autoscale,
    closed_loop_user,
    constant_rate,
    diurnal_rate,
    poisson_arrivals,
    ratio_quantiles,
)
from fakescope.benchmarks.capacity.hpa import Autoscaler, HpaBehavior
from fakescope.benchmarks.capacity.inputs import Measured, SpeedUp
from fakescope.contract import PROCESSING_LIMIT_RATIO

logger = logging.getLogger(__name__)

#: The product's hard limit on processing time / video duration.
LIMIT = PROCESSING_LIMIT_RATIO
QUANTILES = (0.5, 0.95)
#: Seeds every static replica count must pass at the peak rate.
STATIC_SEEDS = 3


@dataclass(frozen=True)
class Model:
    """What every run shares: the replica's behaviour, the mix, the job slots, the start time."""

    speedup: SpeedUp
    mix: Mix
    slots: int
    start_s: float

    def capacity_per_replica(self) -> float:
        """Videos per second one replica finishes with all its slots busy."""
        return self.speedup(self.slots) / self.mix.mean_work_s

    def replicas_for(self, rate: float) -> int:
        """Fewest replicas whose slots, all busy, keep up with ``rate`` videos per second."""
        return max(1, math.ceil(rate / self.capacity_per_replica()))


def build_model(measured: Measured, protocol: str, slots: int) -> Model:
    """Return the model driven by ``protocol``'s bench: its speed-up and its 1-user videos."""
    kinds = measured.kinds(protocol)
    mix = Mix.from_quantiles(
        [k.duration_s for k in kinds], [k.p50_s for k in kinds], [k.p95_s for k in kinds]
    )
    return Model(measured.speedup(protocol), mix, slots, measured.replica_start_s)


def closed_loop(
    model: Model, users: int, seconds: float, warmup_s: float, window_s: float, seed: int
) -> dict[str, Any]:
    """One replica and ``users`` bench users back to back, as ``make bench`` ran them.

    Besides the quantiles over the whole run, it reports how they spread over windows as long
    as one bench level (5th to 95th percentile of the windows' values): the range a single
    measurement of that length would fall in if the model were right.
    """
    env = simpy.Environment()
    # every user's video is in hand at once, as in the bench (no slot limit)
    cluster = Cluster(env, model.speedup, slots=users, start_s=0.0, record_after=warmup_s)
    cluster.add_ready(1)
    rng = np.random.default_rng(seed)
    kinds = len(model.mix.durations_s)
    end = warmup_s + seconds
    for user in range(users):
        env.process(closed_loop_user(env, cluster, model.mix, rng, user % kinds, end))
    env.run(until=end)
    jobs = cluster.finished
    p50, p95 = ratio_quantiles(jobs, QUANTILES)
    windows = [
        [j for j in jobs if start <= j.arrived < start + window_s]
        for start in np.arange(warmup_s, end - window_s + 1e-9, window_s)
    ]
    spread = np.array([ratio_quantiles(w, QUANTILES) for w in windows if len(w) >= 2])
    return {
        "p50": p50,
        "p95": p95,
        "videos_per_minute": len(jobs) * 60.0 / seconds,
        "p50_window_range": [float(x) for x in np.quantile(spread[:, 0], [0.05, 0.95])],
        "p95_window_range": [float(x) for x in np.quantile(spread[:, 1], [0.05, 0.95])],
    }


def calibrate(
    model: Model, measured: Measured, seconds: float, warmup_s: float, seed: int
) -> dict[str, Any]:
    """Simulate each bench level on one replica; compare with both protocols' measurements."""
    rows = []
    for level in measured.levels("grpc"):
        sim = closed_loop(
            model, level.users, seconds, warmup_s, measured.bench_run_seconds, seed + level.users
        )
        row: dict[str, Any] = {"users": level.users, "simulated": sim, "measured": {}}
        for protocol in ("grpc", "http"):
            match = [b for b in measured.levels(protocol) if b.users == level.users]
            if match:
                b = match[0]
                row["measured"][protocol] = {
                    "p50": b.p50_ratio,
                    "p95": b.p95_ratio,
                    "videos_per_minute": b.videos_per_minute,
                    "videos": b.accepted,
                }
        rows.append(row)
    errors: dict[str, dict[str, float]] = {}
    for protocol in ("grpc", "http"):
        for q in ("p50", "p95"):
            rel = [
                row["simulated"][q] / row["measured"][protocol][q] - 1.0
                for row in rows
                if protocol in row["measured"]
            ]
            if rel:
                errors.setdefault(protocol, {})[f"{q}_max_abs_relative"] = max(abs(r) for r in rel)
                errors[protocol][f"{q}_mean_relative"] = float(np.mean(rel))
                inside = [
                    lo <= row["measured"][protocol][q] <= hi
                    for row in rows
                    if protocol in row["measured"]
                    for lo, hi in [row["simulated"][f"{q}_window_range"]]
                ]
                errors[protocol][f"{q}_inside_window_range"] = sum(inside)
                errors[protocol]["levels"] = len(inside)
    return {
        "levels": rows,
        "errors": errors,
        "protocol_disagreement": protocol_disagreement(rows),
        "simulated_seconds_per_level": seconds,
    }


def protocol_disagreement(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Largest relative gap between the two protocols' measurements of the same level.

    Both measured the same server and videos, so this is how far the bench's own figures
    scatter: a floor for what a model can be held to.
    """
    gaps: dict[str, float] = {}
    for q in ("p50", "p95"):
        values = [
            abs(row["measured"]["http"][q] / row["measured"]["grpc"][q] - 1.0)
            for row in rows
            if {"grpc", "http"} <= set(row["measured"])
        ]
        if values:
            gaps[f"{q}_max_relative"] = max(values)
    return gaps


@dataclass(frozen=True)
class OpenRun:
    """The outcome of one open-arrival run."""

    p50: float
    p95: float
    over_limit_share: float
    mean_replicas: float
    max_replicas: int
    videos: int
    unfinished: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dict(self.__dict__)


def open_run(
    model: Model,
    rate: Callable[[float], float],
    rate_max: float,
    seconds: float,
    warmup_s: float,
    seed: int,
    *,
    behavior: HpaBehavior | None,
    replicas: int,
    t0: float = 0.0,
    drain_s: float = 600.0,
) -> OpenRun:
    """Poisson arrivals for ``warmup_s + seconds``; the HPA sizes the cluster unless ``None``.

    ``replicas`` is the count at the start (fixed when ``behavior`` is ``None``). Jobs that
    arrive during the warm-up are not counted; arrivals stop at the end and the jobs in hand
    get ``drain_s`` more to finish (any left are reported as ``unfinished``).
    """
    env = simpy.Environment()
    end = warmup_s + seconds
    cluster = Cluster(env, model.speedup, model.slots, model.start_s, record_after=warmup_s)
    cluster.add_ready(replicas)
    rng = np.random.default_rng(seed)
    arrivals = env.process(poisson_arrivals(env, cluster, model.mix, rate, rate_max, rng, end, t0))
    if behavior is not None:
        env.process(autoscale(env, cluster, Autoscaler(behavior)))
    env.run(until=arrivals)
    expected = _arrived_after(cluster, warmup_s)
    deadline = env.now + drain_s
    while len(cluster.finished) < expected and env.now < deadline:
        env.run(until=min(deadline, env.now + 10.0))
    jobs = cluster.finished
    p50, p95 = ratio_quantiles(jobs, QUANTILES)
    over = float(np.mean([j.ratio > LIMIT for j in jobs])) if jobs else math.nan
    return OpenRun(
        p50=p50,
        p95=p95,
        over_limit_share=over,
        mean_replicas=cluster.replica_seconds(warmup_s, end) / seconds,
        max_replicas=cluster.max_replicas(warmup_s),
        videos=len(jobs),
        unfinished=expected - len(jobs),
    )


def _arrived_after(cluster: Cluster, since: float) -> int:
    """Jobs that arrived at or after ``since``: finished, pending or in hand."""
    in_hand = [j for r in (*cluster.ready, *cluster.draining) for j in r.jobs]
    return sum(j.arrived >= since for j in (*cluster.finished, *cluster.queue, *in_hand))


def sweep(
    model: Model,
    behavior: HpaBehavior,
    rates: Sequence[float],
    seconds: float,
    warmup_s: float,
    seed: int,
) -> list[dict[str, Any]]:
    """p95 ratio and replicas at constant arrival rates: the HPA's cluster and one fixed replica.

    One replica is simulated only below 95 % of its capacity (above it the queue never ends).
    """
    rows = []
    one_replica_max = 0.95 * model.capacity_per_replica()
    for i, rate in enumerate(rates):
        logger.info("sweep: %.3f videos/s", rate)
        start = model.replicas_for(rate)
        hpa = open_run(
            model,
            constant_rate(rate),
            rate,
            seconds,
            warmup_s,
            seed + i,
            behavior=behavior,
            replicas=start,
        )
        row: dict[str, Any] = {"rate_per_s": rate, "hpa": hpa.as_dict(), "one_replica": None}
        if rate <= one_replica_max:
            one = open_run(
                model,
                constant_rate(rate),
                rate,
                seconds,
                warmup_s,
                seed + 1000 + i,
                behavior=None,
                replicas=1,
            )
            row["one_replica"] = one.as_dict()
        rows.append(row)
    return rows


def fewest_static_replicas(
    model: Model, rate: float, seconds: float, warmup_s: float, seeds: Sequence[int]
) -> dict[str, Any]:
    """Fewest fixed replicas whose p95 ratio stays within the limit at a constant ``rate``.

    Every seed's run must pass: near full utilisation one lucky run could pass alone.
    """
    replicas = model.replicas_for(rate)
    while True:
        runs = [
            open_run(
                model,
                constant_rate(rate),
                rate,
                seconds,
                warmup_s,
                seed,
                behavior=None,
                replicas=replicas,
            )
            for seed in seeds
        ]
        if all(r.unfinished == 0 and r.p95 <= LIMIT for r in runs):
            worst = max(runs, key=lambda r: r.p95)
            return {
                "replicas": replicas,
                "utilisation": rate / (replicas * model.capacity_per_replica()),
                "seeds": len(runs),
                "worst_run": worst.as_dict(),
            }
        replicas += 1


def daily_volume(
    model: Model,
    behavior: HpaBehavior,
    uploads_per_day: float,
    peak_factor: float,
    window: tuple[float, float],
    warmup_s: float,
    seed: int,
    *,
    static_seconds: float | None = None,
) -> dict[str, Any]:
    """One daily volume: its peak, the HPA through the hours around it, the static count.

    ``window`` is (start, end) in seconds from the daily peak; the HPA starts with the
    replicas that keep up with the window's first arrival rate. The static count at the peak
    is searched only when ``static_seconds`` is given.
    """
    rate = diurnal_rate(uploads_per_day, peak_factor)
    peak = rate(0.0)
    start, end = window
    logger.info("daily volume %d: peak %.3f videos/s", uploads_per_day, peak)
    hpa = open_run(
        model,
        rate,
        peak,
        end - start - warmup_s,
        warmup_s,
        seed,
        behavior=behavior,
        replicas=model.replicas_for(rate(start)),
        t0=start,
    )
    result = {
        "uploads_per_day": uploads_per_day,
        "mean_rate_per_s": uploads_per_day / 86_400.0,
        "peak_rate_per_s": peak,
        "window_from_peak_s": list(window),
        "hpa": hpa.as_dict(),
    }
    if static_seconds is not None:
        seeds = [seed + 1 + i for i in range(STATIC_SEEDS)]
        result["static_at_peak"] = fewest_static_replicas(
            model, peak, static_seconds, warmup_s, seeds
        )
    return result
