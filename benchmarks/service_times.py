"""Per-video service times at 1 user, their stage split, and the replica start time.

``python -m fakescope.benchmarks.service_times`` writes ``service_times.json`` into ``--output``
(``benchmarks/results/``): the measurements the capacity model
(:mod:`fakescope.benchmarks.capacity`) needs and ``make bench``'s ``summary.json`` does not hold:

* **replica start**: the embedded tritonserver from ``start()`` to ``/v2/health/ready``, the
  median of ``--starts`` cold starts (each on its own, nothing else connected);
* **per-video service times**: every benchmark video (or each file ``--videos`` names), one
  user, ``--runs`` timed runs each after one warm-up, in interleaved order (so a change in the
  machine's load spreads over all videos):
  the client's decode (wall and CPU seconds), the server call, and the **stage split** of the
  server call from Triton's own per-model statistics (``face_detector`` with its MTCNN nets and
  the face crops, ``face_scorer`` with ``face_classifier``, ``video_aggregator``), plus the CPU
  seconds the server's processes used;
* what the network would carry: the video file's bytes (its bitrate) and the frames' bytes.

The machine is shared: the load average is recorded at start, at end and with every run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tritonclient.grpc as grpcclient

from fakescope import contract
from fakescope.arguments import frame_count, positive_int
from fakescope.benchmarks.machine import machine_facts
from fakescope.benchmarks.result_files import code_version
from fakescope.benchmarks.run import add_server_arguments, add_videos_argument
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES, decode_video
from fakescope.client.triton import DetectorClient
from fakescope.client.video import sample_frames
from fakescope.files import write_text_atomically
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.detector_nets import IN_PROCESS, PLACEMENTS, NetsPlacement
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress, port_problem
from fakescope.serving.process_group import group_stat_fields
from fakescope.serving.repository_check import RepositoryError, check_repository

logger = logging.getLogger(__name__)

#: The result file's name in the ``--output`` folder.
RESULT_NAME = "service_times.json"
#: Its own runtime folder, beside the ones of servers started by others (their logs and S3
#: copies stay apart).
RUNTIME_DIR = PROJECT_ROOT / ".fakescope" / "runtime-service-times"
#: The models whose statistics make up the stage split (the ensemble's steps and the models they
#: call through BLS). A BLS caller's time includes its callees' (``face_detector`` includes the
#: three nets, ``face_scorer`` includes ``face_classifier``).
STAGE_MODELS = (
    contract.ENSEMBLE_MODEL,
    contract.FACE_DETECTOR_MODEL,
    contract.PNET_MODEL,
    contract.RNET_MODEL,
    contract.ONET_MODEL,
    contract.FACE_SCORER_MODEL,
    contract.CLASSIFIER_MODEL,
    contract.VIDEO_AGGREGATOR_MODEL,
)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    """Cumulative server-side counters at one moment."""

    model_seconds: dict[str, float]
    server_cpu_seconds: float
    model_requests: dict[str, float] = field(default_factory=dict)
    model_input_seconds: dict[str, float] = field(default_factory=dict)


def _summed_counter(stats: dict[str, Any], key: str, section: str = "success") -> dict[str, float]:
    """Each model's cumulative counter ``key`` of ``section`` (all versions summed)."""
    totals: dict[str, float] = {}
    for model in stats.get("model_stats", []):
        counter = model.get("inference_stats", {}).get(section, {})
        value = int(counter.get(key, 0))  # protobuf's JSON writes 64-bit integers as strings
        totals[model["name"]] = totals.get(model["name"], 0.0) + value
    return totals


def model_seconds(stats: dict[str, Any]) -> dict[str, float]:
    """Return each model's cumulative successful-request seconds (all versions summed).

    ``stats`` is Triton's inference statistics as JSON (``get_inference_statistics(...,
    as_json=True)``); a request's ``success`` duration runs from its arrival at the model to its
    response, queueing included.
    """
    return {name: ns / 1e9 for name, ns in _summed_counter(stats, "ns").items()}


def model_requests(stats: dict[str, Any]) -> dict[str, float]:
    """Return each model's cumulative count of successful requests (all versions summed).

    For a model called through BLS, one per call: how many round trips a video costs.
    """
    return _summed_counter(stats, "count")


def admission_split(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
    """Mean seconds an answered video spent in the admission queue, and after it.

    ``before`` and ``after`` are Triton's inference statistics as JSON. ``entry_queue_seconds``:
    ``face_detector``'s queue (the ensemble's entry, where deadlines are enforced);
    ``after_queue_seconds``: the rest of the ensemble's time, the analysis itself (detection,
    classifier and aggregation, with their own queues). Means over the videos answered between
    the two; ``None`` when there were none.
    """

    def growth(key: str, section: str, model: str) -> float:
        return _summed_counter(after, key, section).get(model, 0.0) - _summed_counter(
            before, key, section
        ).get(model, 0.0)

    videos = growth("count", "success", contract.ENSEMBLE_MODEL)
    queued = growth("count", "queue", contract.FACE_DETECTOR_MODEL)
    if not videos or not queued:
        return {"videos": videos, "entry_queue_seconds": None, "after_queue_seconds": None}
    entry = growth("ns", "queue", contract.FACE_DETECTOR_MODEL) / queued / 1e9
    total = growth("ns", "success", contract.ENSEMBLE_MODEL) / videos / 1e9
    return {"videos": videos, "entry_queue_seconds": entry, "after_queue_seconds": total - entry}


def process_group_cpu_seconds(pgid: int) -> float:
    """Return the user + system CPU seconds of every live process in process group ``pgid``.

    tritonserver is started in its own session, so its group holds it and its python stubs.
    """
    ticks = sum(int(f[11]) + int(f[12]) for f in group_stat_fields(pgid))  # utime, stime
    return ticks / _CLOCK_TICKS


def process_group_system_cpu_seconds(pgid: int) -> float:
    """Return the system (kernel) CPU seconds of every live process in process group ``pgid``.

    The kernel's share of :func:`process_group_cpu_seconds`: among it, the time spent handing
    the processes memory on first touch (page faults), which a huge page's single fault hides
    from :func:`process_group_minor_faults`.
    """
    return sum(int(f[12]) for f in group_stat_fields(pgid)) / _CLOCK_TICKS  # stime


def process_group_minor_faults(pgid: int) -> int:
    """Return the minor page faults of every live process in process group ``pgid`` so far.

    A minor fault is a page the kernel hands a process on first touch: memory mapped afresh.
    """
    return sum(int(f[7]) for f in group_stat_fields(pgid))  # minflt (field 10)


def model_input_seconds(stats: dict[str, Any]) -> dict[str, float]:
    """Return each model's cumulative ``compute_input`` seconds (all versions summed).

    The time Triton spent handing a model its inputs; for a python model, copying them into
    its stub's shared memory (``face_detector``: the frames).
    """
    return {name: ns / 1e9 for name, ns in _summed_counter(stats, "ns", "compute_input").items()}


def snapshot(stats_client: grpcclient.InferenceServerClient, pgid: int) -> Snapshot:
    """Read the server's per-model statistics and its processes' CPU time."""
    stats = stats_client.get_inference_statistics(model_name="", as_json=True)
    return Snapshot(
        model_seconds(stats),
        process_group_cpu_seconds(pgid),
        model_requests(stats),
        model_input_seconds(stats),
    )


def _growth(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in STAGE_MODELS}


def stage_split(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Seconds each model of :data:`STAGE_MODELS` spent between two snapshots."""
    return _growth(before.model_seconds, after.model_seconds)


def request_split(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Count the requests each model of :data:`STAGE_MODELS` answered between two snapshots."""
    return _growth(before.model_requests, after.model_requests)


def measure_starts(
    repository: Path, address: ServerAddress, runtime_dir: Path, starts: int
) -> list[float]:
    """Start and stop the embedded tritonserver ``starts`` times; return start → ready seconds."""
    seconds = []
    for i in range(starts):
        server = EmbeddedTriton(repository, address, runtime_dir=runtime_dir)
        began = time.perf_counter()
        server.start()
        seconds.append(time.perf_counter() - began)
        server.stop()
        logger.info("start %d/%d: %.2f s to ready", i + 1, starts, seconds[-1])
    return seconds


def measure_run(
    video: Path,
    client: DetectorClient,
    stats_client: grpcclient.InferenceServerClient,
    pgid: int,
    frames: int,
) -> dict[str, Any]:
    """Analyze ``video`` once at 1 user; return its timings, stage split and sizes."""
    before = snapshot(stats_client, pgid)
    cpu_began = time.process_time()
    decoded = decode_video(video, frames, DEFAULT_MAX_SIDE, allocate=client.frames_buffer)
    decode_cpu = time.process_time() - cpu_began
    began = time.perf_counter()
    raw = client.infer(decoded.sampled.frames, duration_seconds=decoded.sampled.duration_seconds)
    infer_seconds = time.perf_counter() - began
    after = snapshot(stats_client, pgid)
    duration = decoded.sampled.duration_seconds
    processing = decoded.decode_seconds + infer_seconds
    return {
        "video": video.name,
        "duration_seconds": duration,
        "decode_seconds": decoded.decode_seconds,
        "decode_cpu_seconds": decode_cpu,
        "infer_seconds": infer_seconds,
        "processing_seconds": processing,
        "ratio": processing / duration,
        "stage_seconds": stage_split(before, after),
        "stage_requests": request_split(before, after),
        "stage_input_seconds": _growth(before.model_input_seconds, after.model_input_seconds),
        "server_cpu_seconds": after.server_cpu_seconds - before.server_cpu_seconds,
        "faces": len(raw.face_scores),
        "frames_bytes": decoded.sampled.frames.nbytes,
        "load_average_1min": os.getloadavg()[0],
    }


def interleaved(videos: list[Path], runs: int) -> Iterator[Path]:
    """Yield every video ``runs`` times, one round over all videos at a time."""
    for _ in range(runs):
        yield from videos


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median of each timing per video."""
    keys = (
        "processing_seconds",
        "decode_seconds",
        "decode_cpu_seconds",
        "infer_seconds",
        "server_cpu_seconds",
        "ratio",
    )
    out: dict[str, dict[str, float]] = {}
    for name in sorted({r["video"] for r in records}):
        mine = [r for r in records if r["video"] == name]
        medians = {k: statistics.median(r[k] for r in mine) for k in keys}
        for stage in STAGE_MODELS:
            medians[f"stage_{stage}"] = statistics.median(r["stage_seconds"][stage] for r in mine)
            medians[f"requests_{stage}"] = statistics.median(
                r["stage_requests"][stage] for r in mine
            )
            medians[f"input_{stage}"] = statistics.median(
                r["stage_input_seconds"][stage] for r in mine
            )
        out[name] = medians
    return out


@contextmanager
def running_server(
    repository: Path,
    address: ServerAddress,
    runtime_dir: Path,
    detector_nets: NetsPlacement = IN_PROCESS,
) -> Iterator[EmbeddedTriton]:
    """Start the embedded Triton for the timed runs; stop it afterwards."""
    server = EmbeddedTriton(
        repository, address, runtime_dir=runtime_dir, detector_nets=detector_nets
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement; return the result document."""
    from fakescope.benchmarks.videos import ensure_videos  # needs scikit-image

    facts = machine_facts()
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    starts = measure_starts(args.repository, address, args.runtime_dir, args.starts)
    videos = args.videos or ensure_videos(args.videos_dir)
    files = {v.name: {"bytes": v.stat().st_size} for v in videos}
    for video in videos:  # the upright size, as the client reads it
        width, height = sample_frames(video, 1).source_size
        files[video.name].update(width=width, height=height)
    records: list[dict[str, Any]] = []
    with running_server(args.repository, address, args.runtime_dir, args.detector_nets) as server:
        assert server.process is not None  # started
        pgid = server.process.pid
        stats_client = grpcclient.InferenceServerClient(address.grpc_url)
        client = DetectorClient(address.grpc_url, "grpc", timeout_s=120)
        try:
            client.model_facts()
            for video in videos:  # warm-up: first-run costs of every model, not counted
                measure_run(video, client, stats_client, pgid, args.frames)
            for i, video in enumerate(interleaved(videos, args.runs)):
                records.append(measure_run(video, client, stats_client, pgid, args.frames))
                total = args.runs * len(videos)
                seconds = records[-1]["processing_seconds"]
                logger.info("%d/%d %s: %.3f s", i + 1, total, video.name, seconds)
        finally:
            client.close()  # before the stop: tritonserver waits for connected gRPC clients
            stats_client.close()
    facts["load_average_at_end"] = list(os.getloadavg())
    for name, info in files.items():
        duration = next(r["duration_seconds"] for r in records if r["video"] == name)
        info["bitrate_mbit_s"] = info["bytes"] * 8 / duration / 1e6
    return {
        "what": "1 user, gRPC with shared memory, the embedded Triton on this machine; "
        "server stage seconds are Triton's per-model success durations (a BLS caller includes "
        "its callees); input_<model>: the part of it spent handing the model its inputs "
        "(compute_input)",
        "machine": facts,
        "code_version": args.code_version or code_version(),
        "frames": args.frames,
        "max_side": DEFAULT_MAX_SIDE,
        "detector_nets": args.detector_nets,
        "replica_start_seconds": {
            "runs": starts,
            "median": statistics.median(starts),
            "what": "EmbeddedTriton.start(): runtime laid out, tritonserver launched, "
            "/v2/health/ready answers 200 (all models loaded); no pod scheduling or image pull",
        },
        "video_files": files,
        "runs_per_video": args.runs,
        "per_video_median": summarize(records),
        "runs": records,
    }


def _check_args(args: argparse.Namespace) -> None:
    if args.runs < 1 or args.starts < 1:
        raise ValueError("--runs and --starts must be at least 1")
    check_repository(args.repository)
    for port in (args.http_port, args.grpc_port, args.metrics_port):
        problem = port_problem("127.0.0.1", port)
        if problem is not None:
            raise ValueError(f"{problem}: pick free ones with --*-port")


def build_parser() -> argparse.ArgumentParser:
    """Return the command line of ``python -m fakescope.benchmarks.service_times``."""
    parser = argparse.ArgumentParser(
        prog="python -m fakescope.benchmarks.service_times",
        description="per-video service times at 1 user, stage split, replica start time",
    )
    # --repository, --output (the result folder), --videos-dir and the ports, as every
    # benchmark that starts its own Triton has them
    add_server_arguments(parser, first_port=18400)
    add_videos_argument(parser, "the capacity model then plans for those videos")
    parser.add_argument("--runtime-dir", type=Path, default=RUNTIME_DIR)
    parser.add_argument("--runs", type=positive_int, default=10, help="timed runs per video")
    parser.add_argument("--starts", type=positive_int, default=5, help="cold starts to time")
    parser.add_argument("--frames", type=frame_count, default=DEFAULT_NUM_FRAMES)
    parser.add_argument(
        "--detector-nets",
        choices=PLACEMENTS,
        default=IN_PROCESS,
        help="the MTCNN nets in face_detector's process, or called through BLS (each net's "
        "requests and time then appear as stages of their own)",
    )
    parser.add_argument(
        "--code-version", default=None, help="the measured commit, for a tree outside git"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file; exit 2 on bad arguments."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        _check_args(args)
    except (ValueError, RepositoryError) as exc:
        print(f"service_times: {exc}", file=sys.stderr)  # noqa: T201 - a CLI's error line
        return 2
    result = measure(args)
    args.output.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.output / RESULT_NAME, json.dumps(result, indent=1) + "\n")
    medians = {v: round(m["processing_seconds"], 3) for v, m in result["per_video_median"].items()}
    shown = {
        "replica_start_median_s": result["replica_start_seconds"]["median"],
        "processing_seconds_median": medians,
    }
    print(json.dumps(shown, indent=1))  # noqa: T201 - a CLI prints its result
    return 0


if __name__ == "__main__":
    sys.exit(main())
