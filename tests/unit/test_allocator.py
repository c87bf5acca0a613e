"""The allocator settings (fakescope/allocator.py): their tunables, effect and benchmark table."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from fakescope.allocator import HUGE_PAGE_ENV, KEEP_FREED_MEMORY, set_huge_page_advice
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


# NumPy's huge-page advice in a fresh process, before and after no_huge_page_advice(), and then
# the minor faults of first touching a 64 MiB array (NumPy's zeroed pages are faulted by fill).
_ADVICE = """
import os, resource, sys
import numpy as np
from fakescope.allocator import huge_page_advice, no_huge_page_advice
before = huge_page_advice()
off = no_huge_page_advice()
after = huge_page_advice()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.empty(64 << 20, np.uint8).fill(1)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(int(before), int(off), int(after), faults)
"""


def _advice(environ: dict[str, str]) -> tuple[bool, bool, bool, int]:
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGE_ENV} | environ
    done = subprocess.run(
        [sys.executable, "-c", _ADVICE], capture_output=True, text=True, check=True, env=env
    )
    before, off, after, faults = (int(v) for v in done.stdout.split())
    return bool(before), bool(off), bool(after), faults


def _transparent_huge_pages() -> str:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    text = path.read_text() if path.exists() else ""
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else "absent"


def test_no_huge_page_advice_faults_arrays_in_small_pages_when_numpy_is_left_to_decide():
    before, off, after, faults = _advice({})
    assert before, "NumPy advises huge pages by default on Linux >= 4.6"
    assert off and not after
    if _transparent_huge_pages() != "madvise":
        pytest.skip("the kernel's huge pages are not by advice here: small pages either way")
    # 4 KiB pages: one fault each; 64 MiB of 2 MiB pages would take a few dozen
    assert faults > 0.9 * (64 << 20) // resource.getpagesize()


def test_no_huge_page_advice_leaves_numpy_as_set_when_the_operator_set_the_variable():
    before, off, after, _ = _advice({HUGE_PAGE_ENV: "1"})
    assert before and after and not off


def test_set_huge_page_advice_warns_and_changes_nothing_when_numpy_has_no_such_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    import numpy as np

    monkeypatch.delattr(np.core.multiarray, "_set_madvise_hugepage")
    assert set_huge_page_advice(False) is False
    assert "no huge-page setting" in caplog.text
