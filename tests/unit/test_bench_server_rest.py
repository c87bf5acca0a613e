"""The rested-server benchmark's table (benchmarks/server_rest.py)."""

from __future__ import annotations

from fakescope.benchmarks.server_rest import render_markdown
from tests.support.bench_summaries import TWO_CORE_MACHINE


def _pause(infer_s: float, detector_s: float, cpu_s: float, system_s: float) -> dict[str, object]:
    return {
        "infer_s": infer_s,
        "server_cpu_s": cpu_s,
        "server_system_cpu_s": system_s,
        "face_detector_s": detector_s,
        "face_scorer_s": 0.04,
        "infer_runs_s": [infer_s],
    }


def test_server_rest_table_gives_each_pause_against_the_first_when_rendered() -> None:
    result = {
        "what": "1 user",
        "machine": TWO_CORE_MACHINE,
        "video": "v.mp4",
        "rounds": 15,
        "pauses": {"0.0": _pause(0.2, 0.15, 0.25, 0.01), "2.0": _pause(0.3, 0.25, 0.3, 0.06)},
    }
    table = render_markdown(result)
    assert "15 rounds on v.mp4, 2 cores (Some CPU, 2600 MHz)" in table
    assert "| 0.0 | 0.200 | 0.150 | 0.040 | 0.250 | 0.010 | 1.00x, 1.00x |" in table
    assert "| 2.0 | 0.300 | 0.250 | 0.040 | 0.300 | 0.060 | 1.50x, 1.20x |" in table
