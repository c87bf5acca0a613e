"""How long-running processes allocate memory: freed memory kept for reuse, arrays in small pages.

Each request makes the python steps allocate tens of MiB of arrays (the frames taken from shared
memory, the detector's pyramid levels, the crops); each video makes a client decode its sample
into a new array (44 MB for 16 frames of 720p). With glibc's defaults every such array larger
than the moving mmap threshold is mapped afresh and unmapped when freed, and the top of the heap
is handed back to the kernel, so every request faults the same amount of memory in again. On a
virtual machine whose host reclaims freed guest memory a fault costs several times what it costs
on bare metal, and more once the host has taken the freed pages back, which it does a second or
two after they were freed (free page reporting): a request after a pause pays the most.
:data:`KEEP_FREED_MEMORY` makes glibc serve every array from a heap, mapping none on its own (a
threshold would not do: glibc's largest, 32 MiB, is below one request's frames, 44 MB for 16
frames of 720p, which the python stub copies out of shared memory for every request), and keep
the heap's free memory: the next request reuses the pages. The process's memory then stays at
its peak (in the server bounded by ``max_request_pixels``) instead of returning to it on every
request. Before and after: ``benchmarks/README.md``.

Two ways to apply it:

* :func:`keep_freed_memory` sets it in the calling process with glibc's ``mallopt``, after the
  process has started. ``face_detector``, the python step that takes every request's frames and
  builds the detector's pyramid, calls it when it starts; so does the in-process pipeline the
  served one is compared with (:class:`fakescope.benchmarks.inprocess.OrtPipeline`), so that
  the comparison stays like for like; so do the clients that decode one video after another in
  one process: ``fakescope analyze``, the web service and the load generator.
* :data:`KEEP_FREED_MEMORY` in ``GLIBC_TUNABLES`` sets it for tritonserver and every stub from
  their start. That is measured, not the embedded server's default: the first full test run
  with it as the default saw one replica abort at start-up in the python backend
  (``boost::interprocess::lock_exception``, as upstream triton-inference-server/server#8882, a
  crash also seen without it), and until that is understood it stays an operator's choice.

Arrays are also faulted in with small pages (:func:`no_huge_page_advice`). NumPy asks the
kernel for transparent huge pages for every array of 4 MiB or more (``madvise``); where the
kernel's huge-page defragmentation is ``madvise`` (the common default), the first touch of such
an array then waits while the kernel compacts memory to find a free 2 MiB page. A process's
first arrays (the first video a client decodes, the first request a python step handles, before
any freed memory can be reused) then spent much of a short video's budget on that; with small
pages they fault in the usual way, and warm requests take as long. Before and after:
``benchmarks/README.md`` (``python -m fakescope.benchmarks.first_request``).
:func:`set_up_memory` applies both settings; the processes above call it when they start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Final

import numpy as np

logger = logging.getLogger(__name__)

#: The environment variable glibc reads its tunables from.
TUNABLES_ENV: Final = "GLIBC_TUNABLES"
#: How many blocks glibc may map on their own at once: none, so every block comes from a heap.
MMAP_MAX: Final = 0
#: The free top of the heap is not trimmed below 2 GiB, the most ``mallopt`` (a C ``int``)
#: takes: in effect never.
TRIM_THRESHOLD_BYTES: Final = 2**31 - 1
KEEP_FREED_MEMORY: Final = (
    f"glibc.malloc.mmap_max={MMAP_MAX}:glibc.malloc.trim_threshold={TRIM_THRESHOLD_BYTES}"
)
#: The environment variable NumPy reads its huge-page advice from when it is imported; where an
#: operator sets it, :func:`no_huge_page_advice` leaves NumPy as that setting made it.
HUGE_PAGE_ENV: Final = "NUMPY_MADVISE_HUGEPAGE"
#: ``mallopt`` parameters (glibc's ``malloc.h``).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_MAX: Final = -4


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
        (_M_MMAP_MAX, MMAP_MAX),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    ):
        if mallopt(parameter, value) != 1:
            raise OSError(f"glibc mallopt({parameter}, {value}) refused the setting")
    return True


def no_huge_page_advice() -> bool:
    """Make NumPy fault this process's large arrays in with small pages (see the module).

    Left as it is where :data:`HUGE_PAGE_ENV` is set: NumPy has then applied the operator's
    choice. Returns True when NumPy now gives no huge-page advice.
    """
    if os.environ.get(HUGE_PAGE_ENV) is not None:
        logger.info("%s is set: NumPy's huge-page advice left as it is", HUGE_PAGE_ENV)
        return not huge_page_advice()
    set_huge_page_advice(False)
    return True


def huge_page_advice() -> bool:
    """Return whether NumPy advises huge pages for this process's large arrays."""
    previous = set_huge_page_advice(False)
    set_huge_page_advice(previous)
    return previous


def set_huge_page_advice(advise: bool) -> bool:
    """Set NumPy's huge-page advice for arrays allocated from now on; return what it was.

    A NumPy without the setting (it is NumPy's own, not a public API) is left as it is, with a
    warning, rather than fail the process that asked: False is returned then.
    """
    setting = getattr(np.core.multiarray, "_set_madvise_hugepage", None)
    if setting is None:
        logger.warning("NumPy %s has no huge-page setting: left as it is", np.__version__)
        return False
    return bool(setting(advise))


def set_up_memory() -> None:
    """Apply this module's settings to the calling process: freed memory kept, small pages.

    Raises:
        OSError: glibc refused a setting.

    """
    keep_freed_memory()
    no_huge_page_advice()
