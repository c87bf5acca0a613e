"""The client decode memory benchmark's table (benchmarks/client_memory.py)."""

from __future__ import annotations

from fakescope.benchmarks.client_memory import GLIBC_DEFAULT, KEPT, render_markdown
from tests.support.bench_summaries import TWO_CORE_MACHINE


def _setting(wall_s: float, system_s: float, slowest_s: float) -> dict[str, object]:
    return {
        "wall_s": wall_s,
        "system_cpu_s": system_s,
        "slowest_wall_s": slowest_s,
        "wall_runs_s": [wall_s, slowest_s],
    }


def test_client_memory_table_gives_both_settings_and_ratios_when_rendered() -> None:
    result = {
        "what": "The client's sample",
        "machine": TWO_CORE_MACHINE,
        "video": "v.mp4",
        "rounds": 15,
        "pauses": {
            "2.0": {
                KEPT: _setting(0.15, 0.01, 0.2),
                GLIBC_DEFAULT: _setting(0.3, 0.12, 0.5),
            }
        },
    }
    table = render_markdown(result)
    assert "15 rounds on v.mp4" in table
    assert "| 2.0 | 0.150 / 0.010 / 0.200 | 0.300 / 0.120 / 0.500 | 0.50x, 0.40x |" in table
