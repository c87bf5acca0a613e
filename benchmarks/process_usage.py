"""CPU time and page faults of the calling process over one timed run: where its time went.

A path's wall time alone cannot tell computing from waiting on the kernel. The seed pipeline
keeps every frame of a video (5 GB for the 60 s 720p bench video), about a million page faults a
run, which on a virtual machine cost what the host takes to hand the guest each page; in some
``make bench`` runs it took three to four times its time in a quiet process on the same host
(``benchmarks/README.md``, "Latest results"). The system CPU and the faults of each run,
recorded beside its wall time, show where a run's time went in the run itself.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

#: The keys of one run's usage, in the order tables show them.
USAGE_KEYS: Final = ("user_cpu_s", "system_cpu_s", "page_faults")
#: Page faults a run needs for its system CPU over its faults to price a fault: below it, the
#: kernel's other work for the run (reading the file, thread wake-ups) is most of that CPU.
FAULTS_TO_PRICE: Final = 10_000


@contextmanager
def measured_usage() -> Iterator[dict[str, float]]:
    """Yield a dict that holds, once the block ends, what this process used during it.

    ``user_cpu_s`` and ``system_cpu_s``: CPU seconds of every thread of this process;
    ``page_faults``: minor faults (a page mapped without reading a file). Filled only when the
    block ends without an exception.
    """
    usage: dict[str, float] = {}
    before = resource.getrusage(resource.RUSAGE_SELF)
    yield usage
    after = resource.getrusage(resource.RUSAGE_SELF)
    usage["user_cpu_s"] = after.ru_utime - before.ru_utime
    usage["system_cpu_s"] = after.ru_stime - before.ru_stime
    usage["page_faults"] = float(after.ru_minflt - before.ru_minflt)


def fault_price_us(usage: dict[str, float]) -> float | None:
    """Return a run's system CPU over its page faults in µs, ``None`` below :data:`FAULTS_TO_PRICE`.

    An upper bound of what one fault cost: the run's other system CPU is counted in it too.
    """
    faults = usage["page_faults"]
    if faults < FAULTS_TO_PRICE:
        return None
    return usage["system_cpu_s"] / faults * 1e6
