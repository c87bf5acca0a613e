"""How fast the host runs one fixed piece of work right now, to set beside a run's timings.

The hosts behind this environment change speed by the hour: the same code, with the same CPU
model, clock and vector extensions (:mod:`~.benchmarks.machine`), measured far apart at
different hours, its eager-PyTorch baselines too (``benchmarks/README.md``, "Hosts differ").
The guest need not see why: the hypervisor's steal time counts only the time it ran someone
else instead, not a neighbour slowing this guest on a shared core, cache or memory bus.
So a run times one fixed workload, the probe, before each load level: an R-Net of the detector
on a fixed batch of windows, one ONNX Runtime thread, the median of a few rounds taken while
nothing else of the benchmark runs. The R-Net is a pinned copy (:data:`PROBE_MODEL`), the
served one as it was up to commit ``a373ed6``, so that a change of the served models does not
change the probe: the export that took ONNX ``PRelu`` out of the served nets made the served
R-Net faster on these windows, and the tenth Xeon run, which still probed the served R-Net,
reads lower for that reason (``benchmarks/README.md``, "Hosts differ"). Two runs' figures
compare only after each is set against its own probe; a level whose probe moved from the
others ran on a host that changed speed under it. The steal share of each level is recorded
too (:func:`steal_share`), so that a host that does show its contention says so.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.pipeline.onnx_session import cpu_session_options

#: The probe's network: facenet-pytorch's R-Net as exported with ONNX ``PRelu`` (the served
#: ``mtcnn_rnet`` up to commit a373ed6), never re-exported.
PROBE_MODEL = Path(__file__).with_name("host_probe_rnet.onnx")
#: R-Net windows per probe round: a round of tens of milliseconds on one core.
PROBE_WINDOWS = 512
#: Rounds per reading, the median reported.
PROBE_ROUNDS = 7
#: The probe's input never changes: one seed, one batch.
PROBE_SEED = 0
PROC_STAT = Path("/proc/stat")
#: Field of ``/proc/stat``'s ``cpu`` line that counts stolen ticks (after the label).
_STEAL_FIELD = 7


@dataclass(frozen=True)
class CpuTicks:
    """The machine's CPU ticks so far: all of them and those the hypervisor stole."""

    total: int
    steal: int


def read_cpu_ticks(stat: str | None = None) -> CpuTicks | None:
    """Return the ``cpu`` line of ``/proc/stat`` (read when ``stat`` is omitted) as ticks.

    ``None`` where there is no such file (not Linux) or its line has no steal field.
    """
    if stat is None:
        if not PROC_STAT.is_file():
            return None
        stat = PROC_STAT.read_text()
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(v) for v in fields[1:]]
            if len(ticks) <= _STEAL_FIELD:
                return None
            # guest time is counted inside user time already: only the first 8 fields add up
            return CpuTicks(total=sum(ticks[: _STEAL_FIELD + 1]), steal=ticks[_STEAL_FIELD])
    return None


def steal_share(before: CpuTicks | None, after: CpuTicks | None) -> float | None:
    """Share of the CPU ticks between two readings that the hypervisor stole (``None``: unknown)."""
    if before is None or after is None or after.total <= before.total:
        return None
    return (after.steal - before.steal) / (after.total - before.total)


class HostProbe:
    """The probe workload, its session opened once: call :meth:`read` for a reading."""

    def __init__(self, model: Path = PROBE_MODEL) -> None:
        import onnxruntime as ort  # imported here: `fakescope --help` must not need it

        # one thread: the reading is one core's speed, not how the scheduler shares two
        self._session = ort.InferenceSession(
            str(model), cpu_session_options(1, 1), providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        rng = np.random.default_rng(PROBE_SEED)
        self._batch = rng.uniform(-1, 1, (PROBE_WINDOWS, 3, 24, 24)).astype(np.float32)
        self._session.run(None, {self._input: self._batch})  # first-run costs, not timed

    def read(self, rounds: int = PROBE_ROUNDS) -> dict[str, Any]:
        """Time ``rounds`` rounds of the workload; return the median and the spread, in ms."""
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            self._session.run(None, {self._input: self._batch})
            times.append((time.perf_counter() - start) * 1000)
        return {
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "max_ms": max(times),
            "rounds": rounds,
        }


#: What the probe is, in a result file's words.
WHAT = (
    f"R-Net of the detector (a pinned copy) on {PROBE_WINDOWS} fixed windows, one ONNX Runtime "
    f"thread, median of {PROBE_ROUNDS} rounds, in ms: larger on a slower host"
)
