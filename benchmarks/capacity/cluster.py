"""Replicas behind the job queue, the arrivals that feed it and the autoscaler that sizes it.

The shape is the web service's: an upload becomes a pending job in the database (one FIFO
queue); every ready replica takes pending jobs while it has fewer than ``slots`` in hand (its
worker's analysis threads) and runs them on its own 2 cores, decode included. The autoscaler
reads the jobs per replica, pending plus running (what a queue-length scaler reads from the
database), every sync period. A replica it adds is ready after the measured start time; one it
removes stops taking jobs and leaves when the ones in hand are done.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy
from simpy.events import ProcessGenerator

from fakescope.benchmarks.capacity.hpa import Autoscaler
from fakescope.benchmarks.capacity.replica import Job, Replica

SECONDS_PER_DAY = 86_400.0
#: The standard normal's 95th percentile.
Z95 = 1.6448536269514722


@dataclass(frozen=True)
class Mix:
    """The uploaded videos: each kind equally often, its work lognormal around its median.

    Kind ``k`` lasts ``durations_s[k]`` seconds and needs ``median_s[k] × exp(sigma[k] × Z)``
    seconds of 1-user work (``Z`` standard normal): the distribution that has the measured
    1-user median and 95th percentile of that video.
    """

    durations_s: tuple[float, ...]
    median_s: tuple[float, ...]
    sigma: tuple[float, ...]

    def __post_init__(self) -> None:
        """Refuse kinds of mismatched lengths or non-positive times."""
        if not len(self.durations_s) == len(self.median_s) == len(self.sigma) >= 1:
            raise ValueError("one duration, median and sigma per kind, at least one kind")
        if min(self.durations_s) <= 0 or min(self.median_s) <= 0 or min(self.sigma) < 0:
            raise ValueError("durations and medians must be > 0, sigmas >= 0")

    @classmethod
    def from_quantiles(
        cls, durations_s: Sequence[float], p50_s: Sequence[float], p95_s: Sequence[float]
    ) -> Mix:
        """Return the mix whose kinds have these 1-user medians and 95th percentiles (s)."""
        sigma = tuple(
            max(0.0, math.log(p95 / p50)) / Z95 for p50, p95 in zip(p50_s, p95_s, strict=True)
        )
        return cls(tuple(durations_s), tuple(p50_s), sigma)

    def draw(self, rng: np.random.Generator, kind: int | None = None) -> tuple[int, float, float]:
        """Return ``(kind, duration, work)`` of one video (a random kind unless given)."""
        k = int(rng.integers(len(self.durations_s))) if kind is None else kind
        work = self.median_s[k] * math.exp(self.sigma[k] * float(rng.standard_normal()))
        return k, self.durations_s[k], work

    @property
    def mean_work_s(self) -> float:
        """Mean work per video over the mix (the lognormal means, kinds equally often)."""
        means = [m * math.exp(s * s / 2) for m, s in zip(self.median_s, self.sigma, strict=True)]
        return sum(means) / len(means)


@dataclass
class _Start:
    cancelled: bool = False


@dataclass
class Cluster:
    """The queue, the replicas and their bookkeeping."""

    env: simpy.Environment
    speedup: Callable[[int], float]
    slots: int
    start_s: float
    record_after: float = 0.0
    ready: list[Replica] = field(default_factory=list)
    draining: list[Replica] = field(default_factory=list)
    starting: list[_Start] = field(default_factory=list)
    queue: deque[Job] = field(default_factory=deque)
    finished: list[Job] = field(default_factory=list)
    #: (time, replicas) at every change of the replica count (starting ones included).
    replica_history: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Validate the settings."""
        if self.slots < 1 or self.start_s < 0:
            raise ValueError("slots must be >= 1 and start_s >= 0")

    @property
    def replicas(self) -> int:
        """Replicas the autoscaler counts: ready and starting (not the draining ones)."""
        return len(self.ready) + len(self.starting)

    def jobs_in_system(self) -> int:
        """Pending plus running jobs."""
        running = sum(len(r.jobs) for r in self.ready) + sum(len(r.jobs) for r in self.draining)
        return len(self.queue) + running

    def add_ready(self, count: int) -> None:
        """Add ``count`` replicas that are ready now (the initial ones)."""
        for _ in range(count):
            self.ready.append(Replica(self.env, self.speedup, self._on_done))
        self._note_replicas()
        self._dispatch()

    def submit(self, job: Job) -> None:
        """Queue an uploaded video; a free slot takes it at once."""
        self.queue.append(job)
        self._dispatch()

    def scale_to(self, replicas: int) -> None:
        """Start or remove replicas until :attr:`replicas` is ``replicas``."""
        if replicas < 1:
            raise ValueError("at least one replica")
        while self.replicas < replicas:
            start = _Start()
            self.starting.append(start)
            self.env.process(self._start(start))
        while self.replicas > replicas and self.starting:
            self.starting.pop().cancelled = True
        while self.replicas > replicas:
            # the one with the fewest jobs in hand leaves first: least work to drain
            leaving = min(self.ready, key=lambda r: len(r.jobs))
            self.ready.remove(leaving)
            if leaving.jobs:
                self.draining.append(leaving)
        self._note_replicas()

    def replica_seconds(self, since: float, until: float) -> float:
        """Integral of the replica count over ``[since, until]``."""
        total = 0.0
        history = [*self.replica_history, (until, self.replica_history[-1][1])]
        for (t0, n), (t1, _) in itertools.pairwise(history):
            lo, hi = max(t0, since), min(t1, until)
            if hi > lo:
                total += n * (hi - lo)
        return total

    def max_replicas(self, since: float) -> int:
        """Return the most replicas at any time from ``since`` on."""
        before = [n for t, n in self.replica_history if t <= since][-1:]
        return max(before + [n for t, n in self.replica_history if t > since])

    def _start(self, start: _Start) -> ProcessGenerator:
        yield self.env.timeout(self.start_s)
        if start.cancelled:
            return
        self.starting.remove(start)
        self.ready.append(Replica(self.env, self.speedup, self._on_done))
        self._dispatch()

    def _dispatch(self) -> None:
        while self.queue and self.ready:
            replica = min(self.ready, key=lambda r: len(r.jobs))
            if len(replica.jobs) >= self.slots:
                return
            replica.add(self.queue.popleft())

    def _on_done(self, replica: Replica, job: Job) -> None:
        if job.arrived >= self.record_after:
            self.finished.append(job)
        if replica in self.draining and not replica.jobs:
            self.draining.remove(replica)
        self._dispatch()

    def _note_replicas(self) -> None:
        if not self.replica_history or self.replica_history[-1][1] != self.replicas:
            self.replica_history.append((self.env.now, self.replicas))


def constant_rate(rate: float) -> Callable[[float], float]:
    """Arrivals per second that do not change with time."""

    def constant(_t: float) -> float:
        return rate

    return constant


def diurnal_rate(uploads_per_day: float, peak_factor: float) -> Callable[[float], float]:
    """Arrivals per second at time ``t`` (seconds from the daily peak) of a cosine day.

    The daily mean is ``uploads_per_day / 86400``; the peak is ``peak_factor`` times it and the
    trough ``2 − peak_factor`` times it (so ``peak_factor`` is in ``[1, 2]``).
    """
    if not 1.0 <= peak_factor <= 2.0:
        raise ValueError(f"peak_factor must be in [1, 2], got {peak_factor}")
    mean = uploads_per_day / SECONDS_PER_DAY

    def rate(t: float) -> float:
        return mean * (1.0 + (peak_factor - 1.0) * math.cos(2 * math.pi * t / SECONDS_PER_DAY))

    return rate


def poisson_arrivals(
    env: simpy.Environment,
    cluster: Cluster,
    mix: Mix,
    rate: Callable[[float], float],
    rate_max: float,
    rng: np.random.Generator,
    until: float,
    t0: float = 0.0,
) -> ProcessGenerator:
    """Submit videos as a Poisson process of rate ``rate(t0 + now)`` (thinning at ``rate_max``)."""
    if rate_max <= 0:
        return
    while True:
        gap = float(rng.exponential(1.0 / rate_max))
        if env.now + gap > until:
            return
        yield env.timeout(gap)
        if rng.random() * rate_max < rate(t0 + env.now):
            kind, duration, work = mix.draw(rng)
            cluster.submit(Job(env.now, kind, duration, work))


def closed_loop_user(
    env: simpy.Environment,
    cluster: Cluster,
    mix: Mix,
    rng: np.random.Generator,
    first_kind: int,
    until: float,
) -> ProcessGenerator:
    """One bench user: the videos of the mix in turn, each sent as soon as the last is done."""
    kinds = len(mix.durations_s)
    turn = first_kind
    while env.now < until:
        kind, duration, work = mix.draw(rng, turn % kinds)
        job = Job(env.now, kind, duration, work, done=env.event())
        cluster.submit(job)
        assert job.done is not None
        yield job.done
        turn += 1


def autoscale(env: simpy.Environment, cluster: Cluster, autoscaler: Autoscaler) -> ProcessGenerator:
    """Every sync period: read jobs per replica, let the HPA decide, apply its count."""
    while True:
        yield env.timeout(autoscaler.behavior.sync_period_s)
        current = cluster.replicas
        metric = cluster.jobs_in_system() / current
        desired = autoscaler.decide(env.now, current, metric)
        if desired != current:
            cluster.scale_to(desired)


def ratio_quantiles(jobs: Sequence[Job], quantiles: Sequence[float]) -> list[float]:
    """Quantiles of processing time / video duration over ``jobs`` (NaN for none)."""
    if not jobs:
        return [math.nan for _ in quantiles]
    ratios = np.array([job.ratio for job in jobs])
    return [float(q) for q in np.quantile(ratios, quantiles)]
