"""The client's sample taken two ways, one sampler setting changed: CPU and wall time per video.

What :mod:`~fakescope.benchmarks.decode_jumps` and :mod:`~fakescope.benchmarks.decode_opens`
share. For each video the client's sample (its default frame count and size, through the PyAV
fast path) is taken with the client's setting and with the other, interleaved run by run so a
busy neighbour slows both alike: one warm-up each, then the median of the runs of wall time and
of this process's CPU time (all threads). Both must give the same frames at the same indices, or
the run fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.benchmarks.arguments import default_videos, parse_run_arguments
from fakescope.benchmarks.decode_threads import client_sample, describe_method, sampling_method
from fakescope.benchmarks.result_files import write_result
from fakescope.client.analyze import DEFAULT_NUM_FRAMES
from fakescope.client.frames import even_frame_indices
from fakescope.client.pyav_sampler import StreamIndex, keyframe_picks, read_stream_index

logger = logging.getLogger(__name__)


def sampling_path(index: StreamIndex) -> str:
    """Which way the fast path samples the video of ``index``: on keyframes, or in one pass."""
    targets = even_frame_indices(index.total, DEFAULT_NUM_FRAMES)
    on_keyframes = len(targets) < index.total and keyframe_picks(index, targets) is not None
    return "keyframes" if on_keyframes else "one pass"


def compare(
    videos: list[Path], runs: int, modes: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Wall and CPU seconds per video in two ``modes``; raises if their frames differ.

    ``modes``: two names, the client's first, each with its keywords of
    :func:`~fakescope.client.pyav_sampler.sample_with_pyav`. Each row holds both modes'
    medians and ``cpu_vs_<other>`` / ``wall_vs_<other>``: the client's over the other's.
    """
    client, other = modes
    rows = []
    for video in videos:
        # the warm-up, and the frames both ways must agree on
        first = {mode: client_sample(video, **options) for mode, options in modes.items()}
        reference = first[other]
        if not (
            np.array_equal(first[client].frames, reference.frames)
            and np.array_equal(first[client].frame_indices, reference.frame_indices)
        ):
            raise RuntimeError(f"{video.name}: {client} and {other} gave other frames")
        wall: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(runs):
            for mode, options in modes.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                client_sample(video, **options)
                wall[mode].append(time.perf_counter() - start)
                cpu[mode].append(time.process_time() - start_cpu)
        index = read_stream_index(video)
        if index is None:
            raise RuntimeError(f"{video}: no video stream to index")
        row: dict[str, Any] = {
            "video": video.name,
            "size": list(reference.source_size),
            "frames": index.total,
            "keyframes": len(index.keyframes),
            "idr_keyframes": len(index.idr_keyframes),
            "path": sampling_path(index),
        }
        for mode in modes:
            row[mode] = {
                "wall_s": statistics.median(wall[mode]),
                "cpu_s": statistics.median(cpu[mode]),
            }
        row[f"cpu_vs_{other}"] = row[client]["cpu_s"] / row[other]["cpu_s"]
        row[f"wall_vs_{other}"] = row[client]["wall_s"] / row[other]["wall_s"]
        logger.info(
            "%s: CPU %.2fx, wall %.2fx",
            video.name,
            row[f"cpu_vs_{other}"],
            row[f"wall_vs_{other}"],
        )
        rows.append(row)
    return rows


def render_table(result: dict[str, Any], *, title: str, module: str, labels: dict[str, str]) -> str:
    """Render a :func:`compare` result file as a table.

    ``labels``: the two modes' names as the table shows them, the other's first (as
    :func:`compare` got them, reversed).
    """
    other, client = labels
    lines = [
        f"# {title}",
        "",
        f"Written by `python -m {module}`; do not edit. "
        f"{describe_method(result['method'], 'interleaved runs')} Both ways gave the same frames "
        f"at the same indices on every video.",
        "",
        f"| video | size | frames | keyframes (IDR) | path | {labels[other]} wall / CPU "
        f"| {labels[client]} wall / CPU | CPU, wall vs {labels[other]} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["videos"]:
        size = "x".join(str(v) for v in row["size"])
        cells = [f"{row[m]['wall_s']:.3f} / {row[m]['cpu_s']:.3f}" for m in (other, client)]
        lines.append(
            f"| {row['video']} | {size} | {row['frames']} | {row['keyframes']} "
            f"({row['idr_keyframes']}) | {row['path']} | {' | '.join(cells)} "
            f"| {row[f'cpu_vs_{other}']:.2f}x, {row[f'wall_vs_{other}']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def run_comparison(
    argv: list[str] | None,
    *,
    description: str,
    modes: dict[str, dict[str, Any]],
    result: Path,
    runs: int,
    render: Callable[[dict[str, Any]], str],
    extra_videos: Callable[[Path], Sequence[Path]] = lambda _folder: (),
) -> int:
    """Run a two-settings benchmark (its ``main``): parse ``argv``, :func:`compare`, write.

    ``modes`` as :func:`compare` takes them, ``result`` and ``runs`` the defaults of
    ``--output`` and ``--runs``, ``render`` the table of the result file; ``extra_videos``
    adds videos to :func:`~fakescope.benchmarks.arguments.default_videos`' from the
    ``--bench-videos`` folder.
    """
    parser = argparse.ArgumentParser(description=description)
    args = parse_run_arguments(parser, argv, runs=runs, result=result)
    loadavg = os.getloadavg()
    videos = default_videos(args.bench_videos, args.dfdc_sample)
    videos += extra_videos(args.bench_videos)
    measured = {
        "videos": compare(videos, args.runs, modes),
        "method": sampling_method(args.runs, loadavg),
    }
    write_result(args.output, measured, render)
    return 0
