"""CPU time and page faults of the calling process over one timed run: where its time went.

A path's wall time alone cannot tell computing from waiting on the kernel. The seed pipeline
keeps every frame of a video (5 GB for the 60 s 720p bench video), about a million page faults a
run; on a virtual machine a fault costs what the host takes to hand the guest a page, which
varied more than tenfold between runs on one host (``benchmarks/README.md``, "The seed pipeline
alone and right after a served video"). The system CPU and the faults of each run, recorded
beside its wall time, show that in the run itself.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

#: The keys of one run's usage, in the order tables show them.
USAGE_KEYS: Final = ("user_cpu_s", "system_cpu_s", "page_faults")


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
