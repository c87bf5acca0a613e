"""The allocator setting the server_allocator benchmark measures (serving/allocator.py)."""

from __future__ import annotations

from fakescope.benchmarks.server_allocator import GLIBC_DEFAULT, KEPT, render_markdown
from fakescope.serving.allocator import KEEP_FREED_MEMORY


def test_keep_freed_memory_names_both_tunables_when_read():
    assert KEEP_FREED_MEMORY.split(":") == [
        "glibc.malloc.mmap_threshold=33554432",
        "glibc.malloc.trim_threshold=4294967295",
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
