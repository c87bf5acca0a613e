"""The seed pipeline's first step, OpenCV reading every frame into memory, and the kernel's share.

The seed project reads every frame of a video and keeps each as RGB before it samples any
(:func:`fakescope.benchmarks.inprocess.seed_read_frames`, the step its timed path in ``make
bench`` runs): 1800 frames of 720p are 5 GB, and as many BGR frames are allocated and freed on
the way. On a virtual machine whose host takes freed memory back, faulting that much memory in
is kernel work whose price depends on what the host has taken back, and the seed's time on a
long video varies with it. This times that step alone, in this process as in ``make bench``
(freed memory kept, :func:`fakescope.allocator.keep_freed_memory`), ``--rounds`` rounds over the
videos, each read after a pause of ``--pauses`` seconds (interleaved), after a first read of
each video, recorded on its own. Per video and pause: the median wall seconds, user and system
CPU seconds of the read, and the frames' size.

Run: ``python -m fakescope.benchmarks.seed_read --output
benchmarks/results/<host>/seed_read.json`` (writes the JSON and its table, ``.md``).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from fakescope.allocator import keep_freed_memory
from fakescope.benchmarks.arguments import add_pause_arguments, check_pauses
from fakescope.benchmarks.inprocess import seed_read_frames
from fakescope.benchmarks.machine import describe_cores_and_load, machine_facts
from fakescope.benchmarks.result_files import write_result
from fakescope.benchmarks.service_times import code_version
from fakescope.paths import PROJECT_ROOT

logger = logging.getLogger(__name__)

#: The bench videos read: the shortest 720p one and the longest.
VIDEOS = ("face_720p_10s.mp4", "face_720p_60s.mp4")
RESULT = PROJECT_ROOT / "benchmarks" / "results" / "seed_read.json"


def timed_read(video: Path) -> dict[str, float]:
    """Read ``video`` as the seed does; return wall, user and system seconds and the GB held."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    frames = seed_read_frames(video)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    held = sum(f.nbytes for f in frames) / 1e9
    del frames
    return {
        "wall_s": wall,
        "user_cpu_s": after.ru_utime - before.ru_utime,
        "system_cpu_s": after.ru_stime - before.ru_stime,
        "frames_gb": held,
    }


def measure(videos: list[Path], pauses: list[float], rounds: int) -> dict[str, Any]:
    """Time the seed's read of every video after every pause; return the result document."""
    keep_freed_memory()  # as make bench's process does (its in-process pipeline sets it)
    facts = machine_facts()
    # the first read of each video: the file comes into the page cache and the process's heap
    # grows to hold the frames for the first time; recorded, not counted in the rounds
    first = {video.name: timed_read(video) for video in videos}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        v.name: {str(p): [] for p in pauses} for v in videos
    }
    for round_ in range(rounds):
        for pause in pauses:
            for video in videos:
                time.sleep(pause)
                runs[video.name][str(pause)].append(timed_read(video))
        logger.info("round %d/%d", round_ + 1, rounds)
    facts["load_average_at_end"] = list(os.getloadavg())
    return {
        "what": "The seed's read of every frame (OpenCV, each frame kept as RGB), in one "
        "process that keeps freed memory as make bench's does; each read after the pause",
        "machine": facts,
        "code_version": code_version(),
        "rounds": rounds,
        "first_reads": first,
        "videos": {
            name: {
                pause: {
                    key: statistics.median(r[key] for r in reads)
                    for key in ("wall_s", "user_cpu_s", "system_cpu_s", "frames_gb")
                }
                | {"wall_runs_s": [r["wall_s"] for r in reads]}
                for pause, reads in by_pause.items()
            }
            for name, by_pause in runs.items()
        },
    }


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``seed_read.json`` as a table."""
    lines = [
        "# The seed pipeline's read of every frame, and the kernel's share of it",
        "",
        "Written by `python -m fakescope.benchmarks.seed_read`; do not edit. "
        f"{result['what']}: {result['rounds']} rounds, "
        f"{describe_cores_and_load(result['machine'])}. Medians; seconds.",
        "",
        "| video | pause s | frames held GB | read | user CPU | system CPU | slowest read |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_pause in result["videos"].items():
        first = result["first_reads"][name]
        lines.append(
            f"| {name} | first read in the process | {first['frames_gb']:.2f} "
            f"| {first['wall_s']:.2f} | {first['user_cpu_s']:.2f} | {first['system_cpu_s']:.2f} "
            "| |"
        )
        for pause, row in by_pause.items():
            lines.append(
                f"| {name} | {pause} | {row['frames_gb']:.2f} | {row['wall_s']:.2f} "
                f"| {row['user_cpu_s']:.2f} | {row['system_cpu_s']:.2f} "
                f"| {max(row['wall_runs_s']):.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=RESULT)
    add_pause_arguments(parser, pauses=[0.0, 5.0], rounds=5)
    parser.add_argument(
        "--videos-dir", type=Path, default=PROJECT_ROOT / ".fakescope" / "bench-videos"
    )
    args = parser.parse_args(argv)
    check_pauses(parser, args)
    if args.output.suffix != ".json":
        parser.error("--output must name the .json result file")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from fakescope.benchmarks.videos import ensure_videos  # needs scikit-image

    videos = [v for v in ensure_videos(args.videos_dir) if v.name in VIDEOS]
    write_result(args.output, measure(videos, args.pauses, args.rounds), render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
