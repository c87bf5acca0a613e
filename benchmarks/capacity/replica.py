"""One replica: the 2-core box (worker decode + Triton) and the videos it has in hand.

The videos in hand share the box (processor sharing) at the measured concurrency behaviour:
with ``n`` videos the box does ``speedup(n)`` seconds of 1-user work per second, split evenly,
so each video advances at ``speedup(n) / n``. ``speedup`` comes from ``make bench``'s
closed-loop throughputs (:class:`fakescope.benchmarks.capacity.inputs.SpeedUp`); a video's
work is its measured 1-user service time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import simpy
from simpy.events import ProcessGenerator

#: Work left below this many seconds counts as done (float rounding of the shares).
_DONE_EPS = 1e-9


@dataclass(eq=False)
class Job:
    """One uploaded video: when it arrived, its kind, its duration and its work."""

    arrived: float
    kind: int
    duration_s: float
    work_s: float
    remaining_s: float = field(init=False)
    finished: float | None = None
    #: Succeeds when the job finishes (closed-loop users wait on it); ``None``: nobody waits.
    done: simpy.Event | None = None

    def __post_init__(self) -> None:
        """Start with all its work left."""
        self.remaining_s = self.work_s

    @property
    def ratio(self) -> float:
        """Processing time (arrival to verdict) / video duration; the product limit is 0.5."""
        if self.finished is None:
            raise ValueError("the job has not finished")
        return (self.finished - self.arrived) / self.duration_s


class Replica:
    """A simpy process that runs its jobs under load-dependent processor sharing."""

    def __init__(
        self,
        env: simpy.Environment,
        speedup: Callable[[int], float],
        on_done: Callable[[Replica, Job], None],
    ) -> None:
        """Start the replica's process; it calls ``on_done(self, job)`` for each finished job."""
        self.env = env
        self.speedup = speedup
        self.on_done = on_done
        self.jobs: list[Job] = []
        self._last = env.now
        self.process = env.process(self._run())

    def add(self, job: Job) -> None:
        """Take ``job`` into hand now."""
        self._advance()
        self.jobs.append(job)
        # its next completion time has changed; when the job comes from this replica's own
        # completion callback the loop recomputes it anyway (a process cannot interrupt itself)
        if self.env.active_process is not self.process:
            self.process.interrupt()

    def _rate(self) -> float:
        n = len(self.jobs)
        return self.speedup(n) / n if n else 0.0

    def _advance(self) -> None:
        """Credit every job with the work done since the last change."""
        done = (self.env.now - self._last) * self._rate()
        if done:
            for job in self.jobs:
                job.remaining_s -= done
        self._last = self.env.now

    def _run(self) -> ProcessGenerator:
        while True:
            try:
                if not self.jobs:
                    yield self.env.event()  # never fires: wait for add()'s interrupt
                else:
                    shortest = min(job.remaining_s for job in self.jobs)
                    yield self.env.timeout(max(shortest, 0.0) / self._rate())
            except simpy.Interrupt:
                continue
            self._advance()
            finished = [job for job in self.jobs if job.remaining_s <= _DONE_EPS]
            self.jobs = [job for job in self.jobs if job.remaining_s > _DONE_EPS]
            for job in finished:
                job.finished = self.env.now
                if job.done is not None:
                    job.done.succeed(job)
                self.on_done(self, job)
