"""The placement benchmark's table (benchmarks/detector_nets.py)."""

from __future__ import annotations

from fakescope.benchmarks.detector_nets import render_markdown
from fakescope.serving.detector_nets import BLS, IN_PROCESS


def test_detector_nets_table_gives_both_placements_and_ratios_when_rendered():
    row = {
        "video": "v.mp4",
        "size": [1280, 720],
        "faces": 16,
        IN_PROCESS: {"wall_s": 0.15, "server_cpu_s": 0.2},
        BLS: {"wall_s": 0.2, "server_cpu_s": 0.25},
        "wall_vs_bls": 0.75,
        "cpu_vs_bls": 0.8,
    }
    method = {
        "runs": 7,
        "num_frames": 16,
        "max_side": 1280,
        "cores": 2,
        "loadavg_before": [0.5, 0.5, 0.5],
        "code_version": "abc",
    }
    table = render_markdown({"videos": [row], "method": method})
    assert "| v.mp4 | 1280x720 | 16 | 0.150 / 0.200 | 0.200 / 0.250 | 0.75x, 0.80x |" in table
