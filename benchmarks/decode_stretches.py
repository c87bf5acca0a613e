"""Client decoding in one pass vs in stretches decoded at once: wall and CPU time per video.

For each benchmark video, the client's sample (its default frame count and long side) is taken
with :func:`fakescope.client.video.sample_frames`, alternately with
:data:`fakescope.client.pyav_sampler.DECODE_STRETCHES` 1 (one sequential pass) and the served
value, ``--runs`` times each; medians of wall time (what one user waits) and of this process's
CPU time (what a busy client pays). Videos whose every segment has a keyframe take the
keyframe path, which has no stretches: their two columns measure the same code.

Run: ``python -m fakescope.benchmarks.decode_stretches`` (writes
``benchmarks/results/decode_stretches.json`` and its table, ``decode_stretches.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import fakescope.client.pyav_sampler as pyav_sampler
from fakescope.benchmarks.run import machine_facts
from fakescope.benchmarks.videos import BENCH_VIDEOS, ensure_videos
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.video import sample_frames
from fakescope.paths import PROJECT_ROOT

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "decode_stretches.json"


def _timed(path: Path, stretches: int) -> tuple[float, float, list[int]]:
    """Sample ``path`` with ``stretches``; return wall s, CPU s and the picked frames."""
    served = pyav_sampler.DECODE_STRETCHES
    pyav_sampler.DECODE_STRETCHES = stretches  # type: ignore[misc]
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        sampled = sample_frames(path, DEFAULT_NUM_FRAMES, max_side=DEFAULT_MAX_SIDE)
        return time.perf_counter() - wall, time.process_time() - cpu, sampled.frame_indices.tolist()
    finally:
        pyav_sampler.DECODE_STRETCHES = served  # type: ignore[misc]


def measure(paths: list[Path], runs: int) -> dict[str, Any]:
    """Interleaved runs of both modes per video; medians, and whether the picks agree."""
    served = pyav_sampler.DECODE_STRETCHES
    videos: dict[str, Any] = {}
    for path in paths:
        times: dict[int, list[tuple[float, float]]] = {1: [], served: []}
        picks: dict[int, list[int]] = {}
        _timed(path, served)  # warm the file cache and the codec
        for _ in range(runs):
            for mode in times:
                wall, cpu, picks[mode] = _timed(path, mode)
                times[mode].append((wall, cpu))
        row: dict[str, Any] = {
            str(mode): {
                "wall_s": statistics.median(t[0] for t in samples),
                "cpu_s": statistics.median(t[1] for t in samples),
            }
            for mode, samples in times.items()
        }
        row["same_frames"] = picks[1] == picks[served]
        row["wall_speedup"] = row["1"]["wall_s"] / row[str(served)]["wall_s"]
        row["cpu_ratio"] = row[str(served)]["cpu_s"] / row["1"]["cpu_s"]
        videos[path.name] = row
        logger.info("%s: %s", path.name, row)
    return {"served_stretches": served, "videos": videos}


def write_table(result: dict[str, Any], path: Path) -> None:
    """Write the Markdown table of ``result`` next to its JSON."""
    served = result["served_stretches"]
    lines = [
        "# Client decoding: one pass vs stretches decoded at once",
        "",
        "Written by `python -m fakescope.benchmarks.decode_stretches` from "
        f"`{path.with_suffix('.json').name}`; do not edit. Medians of {result['method']['runs']} "
        f"interleaved runs per mode, {result['method']['num_frames']} frames per video, long "
        f"side {result['method']['max_side']} px; load average at start "
        f"{result['machine']['load_average_at_start'][0]:.2f} on "
        f"{result['machine']['cores']} cores.",
        "",
        f"| video | one pass wall / CPU s | {served} stretches wall / CPU s | wall speed-up "
        "| CPU ratio | same frames |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["videos"].items():
        one, split = row["1"], row[str(served)]
        lines.append(
            f"| {name} | {one['wall_s']:.3f} / {one['cpu_s']:.3f} | "
            f"{split['wall_s']:.3f} / {split['cpu_s']:.3f} | {row['wall_speedup']:.2f}x | "
            f"{row['cpu_ratio']:.2f} | {'yes' if row['same_frames'] else 'NO'} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULT)
    parser.add_argument(
        "--bench-videos", type=Path, default=PROJECT_ROOT / ".fakescope" / "bench-videos"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    machine = machine_facts()
    paths = ensure_videos(args.bench_videos, BENCH_VIDEOS)
    result = measure(paths, args.runs)
    result["method"] = {
        "runs": args.runs,
        "num_frames": DEFAULT_NUM_FRAMES,
        "max_side": DEFAULT_MAX_SIDE,
    }
    result["machine"] = machine
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    write_table(result, args.output.with_suffix(".md"))
    logger.info("wrote %s and its table", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
