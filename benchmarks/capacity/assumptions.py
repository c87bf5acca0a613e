"""What the capacity model assumes rather than measures, each with its reason.

Everything else the model uses comes from a result file (:mod:`.inputs`); these are the
choices and outside facts a reader should check against their own service.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from fakescope.web.settings import Settings

#: Why each assumption holds the value it does (rendered into ``docs/capacity.md``).
REASONS = {
    "peak_factor": "peak-hour arrival rate / daily mean, cosine day (trough = 2 − peak); "
    "a consumer upload service's day, not measured",
    "window_before_peak_s": "simulated hours before the daily peak (the HPA follows the rise)",
    "window_after_peak_s": "simulated time after the peak",
    "slots_per_replica": "videos a replica works on at once: the web worker's analysis "
    "threads (web/settings.py `workers` default); more wait as pending jobs",
    "hpa_target_jobs_per_replica": "HPA AverageValue target of (pending + running jobs) / "
    "replicas; = the slots: every replica's threads busy, nothing waiting on average",
    "hpa_min_replicas": "the HPA's minReplicas",
    "protocol": "the bench protocol whose throughputs and 1-user times drive the model "
    "(the client's default); the other protocol is the calibration's holdout",
    "upload_bitrate_mbit_s": "bitrate of an uploaded video: a 1080p30 H.264 phone export; "
    "the bench files' own bitrates are listed beside it",
    "uplink_mbit_s": "the uploader's uplink (home/mobile); only the upload's share of the "
    "ratio depends on it",
    "lan_mbit_s": "client-to-Triton link when a KServe client decodes and sends frames "
    "from inside the data centre",
    "seed": "random seed of every simulation (the result file is reproducible)",
}


@dataclass(frozen=True)
class Assumptions:
    """The model's assumed inputs (see :data:`REASONS`)."""

    peak_factor: float = 2.0
    window_before_peak_s: float = 2 * 3600.0
    window_after_peak_s: float = 3600.0
    slots_per_replica: int = Settings().workers
    hpa_target_jobs_per_replica: float = float(Settings().workers)
    hpa_min_replicas: int = 1
    protocol: str = "grpc"
    upload_bitrate_mbit_s: float = 8.0
    uplink_mbit_s: float = 20.0
    lan_mbit_s: float = 1000.0
    seed: int = 2026

    def rows(self) -> list[dict[str, Any]]:
        """Each assumption as ``{name, value, why}``."""
        return [
            {"name": f.name, "value": getattr(self, f.name), "why": REASONS[f.name]}
            for f in fields(self)
        ]
