"""The server's allocator: freed memory kept for the next request against glibc's defaults.

Two embedded servers serve the same repository side by side: one started with
``GLIBC_TUNABLES`` set to :data:`fakescope.serving.allocator.KEEP_FREED_MEMORY`, one with
glibc's defaults (``GLIBC_TUNABLES`` empty, as the embedded server starts). Each video is
decoded once (the client's sample); its frames go to both servers, one warm-up each, then
``--runs`` interleaved rounds, with a pause after each round as between a user's videos. Per
video and server: the median wall seconds of the call (gRPC, frames through shared memory), the
mean server CPU seconds and the median MiB the server's processes faulted in per call
(tritonserver and its python stubs). Both must find the same faces, or the run fails.

Run: ``python -m fakescope.benchmarks.server_allocator`` (writes
``benchmarks/results/server_allocator.json`` and its table, ``server_allocator.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fakescope.benchmarks.detector_keyframes import add_video_arguments, default_videos
from fakescope.benchmarks.detector_nets import check_same_faces, timed_infer
from fakescope.benchmarks.result_files import write_result
from fakescope.benchmarks.service_times import code_version, process_group_minor_faults
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.triton import DetectorClient
from fakescope.client.video import sample_frames
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.allocator import KEEP_FREED_MEMORY, TUNABLES_ENV
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "server_allocator.json"
KEPT = "kept"
GLIBC_DEFAULT = "glibc_default"
#: The value of ``GLIBC_TUNABLES`` each server starts with ("": glibc's defaults).
TUNABLES = {KEPT: KEEP_FREED_MEMORY, GLIBC_DEFAULT: ""}
_MIB = 1024 * 1024


@contextlib.contextmanager
def _tunables(value: str) -> Iterator[None]:
    """Run the block with ``GLIBC_TUNABLES`` set to ``value`` (the server inherits it)."""
    before = os.environ.get(TUNABLES_ENV)
    os.environ[TUNABLES_ENV] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[TUNABLES_ENV]
        else:
            os.environ[TUNABLES_ENV] = before


def measure(
    videos: list[Path], servers: dict[str, EmbeddedTriton], runs: int, pause_s: float
) -> list[dict[str, Any]]:
    """Wall, server CPU seconds and MiB faulted in per video and server."""
    clients = {
        name: DetectorClient(s.address.grpc_url, "grpc", shared_memory=True, timeout_s=120)
        for name, s in servers.items()
    }
    page = resource.getpagesize()
    rows = []
    try:
        for video in videos:
            sampled = sample_frames(video, DEFAULT_NUM_FRAMES, DEFAULT_MAX_SIDE)
            frames, duration = sampled.frames, sampled.duration_seconds
            answers = {
                name: timed_infer(clients[name], servers[name], frames, duration)[0]
                for name in servers
            }  # the warm-up
            check_same_faces(video.name, answers[KEPT], answers[GLIBC_DEFAULT])
            samples: dict[str, dict[str, list[float]]] = {
                name: {"wall": [], "cpu": [], "faults": []} for name in servers
            }
            for _ in range(runs):
                for name, server in servers.items():
                    assert server.process is not None
                    faults = process_group_minor_faults(server.process.pid)
                    _, wall, cpu = timed_infer(clients[name], server, frames, duration)
                    faults = process_group_minor_faults(server.process.pid) - faults
                    samples[name]["wall"].append(wall)
                    samples[name]["cpu"].append(cpu)
                    samples[name]["faults"].append(faults * page / _MIB)
                time.sleep(pause_s)
            row: dict[str, Any] = {"video": video.name, "size": list(sampled.frame_size)}
            for name in servers:
                row[name] = {
                    "wall_s": statistics.median(samples[name]["wall"]),
                    # the mean: /proc counts CPU time in ticks of 10 ms, a median stays on them
                    "server_cpu_s": statistics.mean(samples[name]["cpu"]),
                    "faulted_mib": statistics.median(samples[name]["faults"]),
                }
            row["wall_vs_default"] = row[KEPT]["wall_s"] / row[GLIBC_DEFAULT]["wall_s"]
            row["cpu_vs_default"] = row[KEPT]["server_cpu_s"] / row[GLIBC_DEFAULT]["server_cpu_s"]
            logger.info("%s: %s", video.name, row)
            rows.append(row)
    finally:
        for client in clients.values():
            client.close()
    return rows


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``server_allocator.json`` as a table."""
    method = result["method"]
    lines = [
        "# The server's allocator: freed memory kept, or glibc's defaults",
        "",
        f"Written by `python -m fakescope.benchmarks.server_allocator`; do not edit. Code "
        f"`{method['code_version']}`. The client's sample ({method['num_frames']} frames, long "
        f"side <= {method['max_side']}) sent to two embedded servers side by side, one call of "
        f"the ensemble over gRPC with shared memory; {method['runs']} interleaved runs after a "
        f"warm-up, {method['pause_s']} s apart; call: median seconds, server CPU: mean seconds, "
        f"faulted in: median MiB per call over tritonserver and its stubs; load average before "
        f"{method['loadavg_before'][0]:.2f} on {method['cores']} cores. Kept: "
        f"`{TUNABLES_ENV}={method['tunables'][KEPT]}`. Both found the same faces in every video.",
        "",
        "| video | frames | kept: call / server CPU / faulted in | glibc defaults: call / "
        "server CPU / faulted in | kept vs defaults: call, CPU |",
        "|---|---|---|---|---|",
    ]
    for row in result["videos"]:
        cells = [
            f"{row[n]['wall_s']:.3f} / {row[n]['server_cpu_s']:.3f} / {row[n]['faulted_mib']:.0f}"
            for n in (KEPT, GLIBC_DEFAULT)
        ]
        size = "x".join(str(v) for v in row["size"])
        lines.append(
            f"| {row['video']} | {size} | {' | '.join(cells)} "
            f"| {row['wall_vs_default']:.2f}x, {row['cpu_vs_default']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds after each round")
    parser.add_argument("--output", type=Path, default=RESULT)
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument(
        "--first-port", type=int, default=18600, help="six ports from here, three per server"
    )
    add_video_arguments(parser)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.pause < 0:
        parser.error("--pause must be 0 or more")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    loadavg = os.getloadavg()
    videos = default_videos(args.bench_videos, args.dfdc_sample)
    servers = {
        name: EmbeddedTriton(
            args.repository,
            ServerAddress(
                "127.0.0.1", *range(args.first_port + 3 * i, args.first_port + 3 * i + 3)
            ),
            runtime_dir=PROJECT_ROOT / ".fakescope" / f"runtime-allocator-{name}",
        )
        for i, name in enumerate(TUNABLES)
    }
    try:
        for name, server in servers.items():
            with _tunables(TUNABLES[name]):
                server.start()
        rows = measure(videos, servers, args.runs, args.pause)
    finally:
        for server in servers.values():
            server.stop()
    result = {
        "videos": rows,
        "method": {
            "runs": args.runs,
            "pause_s": args.pause,
            "num_frames": DEFAULT_NUM_FRAMES,
            "max_side": DEFAULT_MAX_SIDE,
            "tunables": TUNABLES,
            "cores": os.cpu_count(),
            "loadavg_before": loadavg,
            "code_version": code_version(),
        },
    }
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
