"""Small bench result documents as their JSON holds them.

A ``fakescope bench`` summary of a run on a GPU host (``summary.json``), and the machine facts of
a run on 2 cores that records its load average at start and end.
"""

from __future__ import annotations

from typing import Any

#: ``machine`` of a 2-core run with its load average at start and end (as ``server_rest.json``).
TWO_CORE_MACHINE: dict[str, Any] = {
    "cores": 2,
    "cpu_model": "Some CPU",
    "cpu_mhz": 2600,
    "load_average_at_start": [0.2, 0.2, 0.2],
    "load_average_at_end": [0.3, 0.3, 0.3],
}
#: The GPU the summaries name.
GPU_NAME = "NVIDIA H200"


def gpu_run_summary(**overrides: Any) -> dict[str, Any]:
    """One gRPC level at 8 users (p95 0.29, 84 videos/min, nothing refused) on 16 cores + 1 GPU."""
    level = {
        "ratio": {"p50": 0.1, "p95": 0.29},
        "videos_per_minute": 84.0,
        "accepted": 21,
        "rejected": 0,
        "failures": 0,
    }
    summary = {
        "mode": "load",
        "frames": 16,
        "limit": 0.5,
        "run_time_seconds_per_level": 15,
        "shared_memory": "on",
        "machine": {
            "load_average_at_start": [0.3, 0.3, 0.3],
            "cores": 16,
            "gpus": [{"name": GPU_NAME, "memory_total": "143771 MiB", "driver": "580"}],
        },
        "levels": {"grpc": {"8": level}},
    }
    return summary | overrides
