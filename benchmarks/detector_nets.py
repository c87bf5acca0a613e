"""Where face_detector runs the MTCNN nets: time and CPU per video, in its process or via BLS.

Two embedded servers serve the same repository side by side, one with the nets in
``face_detector``'s own process (the embedded server's default) and one calling the ``mtcnn_*``
models through BLS (as the NGC image does; :mod:`fakescope.serving.detector_nets`). Each video is
decoded once (the client's sample); its frames go to both servers, one warm-up each, then
``--runs`` interleaved rounds. Per video and placement: the median wall seconds of the server call
(gRPC, frames through shared memory) and the mean of the server's CPU seconds per call
(tritonserver and its python stubs). Both placements must find the same faces, or the run fails.
Videos: the committed samples, the benchmark videos and, where present,
``../shared/data/dfdc_sample``.

Run: ``python -m fakescope.benchmarks.detector_nets`` (writes
``benchmarks/results/detector_nets.json`` and its table, ``detector_nets.md``).
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

from fakescope.benchmarks.detector_keyframes import add_video_arguments, default_videos
from fakescope.benchmarks.result_files import write_result
from fakescope.benchmarks.service_times import code_version, process_group_cpu_seconds
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.triton import DetectorClient, RawResult
from fakescope.client.video import sample_frames
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.detector_nets import BLS, IN_PROCESS, PLACEMENTS
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "detector_nets.json"
#: Box coordinates of the two placements may differ by float rounding only (pixels).
BOX_TOLERANCE_PX = 1e-2


def timed_infer(
    client: DetectorClient, server: EmbeddedTriton, frames: np.ndarray, duration: float
) -> tuple[RawResult, float, float]:
    """Send ``frames`` once; return the answer, wall seconds and the server's CPU seconds."""
    assert server.process is not None
    cpu = process_group_cpu_seconds(server.process.pid)
    start = time.perf_counter()
    answer = client.infer(frames, duration_seconds=duration)
    wall = time.perf_counter() - start
    return answer, wall, process_group_cpu_seconds(server.process.pid) - cpu


def check_same_faces(video: str, here: RawResult, there: RawResult) -> None:
    """Raise RuntimeError when two servers' answers for ``video`` hold different faces."""
    if here.face_boxes.shape != there.face_boxes.shape or not np.allclose(
        here.face_boxes, there.face_boxes, atol=BOX_TOLERANCE_PX
    ):
        raise RuntimeError(f"{video}: the two servers found different faces")


def measure(
    videos: list[Path], servers: dict[str, EmbeddedTriton], runs: int
) -> list[dict[str, Any]]:
    """Wall and server CPU seconds per video and placement (medians of ``runs``)."""
    clients = {
        name: DetectorClient(s.address.grpc_url, "grpc", shared_memory=True, timeout_s=120)
        for name, s in servers.items()
    }
    rows = []
    try:
        for video in videos:
            sampled = sample_frames(video, DEFAULT_NUM_FRAMES, DEFAULT_MAX_SIDE)
            frames, duration = sampled.frames, sampled.duration_seconds
            answers = {
                name: timed_infer(clients[name], servers[name], frames, duration)[0]
                for name in servers
            }  # the warm-up
            check_same_faces(video.name, answers[IN_PROCESS], answers[BLS])
            wall: dict[str, list[float]] = {name: [] for name in servers}
            cpu: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(runs):
                for name in servers:
                    _, seconds, cpu_seconds = timed_infer(
                        clients[name], servers[name], frames, duration
                    )
                    wall[name].append(seconds)
                    cpu[name].append(cpu_seconds)
            row: dict[str, Any] = {
                "video": video.name,
                "size": list(sampled.frame_size),
                "faces": len(answers[IN_PROCESS].face_scores),
            }
            for name in servers:
                row[name] = {
                    "wall_s": statistics.median(wall[name]),
                    # the mean: /proc counts CPU time in ticks of 10 ms, a median stays on them
                    "server_cpu_s": statistics.mean(cpu[name]),
                }
            row["wall_vs_bls"] = row[IN_PROCESS]["wall_s"] / row[BLS]["wall_s"]
            row["cpu_vs_bls"] = row[IN_PROCESS]["server_cpu_s"] / row[BLS]["server_cpu_s"]
            logger.info("%s: %s", video.name, row)
            rows.append(row)
    finally:
        for client in clients.values():
            client.close()
    return rows


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``detector_nets.json`` as a table."""
    method = result["method"]
    lines = [
        "# Where face_detector runs the MTCNN nets",
        "",
        f"Written by `python -m fakescope.benchmarks.detector_nets`; do not edit. Code "
        f"`{method['code_version']}`. The client's sample ({method['num_frames']} frames, long "
        f"side <= {method['max_side']}) sent to two embedded servers side by side, one call of "
        f"the ensemble over gRPC with shared memory; {method['runs']} interleaved runs after a "
        f"warm-up, seconds (call: median; server CPU: mean); load average before "
        f"{method['loadavg_before'][0]:.2f} on {method['cores']} cores. Both placements found "
        "the same faces in every video.",
        "",
        "| video | frames | faces | in process: call / server CPU | BLS: call / server CPU "
        "| in process vs BLS: call, CPU |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["videos"]:
        cells = [f"{row[p]['wall_s']:.3f} / {row[p]['server_cpu_s']:.3f}" for p in PLACEMENTS[::-1]]
        size = "x".join(str(v) for v in row["size"])
        lines.append(
            f"| {row['video']} | {size} | {row['faces']} | {' | '.join(cells)} "
            f"| {row['wall_vs_bls']:.2f}x, {row['cpu_vs_bls']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULT)
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument(
        "--first-port", type=int, default=18500, help="six ports from here, three per server"
    )
    add_video_arguments(parser)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    loadavg = os.getloadavg()
    videos = default_videos(args.bench_videos, args.dfdc_sample)
    servers = {
        placement: EmbeddedTriton(
            args.repository,
            ServerAddress(
                "127.0.0.1", *range(args.first_port + 3 * i, args.first_port + 3 * i + 3)
            ),
            runtime_dir=PROJECT_ROOT / ".fakescope" / f"runtime-detector-nets-{placement}",
            detector_nets=placement,
        )
        for i, placement in enumerate(PLACEMENTS)
    }
    try:
        for server in servers.values():
            server.start()
        rows = measure(videos, servers, args.runs)
    finally:
        for server in servers.values():
            server.stop()
    result = {
        "videos": rows,
        "method": {
            "runs": args.runs,
            "num_frames": DEFAULT_NUM_FRAMES,
            "max_side": DEFAULT_MAX_SIDE,
            "cores": os.cpu_count(),
            "loadavg_before": loadavg,
            "code_version": code_version(),
        },
    }
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
