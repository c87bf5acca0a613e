"""The seed pipeline alone and right after a served video: the kernel's share of its time.

The seed project reads every frame of a video and keeps each as RGB before it samples any
(:class:`fakescope.benchmarks.inprocess.SeedPipeline`): 1800 frames of 720p are 5 GB, and as
many BGR frames are allocated and freed on the way, about a million page faults. ``make bench``
times the seed between the other paths, the served one among them, and on the 60 s video it
took two to four times what it takes in a process of its own. This runs the seed as ``make
bench`` does (its frame indices, in a process whose memory is set up as there,
:func:`fakescope.allocator.set_up_memory`) in two conditions interleaved round by round:
alone, and right after one served video (the 10 s 720p bench video through an embedded Triton,
one gRPC user, as in ``make bench``'s rounds). A first run of each video is recorded on its
own. Per video and condition: the median wall seconds, user and system CPU seconds of the run,
the page faults it took, and the size of the frames its read held.

Run: ``python -m fakescope.benchmarks.seed_memory --output
benchmarks/results/<host>/seed_memory.json`` (writes the JSON and its table, ``.md``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.allocator import set_up_memory
from fakescope.arguments import positive_int
from fakescope.benchmarks.arguments import check_json_output
from fakescope.benchmarks.inprocess import SeedPipeline
from fakescope.benchmarks.machine import describe_cores_and_load, machine_facts
from fakescope.benchmarks.process_usage import (
    FAULTS_TO_PRICE,
    USAGE_KEYS,
    fault_price_us,
    measured_usage,
)
from fakescope.benchmarks.result_files import code_version, fmt, write_result
from fakescope.benchmarks.run import add_server_arguments
from fakescope.benchmarks.service_times import running_server
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES, analyze
from fakescope.client.frames import even_frame_indices
from fakescope.client.triton import DetectorClient
from fakescope.client.video import sample_frames
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.embedded import ServerAddress

logger = logging.getLogger(__name__)

#: The bench videos the seed runs on: the shortest 720p one and the longest.
VIDEOS = ("face_720p_10s.mp4", "face_720p_60s.mp4")
#: The video served before a seed run in the ``after a served video`` condition.
SERVED_VIDEO = "face_720p_10s.mp4"
ALONE = "alone"
AFTER_SERVED = "after a served video"
RUNTIME_DIR = PROJECT_ROOT / ".fakescope" / "runtime-seed-memory"
_KEYS = ("wall_s", *USAGE_KEYS)

#: One seed run: its wall seconds (``SeedPipeline.run``).
SeedRun = Callable[[Path], float]


def timed_run(run: SeedRun, video: Path) -> dict[str, float]:
    """Run the seed on ``video``; return its wall, user and system seconds and page faults."""
    with measured_usage() as usage:
        wall = run(video)
    return {"wall_s": wall, **usage}


def measure(
    videos: list[Path], run: SeedRun, serve_one: Callable[[], object], rounds: int
) -> dict[str, dict[str, Any]]:
    """Time ``run`` on every video in both conditions; return medians and first runs.

    ``serve_one`` analyses one video on the server (the ``after a served video`` condition).
    """
    # the first run on each video: the file comes into the page cache and the process's heap
    # grows to hold its frames for the first time; recorded, not counted in the rounds
    first = {video.name: timed_run(run, video) for video in videos}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        v.name: {ALONE: [], AFTER_SERVED: []} for v in videos
    }
    for round_ in range(rounds):
        for video in videos:
            for condition in (ALONE, AFTER_SERVED):
                if condition == AFTER_SERVED:
                    serve_one()
                runs[video.name][condition].append(timed_run(run, video))
        logger.info("round %d/%d", round_ + 1, rounds)
    return {
        "first_runs": first,
        "videos": {
            name: {
                condition: {key: statistics.median(r[key] for r in reads) for key in _KEYS}
                | {"wall_runs_s": [r["wall_s"] for r in reads]}
                for condition, reads in by_condition.items()
            }
            for name, by_condition in runs.items()
        },
    }


def frames_gigabytes(video: Path) -> float:
    """Return the GB of every frame of ``video`` as RGB: what the seed's read holds at once."""
    probe = sample_frames(video, 1)
    width, height = probe.source_size
    return probe.total_frames * width * height * 3 / 1e9


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``seed_memory.json`` as a table."""
    lines = [
        "# The seed pipeline alone and right after a served video",
        "",
        "Written by `python -m fakescope.benchmarks.seed_memory`; do not edit. "
        f"{result['what']}: {result['rounds']} rounds, "
        f"{describe_cores_and_load(result['machine'])}. Medians; seconds; page faults in "
        "thousands; a fault's price, the run's system CPU over its faults, where it took at "
        f"least {FAULTS_TO_PRICE}.",
        "",
        "| video | frames held GB | condition | seed run | user CPU | system CPU | page faults "
        "| system µs per fault | slowest run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_condition in result["videos"].items():
        held = f"{result['frames_gb'][name]:.2f}"
        rows = [("first run in the process", result["first_runs"][name])]
        rows += list(by_condition.items())
        for condition, row in rows:
            slowest = f"{max(row['wall_runs_s']):.2f}" if "wall_runs_s" in row else ""
            lines.append(
                f"| {name} | {held} | {condition} | {row['wall_s']:.2f} "
                f"| {row['user_cpu_s']:.2f} | {row['system_cpu_s']:.2f} "
                f"| {row['page_faults'] / 1000:.0f} | {fmt(fault_price_us(row), 1)} | {slowest} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser, first_port=18700)
    parser.set_defaults(output=PROJECT_ROOT / "benchmarks" / "results" / "seed_memory.json")
    parser.add_argument("--rounds", type=positive_int, default=5)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    check_json_output(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from fakescope.benchmarks.videos import ensure_videos  # needs scikit-image

    bench_videos = {v.name: v for v in ensure_videos(args.videos_dir)}
    videos = [bench_videos[name] for name in VIDEOS]
    set_up_memory()  # as make bench's process does (its in-process pipeline sets it)
    seed = SeedPipeline(args.repository)
    # the seed's own 32 frames at our sampler's indices, as make bench gives it
    indices = {
        v: np.asarray(even_frame_indices(sample_frames(v, 1).total_frames, SeedPipeline.FRAMES))
        for v in videos
    }
    facts = machine_facts()
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    # the client closes first: tritonserver waits for connected gRPC clients when stopped
    with (
        running_server(args.repository, address, RUNTIME_DIR),
        DetectorClient(address.grpc_url, "grpc", shared_memory=True) as client,
    ):

        def serve_one() -> object:
            return analyze(
                bench_videos[SERVED_VIDEO],
                client=client,
                num_frames=DEFAULT_NUM_FRAMES,
                max_side=DEFAULT_MAX_SIDE,
            )

        serve_one()  # the server's first-call costs, not counted
        measured = measure(videos, lambda v: seed.run(v, indices[v])[0], serve_one, args.rounds)
    facts["load_average_at_end"] = list(os.getloadavg())
    result = {
        "what": "The seed pipeline (OpenCV reads every frame, facenet MTCNN() on 32 of them, "
        "B0 per face) at make bench's frame indices, in one process that keeps freed memory as "
        f"make bench's does, alone and right after {SERVED_VIDEO} served by the embedded Triton "
        "(one gRPC user, frames through shared memory), the two interleaved",
        "machine": facts,
        "code_version": code_version(),
        "rounds": args.rounds,
        "frames_gb": {v.name: frames_gigabytes(v) for v in videos},
        **measured,
    }
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
