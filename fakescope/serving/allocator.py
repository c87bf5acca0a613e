"""How tritonserver and its python stubs allocate memory: freed memory is kept for the next request.

Each request makes the python steps allocate tens of MiB of arrays (the frames taken from shared
memory, the detector's pyramid levels, the crops). With glibc's defaults every such array larger
than the moving mmap threshold is mapped afresh and unmapped when freed, and the top of the heap
is handed back to the kernel, so every request faults the same amount of memory in again. On a
virtual machine whose host reclaims freed guest memory a fault costs several times what it costs
on bare metal. :data:`KEEP_FREED_MEMORY` makes glibc serve arrays up to its largest mmap
threshold from the heap and keep the heap's free memory: the next request reuses the pages. The
server's memory then stays at its peak (bounded by ``max_request_pixels``) instead of
returning to it on every request. Before and after: ``benchmarks/README.md``.

Two ways to apply it:

* :func:`keep_freed_memory` sets it in the calling process with glibc's ``mallopt``, after the
  process has started. ``face_detector``, the python step that takes every request's frames and
  builds the detector's pyramid, calls it when it starts; so does the in-process pipeline the
  served one is compared with (:class:`fakescope.benchmarks.inprocess.OrtPipeline`), so that
  the comparison stays like for like.
* :data:`KEEP_FREED_MEMORY` in ``GLIBC_TUNABLES`` sets it for tritonserver and every stub from
  their start. That is measured, not the embedded server's default: the first full test run
  with it as the default saw one replica abort at start-up in the python backend
  (``boost::interprocess::lock_exception``, as upstream triton-inference-server/server#8882, a
  crash also seen without it), and until that is understood it stays an operator's choice.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Final

logger = logging.getLogger(__name__)

#: The environment variable glibc reads its tunables from.
TUNABLES_ENV: Final = "GLIBC_TUNABLES"
#: glibc's largest mmap threshold on 64-bit (HEAP_MAX_SIZE / 2): smaller arrays come from the heap.
MMAP_THRESHOLD_BYTES: Final = 32 * 1024 * 1024
#: The free top of the heap is not trimmed below 2 GiB, the most ``mallopt`` (a C ``int``)
#: takes: in effect never (setting it also stops glibc moving the mmap threshold).
TRIM_THRESHOLD_BYTES: Final = 2**31 - 1
KEEP_FREED_MEMORY: Final = (
    f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD_BYTES}"
    f":glibc.malloc.trim_threshold={TRIM_THRESHOLD_BYTES}"
)
#: ``mallopt`` parameters (glibc's ``malloc.h``).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


def keep_freed_memory() -> bool:
    """Make this process's glibc keep freed memory for the next request (see the module).

    Returns False, changing nothing, where the C library has no ``mallopt`` (not glibc): the
    process then allocates as before, a little slower on machines where faults are dear.

    Raises:
        OSError: glibc refused a setting.

    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        logger.warning("no glibc mallopt in this process: freed memory is not kept")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    for parameter, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    ):
        if mallopt(parameter, value) != 1:
            raise OSError(f"glibc mallopt({parameter}, {value}) refused the setting")
    return True
