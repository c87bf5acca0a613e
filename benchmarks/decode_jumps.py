"""The client's decoding pass with and without jumps to IDR keyframes: CPU and wall time.

The PyAV fast path (:mod:`fakescope.client.pyav_sampler`) decodes the reference frames of a
video in one pass when not every segment of the sample holds a keyframe; it now jumps over the
packets no pick needs, up to the next IDR keyframe. For each video the client's sample (its
default frame count and size) is taken with jumps (the client) and without, interleaved run by
run so a busy neighbour slows both alike: one warm-up each, then the median of ``--runs`` runs of
wall time and of this process's CPU time (all threads). Both must give the same frames at the
same indices, or the run fails. Videos: the committed samples, the benchmark videos, a
phone-like video (:data:`~fakescope.benchmarks.videos.PHONE_LIKE_VIDEO`: a keyframe every
second, no B-frames) and, where present, ``../shared/data/dfdc_sample``. Videos sampled on
keyframes alone (every segment holds one) do not take the pass and time the same both ways.

Run: ``python -m fakescope.benchmarks.decode_jumps`` (writes
``benchmarks/results/decode_jumps.json`` and its table, ``decode_jumps.md``).
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

from fakescope.benchmarks.arguments import add_run_arguments, check_runs, default_videos
from fakescope.benchmarks.decode_threads import (
    client_sample,
    describe_method,
    sampling_method,
)
from fakescope.benchmarks.result_files import write_result
from fakescope.benchmarks.videos import PHONE_LIKE_VIDEO, ensure_videos
from fakescope.client.analyze import DEFAULT_NUM_FRAMES
from fakescope.client.frames import even_frame_indices
from fakescope.client.pyav_sampler import keyframe_picks, read_stream_index
from fakescope.paths import PROJECT_ROOT

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "decode_jumps.json"
#: The compared settings of ``sample_with_pyav(jump_to_idr=...)``; the first is the client's.
MODES = {"jumps": True, "no_jumps": False}


def _path(video: Path) -> str:
    """Which way the fast path samples ``video``: on keyframes, or in one pass."""
    index = read_stream_index(video)
    if index is None:
        raise RuntimeError(f"{video}: no video stream to index")
    targets = even_frame_indices(index.total, DEFAULT_NUM_FRAMES)
    on_keyframes = len(targets) < index.total and keyframe_picks(index, targets) is not None
    return "keyframes" if on_keyframes else "one pass"


def measure(videos: list[Path], runs: int) -> list[dict[str, Any]]:
    """Wall and CPU seconds per video with and without jumps; raises if the frames differ."""
    rows = []
    for video in videos:
        # the warm-up, and the frames both ways must agree on
        first = {mode: client_sample(video, jump_to_idr=jump) for mode, jump in MODES.items()}
        reference = first["no_jumps"]
        if not (
            np.array_equal(first["jumps"].frames, reference.frames)
            and np.array_equal(first["jumps"].frame_indices, reference.frame_indices)
        ):
            raise RuntimeError(f"{video.name}: the pass with jumps gave other frames")
        wall: dict[str, list[float]] = {mode: [] for mode in MODES}
        cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(runs):
            for mode, jump in MODES.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                client_sample(video, jump_to_idr=jump)
                wall[mode].append(time.perf_counter() - start)
                cpu[mode].append(time.process_time() - start_cpu)
        index = read_stream_index(video)
        assert index is not None  # sampled above
        row: dict[str, Any] = {
            "video": video.name,
            "size": list(reference.source_size),
            "frames": index.total,
            "keyframes": len(index.keyframes),
            "idr_keyframes": len(index.idr_keyframes),
            "path": _path(video),
        }
        for mode in MODES:
            row[mode] = {
                "wall_s": statistics.median(wall[mode]),
                "cpu_s": statistics.median(cpu[mode]),
            }
        row["cpu_vs_no_jumps"] = row["jumps"]["cpu_s"] / row["no_jumps"]["cpu_s"]
        row["wall_vs_no_jumps"] = row["jumps"]["wall_s"] / row["no_jumps"]["wall_s"]
        logger.info(
            "%s: CPU %.2fx, wall %.2fx", video.name, row["cpu_vs_no_jumps"], row["wall_vs_no_jumps"]
        )
        rows.append(row)
    return rows


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``decode_jumps.json`` as a table."""
    method = result["method"]
    lines = [
        "# Client decoding: the reference-frame pass with and without jumps to IDR keyframes",
        "",
        f"Written by `python -m fakescope.benchmarks.decode_jumps`; do not edit. "
        f"{describe_method(method, 'interleaved runs')} Both ways gave the same frames at the "
        f"same indices on every video.",
        "",
        "| video | size | frames | keyframes (IDR) | path | no jumps wall / CPU "
        "| jumps wall / CPU | CPU, wall vs no jumps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["videos"]:
        size = "x".join(str(v) for v in row["size"])
        cells = [f"{row[m]['wall_s']:.3f} / {row[m]['cpu_s']:.3f}" for m in ("no_jumps", "jumps")]
        lines.append(
            f"| {row['video']} | {size} | {row['frames']} | {row['keyframes']} "
            f"({row['idr_keyframes']}) | {row['path']} | {' | '.join(cells)} "
            f"| {row['cpu_vs_no_jumps']:.2f}x, {row['wall_vs_no_jumps']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, runs=7, result=RESULT)
    args = parser.parse_args(argv)
    check_runs(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    loadavg = os.getloadavg()
    videos = default_videos(args.bench_videos, args.dfdc_sample)
    videos += ensure_videos(args.bench_videos, (PHONE_LIKE_VIDEO,))
    result = {
        "videos": measure(videos, args.runs),
        "method": sampling_method(args.runs, loadavg),
    }
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
