"""``make bench``'s fair comparison on real videos: the labelled DFDC samples, not synthetic ones.

``make bench`` times the served path against the same steps in-process and against both
baselines on its synthetic bench videos (a drawn face, short groups of pictures: an IDR keyframe
every two seconds). Real uploads differ, and so do their costs: the DFDC samples beside the
checkout (``../shared/data/dfdc_sample``; 640x480 for 25 s, 1080p for 10 s, upright and portrait)
hold one or two keyframes per 150 frames, so the client decodes most of a video's reference
frames, and the seed pipeline reads up to 2 GB of frames a video. This runs the same
comparison on them (:func:`~fakescope.benchmarks.run.run_paths`: a warm-up, interleaved rounds,
the same frame indices for every path; :func:`~fakescope.benchmarks.run.compare_with_inprocess`)
against one embedded Triton, one gRPC user with frames through shared memory as in ``make
bench``, and writes the speed-ups, Triton's overhead and what each path used.

Run: ``python -m fakescope.benchmarks.real_video_speedups --output
benchmarks/results/<host>/real_video_speedups.json`` (writes the JSON and its table, ``.md``).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from fakescope.benchmarks.arguments import DFDC_SAMPLE, check_json_output
from fakescope.benchmarks.machine import describe_cores_and_load, machine_facts
from fakescope.benchmarks.result_files import write_result
from fakescope.benchmarks.run import (
    BASELINE_TIMED_RUNS,
    BASELINES,
    CLIENT_SAMPLE,
    TIMED_RUNS,
    add_server_arguments,
    compare_with_inprocess,
    render_comparison,
    render_process_usage,
    run_paths,
    served_path,
)
from fakescope.benchmarks.service_times import code_version, running_server
from fakescope.client.analyze import DEFAULT_NUM_FRAMES
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.embedded import ServerAddress

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "real_video_speedups.json"
RUNTIME_DIR = PROJECT_ROOT / ".fakescope" / "runtime-real-video-speedups"
#: The paths of the per-video table, in its column order.
COLUMNS = ("served", "onnxruntime_inprocess", CLIENT_SAMPLE, *BASELINES)


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``real_video_speedups.json`` as a table of seconds, then the comparison's lines."""
    inprocess = result["inprocess"]
    columns = [c for c in COLUMNS if c in inprocess]
    lines = [
        "# The fair comparison on real videos (DFDC samples)",
        "",
        "Written by `python -m fakescope.benchmarks.real_video_speedups`; do not edit. "
        f"{result['what']}; {result['frames']} frames per video; "
        f"{describe_cores_and_load(result['machine'])}; code `{result['code_version']}`. "
        "Median seconds per video.",
        "",
        f"| video | duration s | {' | '.join(columns)} |",
        "|---|---|" + "---|" * len(columns),
    ]
    for video in result["videos"]:
        cells = [f"{inprocess[c]['seconds'][video]:.2f}" for c in columns]
        duration = inprocess["durations"][video]
        lines.append(f"| {video} | {duration:.1f} | {' | '.join(cells)} |")
    lines += ["", *render_comparison(result), *render_process_usage(inprocess)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Time every path on the DFDC samples and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser, first_port=18900, bench_videos=False)
    parser.set_defaults(output=RESULT)
    parser.add_argument("--dfdc-sample", type=Path, default=DFDC_SAMPLE, help="the videos' folder")
    parser.add_argument("--frames", type=int, default=DEFAULT_NUM_FRAMES)
    parser.add_argument("--runs", type=int, default=TIMED_RUNS)
    parser.add_argument("--baseline-runs", type=int, default=BASELINE_TIMED_RUNS)
    args = parser.parse_args(argv)
    check_json_output(parser, args)
    if not 1 <= args.baseline_runs <= args.runs:
        parser.error("need 1 <= --baseline-runs <= --runs")
    videos = sorted(args.dfdc_sample.glob("*.mp4")) if args.dfdc_sample.is_dir() else []
    if not videos:
        parser.error(f"no .mp4 video in {args.dfdc_sample} (--dfdc-sample)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    facts = machine_facts()
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    with running_server(args.repository, address, RUNTIME_DIR):
        served, client = served_path(address, args.frames)
        with client:
            inprocess = run_paths(
                videos, args.frames, args.repository, served, True, args.runs, args.baseline_runs
            )
    facts["load_average_at_end"] = list(os.getloadavg())
    result: dict[str, Any] = {
        "what": "The served path (one gRPC user, frames through shared memory, embedded Triton), "
        "the same steps in-process, the client's sample alone and both baselines on the DFDC "
        f"samples of `{args.dfdc_sample.name}`, as make bench times them on its bench videos",
        "machine": facts,
        "code_version": code_version(),
        "frames": args.frames,
        "videos": [v.name for v in videos],
        "inprocess": inprocess,
    }
    compare_with_inprocess(result)
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
