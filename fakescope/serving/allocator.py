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

It is measured, not the embedded server's default: the first full test run with it as the
default saw one replica abort at start-up in the python backend
(``boost::interprocess::lock_exception``, as upstream triton-inference-server/server#8882, a
crash also seen without it), and until that is understood it stays an operator's choice:
``GLIBC_TUNABLES`` set to :data:`KEEP_FREED_MEMORY` in tritonserver's environment.
"""

from __future__ import annotations

from typing import Final

#: The environment variable glibc reads its tunables from.
TUNABLES_ENV: Final = "GLIBC_TUNABLES"
#: glibc's largest mmap threshold on 64-bit (HEAP_MAX_SIZE / 2): smaller arrays come from the heap.
MMAP_THRESHOLD_BYTES: Final = 32 * 1024 * 1024
#: The free top of the heap is never trimmed (setting it also stops glibc moving the threshold).
TRIM_THRESHOLD_BYTES: Final = 2**32 - 1
KEEP_FREED_MEMORY: Final = (
    f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD_BYTES}"
    f":glibc.malloc.trim_threshold={TRIM_THRESHOLD_BYTES}"
)
