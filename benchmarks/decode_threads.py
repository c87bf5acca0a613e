"""The client's decoder threads: wall and CPU time of one video's sample, per PyAV thread type.

For each video, the client's sample (its default frame count and size, the PyAV fast path of
:mod:`fakescope.client.pyav_sampler`) is decoded with the decoder in one thread (``NONE``), in
slice threads (``SLICE``, what the client uses) and in frame threads (``FRAME``): one warm-up,
then the median of ``--runs`` runs of wall time and of this process's CPU time (all threads).
Wall time is what one user waits; CPU time is what a machine decoding many videos at once pays.
Every mode must give the very frames of the one-thread decode, or the run fails. Videos: the
committed samples, the benchmark videos and, where present, ``../shared/data/dfdc_sample``.

Run: ``python -m fakescope.benchmarks.decode_threads`` (writes
``benchmarks/results/decode_threads.json`` and its table, ``decode_threads.md``).
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

from fakescope.benchmarks.arguments import default_videos, parse_run_arguments
from fakescope.benchmarks.result_files import write_result
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.frames import SampledFrames, even_frame_indices
from fakescope.client.pyav_sampler import DECODE_THREAD_TYPE, sample_with_pyav
from fakescope.paths import PROJECT_ROOT

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "decode_threads.json"
MODES = ("NONE", "SLICE", "FRAME")


def client_sample(video: Path, **options: Any) -> SampledFrames:
    """Return the client's sample of ``video`` through the PyAV fast path, ``options`` changed.

    ``options``: keywords of :func:`~fakescope.client.pyav_sampler.sample_with_pyav` (the
    decoder settings a benchmark compares). Raises when the fast path gives up.
    """
    sampled = sample_with_pyav(
        video,
        lambda total: even_frame_indices(total, DEFAULT_NUM_FRAMES),
        DEFAULT_MAX_SIDE,
        **options,
    )
    if sampled is None:
        raise RuntimeError(f"{video}: the PyAV fast path gave up; nothing to measure")
    return sampled


def sampling_method(runs: int, loadavg: tuple[float, float, float], **extra: Any) -> dict[str, Any]:
    """Return the ``method`` of a client-decoding result file: runs, sample, machine.

    ``loadavg``: the load average read before measuring; ``extra``: the benchmark's own facts.
    """
    return {
        "runs": runs,
        "num_frames": DEFAULT_NUM_FRAMES,
        "max_side": DEFAULT_MAX_SIDE,
        **extra,
        "cores": os.cpu_count(),
        "loadavg_before": loadavg,
    }


def describe_method(method: dict[str, Any], runs: str = "runs") -> str:
    """Return the sentence a client-decoding table opens with, from its :func:`sampling_method`.

    ``runs``: how the runs were made (``"interleaved runs"``).
    """
    return (
        f"The client's sample ({method['num_frames']} frames, long side <= "
        f"{method['max_side']}) through the PyAV fast path; median of {method['runs']} {runs} "
        f"after a warm-up, seconds; load average before {method['loadavg_before'][0]:.2f} on "
        f"{method['cores']} cores."
    )


def _timed(video: Path, thread_type: str, runs: int) -> tuple[SampledFrames, float, float]:
    """Sample ``video`` once untimed, then ``runs`` times; the frames, median wall and CPU s."""
    sampled = client_sample(video, thread_type=thread_type)
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        client_sample(video, thread_type=thread_type)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return sampled, statistics.median(wall), statistics.median(cpu)


def measure(videos: list[Path], runs: int) -> list[dict[str, Any]]:
    """Wall and CPU seconds per video and thread type; raises if a mode changes the frames."""
    rows = []
    for video in videos:
        row: dict[str, Any] = {"video": video.name}
        reference: SampledFrames | None = None
        for mode in MODES:
            sampled, wall, cpu = _timed(video, mode, runs)
            if reference is None:
                reference = sampled
            elif not np.array_equal(sampled.frames, reference.frames):
                raise RuntimeError(f"{video.name}: {mode} threads decoded other frames than NONE")
            row[mode] = {"wall_s": wall, "cpu_s": cpu}
        assert reference is not None
        row["size"] = list(reference.source_size)
        for mode in MODES[1:]:
            row[mode]["wall_vs_none"] = row[mode]["wall_s"] / row["NONE"]["wall_s"]
            row[mode]["cpu_vs_none"] = row[mode]["cpu_s"] / row["NONE"]["cpu_s"]
        logger.info("%s: %s", video.name, {m: row[m] for m in MODES})
        rows.append(row)
    return rows


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``decode_threads.json`` as a table."""
    method = result["method"]
    lines = [
        "# Client decoding: one thread, slice threads, frame threads",
        "",
        f"Written by `python -m fakescope.benchmarks.decode_threads`; do not edit. "
        f"{describe_method(method)} Every mode gave the frames of the one-thread decode. "
        f"The client uses "
        f"`{method['client_thread_type']}`.",
        "",
        "| video | size | NONE wall / CPU | SLICE wall / CPU | FRAME wall / CPU "
        "| SLICE wall, CPU vs NONE | FRAME wall, CPU vs NONE |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["videos"]:
        cells = [f"{row[m]['wall_s']:.3f} / {row[m]['cpu_s']:.3f}" for m in MODES]
        ratios = [f"{row[m]['wall_vs_none']:.2f}x, {row[m]['cpu_vs_none']:.2f}x" for m in MODES[1:]]
        size = "x".join(str(v) for v in row["size"])
        lines.append(f"| {row['video']} | {size} | {' | '.join(cells + ratios)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args = parse_run_arguments(parser, argv, runs=7, result=RESULT)
    loadavg = os.getloadavg()
    rows = measure(default_videos(args.bench_videos, args.dfdc_sample), args.runs)
    result = {
        "videos": rows,
        "method": sampling_method(args.runs, loadavg, client_thread_type=DECODE_THREAD_TYPE),
    }
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
