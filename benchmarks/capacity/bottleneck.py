"""Where a video's time goes, stage by stage, and what the network adds.

From ``service_times.json`` (1 user, this machine): the client's decode, Triton's per-model
times (``face_detector`` with its MTCNN nets and the face crops, ``face_scorer`` with
``face_classifier``, ``video_aggregator``) and what is left of the server call (the frames'
transfer, the ensemble's scheduling). From the video files and the assumed bitrate and links:
what uploading costs. All in seconds per video, and as a share of the product's limit.
"""

from __future__ import annotations

import statistics
from typing import Any

from fakescope.benchmarks.capacity.assumptions import Assumptions
from fakescope.benchmarks.capacity.inputs import Measured

#: Stage name in the report -> the service_times.json median it is read from.
STAGES = {
    "client decode": "decode_seconds",
    "detector and crops": "stage_face_detector",
    "classifier": "stage_face_scorer",
    "aggregation": "stage_video_aggregator",
}
#: The stages that are parts of the server call (all but the client's decode).
SERVER_STAGES = tuple(s for s in STAGES if s != "client decode")
MBIT = 1e6


def stage_split(measured: Measured) -> dict[str, Any]:
    """Seconds per stage, per video and as the mean over the mix, with each stage's share."""
    per_video: dict[str, dict[str, float]] = {}
    for name, medians in sorted(measured.service_median.items()):
        row = {stage: medians[key] for stage, key in STAGES.items()}
        server_steps = sum(row[s] for s in SERVER_STAGES)
        row["transfer + ensemble"] = max(0.0, medians["infer_seconds"] - server_steps)
        row["total"] = medians["processing_seconds"]
        per_video[name] = row
    stages = [*STAGES, "transfer + ensemble"]
    mean = {s: statistics.fmean(v[s] for v in per_video.values()) for s in [*stages, "total"]}
    total = sum(mean[s] for s in stages)
    share = {s: mean[s] / total for s in stages}
    return {
        "per_video_seconds": per_video,
        "mean_seconds": mean,
        "share": share,
        "largest": max(stages, key=lambda s: share[s]),
    }


def cpu_ceiling(measured: Measured, saturated_videos_per_minute: float) -> dict[str, Any]:
    """CPU seconds per video (decode + server) and the videos/s the box's cores allow.

    ``decode_only`` is what the cores would allow if the models' work left the CPU (an
    accelerator, not measured here): the decode alone, an upper bound.
    """
    decode = statistics.fmean(m["decode_cpu_seconds"] for m in measured.service_median.values())
    server = statistics.fmean(m["server_cpu_seconds"] for m in measured.service_median.values())
    return {
        "decode_cpu_s": decode,
        "server_cpu_s": server,
        "cores": measured.cores,
        "videos_per_s_by_cpu": measured.cores / (decode + server),
        "videos_per_s_measured_saturated": saturated_videos_per_minute / 60.0,
        "videos_per_s_decode_only": measured.cores / decode,
    }


def network(
    measured: Measured, assumptions: Assumptions, peak_rates: dict[str, float]
) -> dict[str, Any]:
    """Upload and transfer costs: per video, as a ratio, and the service's ingress at each peak."""
    durations = measured.durations_s
    mean_duration = statistics.fmean(durations.values())
    shortest = min(durations, key=lambda v: durations[v])
    frames_mbit = measured.frames_bytes * 8 / MBIT
    upload_ratio = assumptions.upload_bitrate_mbit_s / assumptions.uplink_mbit_s
    return {
        "bench_file_bitrates_mbit_s": {
            v: f["bitrate_mbit_s"] for v, f in sorted(measured.video_files.items())
        },
        "upload_ratio": upload_ratio,
        "frames_mbit_per_video": frames_mbit,
        "frames_seconds_lan": frames_mbit / assumptions.lan_mbit_s,
        "frames_seconds_uplink": frames_mbit / assumptions.uplink_mbit_s,
        "frames_ratio_uplink_shortest": frames_mbit
        / assumptions.uplink_mbit_s
        / durations[shortest],
        "frames_ratio_lan_shortest": frames_mbit / assumptions.lan_mbit_s / durations[shortest],
        "shortest_video": shortest,
        "mean_duration_s": mean_duration,
        "ingress_mbit_s_at_peak": {
            scale: {
                "video_files": rate * mean_duration * assumptions.upload_bitrate_mbit_s,
                "frames": rate * frames_mbit,
            }
            for scale, rate in peak_rates.items()
        },
    }
