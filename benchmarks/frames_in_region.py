"""One user's video, decoded straight into the client's shared memory or copied into it.

With the server on the same host the frames reach it through a system shared-memory region
(:mod:`fakescope.client.shared_memory`). The client either decodes a video into its own memory
and copies the frames into the region before the call (``copied``: how every client sent them
before), or decodes them into the region itself (``in_region``: the allocator
:meth:`fakescope.client.triton.DetectorClient.frames_buffer`, which ``fakescope analyze``, the
web service and the load generator now pass), so nothing is copied. One client of the embedded
Triton analyzes every video both ways, the two interleaved round by round and their order
swapped every round, as :func:`fakescope.client.analyze.analyze` does: decode, then infer; the
process keeps freed memory as the long-running clients do (:mod:`fakescope.allocator`). Per
video and way: the median wall time of the whole (decode + call), of the call alone, and the
CPU time this process (the client) used. Both ways must give the same answers, or the run
fails.

Run: ``python -m fakescope.benchmarks.frames_in_region --output
benchmarks/results/<host>/frames_in_region.json`` (writes the JSON and its table, ``.md``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.allocator import set_up_memory
from fakescope.benchmarks.arguments import default_videos
from fakescope.benchmarks.machine import describe_cores_and_load, machine_facts
from fakescope.benchmarks.result_files import code_version
from fakescope.benchmarks.run import run_server_benchmark
from fakescope.benchmarks.service_times import RUNTIME_DIR, running_server
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES, decode_video
from fakescope.client.triton import DetectorClient, RawResult
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.embedded import ServerAddress

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "frames_in_region.json"
COPIED = "copied"
IN_REGION = "in_region"
WAYS = (COPIED, IN_REGION)


def analyze_once(client: DetectorClient, video: Path, way: str) -> tuple[dict[str, float], Any]:
    """Decode ``video`` (into the client's region with ``in_region``) and infer it, timed."""
    cpu = time.process_time()
    began = time.perf_counter()
    allocate = {"allocate": client.frames_buffer} if way == IN_REGION else {}
    decoded = decode_video(video, DEFAULT_NUM_FRAMES, DEFAULT_MAX_SIDE, **allocate)
    called = time.perf_counter()
    answer = client.infer(
        decoded.sampled.frames,
        duration_seconds=decoded.sampled.duration_seconds,
        spent_seconds=decoded.decode_seconds,
    )
    ended = time.perf_counter()
    times = {
        "wall_s": ended - began,
        "call_s": ended - called,
        "client_cpu_s": time.process_time() - cpu,
    }
    return times, answer


def check_same_answers(video: Path, answers: list[RawResult]) -> None:
    """Raise RuntimeError unless every answer has the first one's status, boxes and scores."""
    first = answers[0]
    for other in answers[1:]:
        same = (
            first.status == other.status
            and first.face_boxes.shape == other.face_boxes.shape
            and np.allclose(first.face_boxes, other.face_boxes, atol=1e-3)
            and np.allclose(first.face_scores, other.face_scores, atol=1e-6)
        )
        if not same:
            raise RuntimeError(f"{video.name}: the two ways gave different answers")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time both ways on every video, interleaved; return the result document."""
    # as every long-running client (fakescope analyze, the web service, the load generator):
    # the copied way's arrays reuse freed memory instead of being mapped afresh per video
    set_up_memory()
    videos = default_videos(args.videos_dir, args.dfdc_sample)
    facts = machine_facts()
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        v.name: {way: [] for way in WAYS} for v in videos
    }
    with (
        running_server(args.repository, address, RUNTIME_DIR),
        DetectorClient(address.grpc_url, "grpc", shared_memory=True, timeout_s=120) as client,
    ):
        client.model_facts()
        for video in videos:  # warm-up: first-run costs, not counted; the answers compared
            answers = [analyze_once(client, video, way)[1] for way in WAYS]
            check_same_answers(video, answers)
        for round_ in range(args.rounds):
            order = WAYS if round_ % 2 == 0 else WAYS[::-1]
            for video in videos:
                for way in order:
                    samples[video.name][way].append(analyze_once(client, video, way)[0])
            logger.info("round %d/%d", round_ + 1, args.rounds)
    facts["load_average_at_end"] = list(os.getloadavg())
    return {
        "what": "one gRPC client of the embedded Triton on the same host, frames through shared "
        f"memory, {DEFAULT_NUM_FRAMES} frames per video at most {DEFAULT_MAX_SIDE} px; the two "
        "ways interleaved, their order swapped every round",
        "machine": facts,
        "code_version": code_version(),
        "rounds": args.rounds,
        "videos": {
            name: {
                way: {
                    key: statistics.median(run[key] for run in runs)
                    for key in ("wall_s", "call_s", "client_cpu_s")
                }
                | {"wall_runs_s": [run["wall_s"] for run in runs]}
                for way, runs in by_way.items()
            }
            for name, by_way in samples.items()
        },
    }


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``frames_in_region.json`` as a table."""
    lines = [
        "# Frames decoded into the client's shared memory, or copied into it",
        "",
        "Written by `python -m fakescope.benchmarks.frames_in_region`; do not edit. "
        f"{result['what']}; {result['rounds']} rounds; "
        f"{describe_cores_and_load(result['machine'])}. Seconds, median over rounds: the whole "
        "(decode + call), the call alone, and the client's CPU time; in region vs copied: the "
        "ratio of the medians. Both ways gave the same answers.",
        "",
        "| video | copied: whole / call / client CPU | in region: whole / call / client CPU "
        "| in region vs copied: whole, call, client CPU |",
        "|---|---|---|---|",
    ]
    for name, row in result["videos"].items():
        copied, in_region = row[COPIED], row[IN_REGION]
        cells = [
            f"{r['wall_s']:.3f} / {r['call_s']:.3f} / {r['client_cpu_s']:.3f}"
            for r in (copied, in_region)
        ]
        ratios = ", ".join(
            f"{in_region[key] / copied[key]:.2f}x" for key in ("wall_s", "call_s", "client_cpu_s")
        )
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {ratios} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    return run_server_benchmark(
        argv,
        doc=__doc__,
        first_port=19300,
        result=RESULT,
        rounds=15,
        measure=measure,
        render=render_markdown,
        dfdc_sample=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
