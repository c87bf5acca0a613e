"""The allocator setting (fakescope/allocator.py): its tunables, its effect, its benchmark table."""

from __future__ import annotations

import resource
import subprocess
import sys

from fakescope.allocator import KEEP_FREED_MEMORY
from fakescope.benchmarks.server_allocator import GLIBC_DEFAULT, KEPT, render_markdown


def test_keep_freed_memory_names_both_tunables_when_read():
    assert KEEP_FREED_MEMORY.split(":") == [
        "glibc.malloc.mmap_max=0",
        "glibc.malloc.trim_threshold=2147483647",
    ]


def test_server_allocator_table_gives_both_servers_and_ratios_when_rendered():
    row = {
        "video": "v.mp4",
        "size": [1280, 720],
        KEPT: {"wall_s": 0.4, "server_cpu_s": 0.5, "faulted_mib": 3.2},
        GLIBC_DEFAULT: {"wall_s": 0.5, "server_cpu_s": 0.6, "faulted_mib": 34.0},
        "wall_vs_default": 0.8,
        "cpu_vs_default": 0.833,
    }
    method = {
        "runs": 7,
        "pause_s": 1.0,
        "num_frames": 16,
        "max_side": 1280,
        "tunables": {KEPT: KEEP_FREED_MEMORY, GLIBC_DEFAULT: ""},
        "cores": 2,
        "loadavg_before": [0.5, 0.5, 0.5],
        "code_version": "abc",
    }
    table = render_markdown({"videos": [row], "method": method})
    assert "| v.mp4 | 1280x720 | 0.400 / 0.500 / 3 | 0.500 / 0.600 / 34 | 0.80x, 0.83x |" in table
    assert KEEP_FREED_MEMORY in table


# One "request" in a fresh process: a 40 MiB block (above glibc's largest mmap threshold, as the
# stub's copy of a request's frames is) and an 8 MiB one (a pyramid level) allocated, written and
# freed, as the detector's arrays are; prints the minor faults of each of four requests.
_REQUESTS = """
import ctypes, ctypes.util, resource, sys
from fakescope.allocator import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def request():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    sizes = (40 << 20, 8 << 20)
    blocks = [libc.malloc(size) for size in sizes]
    for block, size in zip(blocks, sizes):
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(*[request() for _ in range(4)])
"""


def _faults_per_request(mode: str) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", _REQUESTS, mode], capture_output=True, text=True, check=True
    )
    return [int(v) for v in done.stdout.split()]


def test_keep_freed_memory_stops_later_requests_faulting_when_set_in_the_process():
    pages = 48 * 2**20 // resource.getpagesize()
    frames_pages = 40 * 2**20 // resource.getpagesize()
    default = _faults_per_request("default")
    kept = _faults_per_request("kept")
    # glibc's defaults map the 40 MiB block afresh and unmap it when freed: every request
    # faults it in again
    assert min(default[1:]) > 0.9 * frames_pages
    # kept: only the first request faults; the others reuse its pages
    assert kept[0] > 0.9 * pages
    assert max(kept[1:]) < 0.05 * pages
