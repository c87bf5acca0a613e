"""``fakescope analyze`` over several videos with ``--jobs`` 1, 2, 4, … against one server.

A user with a folder of videos runs ``fakescope analyze *.mp4``: with one job the client
decodes a video, waits for the server's answer, then decodes the next; with more, one video's
decode runs while the server works on another's frames (:mod:`fakescope.client.cli`). Here the
CLI runs in this process, as a user runs it (``--json``, gRPC, frames through shared memory),
against the embedded Triton on the same host, over each video set in turn: the benchmark
videos and, where present, the DFDC samples (real video, whose decode is most of the client's
time). The job counts are interleaved round by round. Per set and job count: the run's wall
time (median over rounds) and videos per minute, and each video's ratio (its processing time
over its duration, as the CLI prints it: the product limit is 0.5) at the median and at worst.

Client and server share the host, as in ``make bench``: on 2 cores the jobs compete with the
server for them, which a client on its own machine would not.

Run: ``python -m fakescope.benchmarks.analyze_jobs --output
benchmarks/results/<host>/analyze_jobs.json`` (writes the JSON and its table, ``.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

from fakescope.benchmarks.arguments import DFDC_SAMPLE, check_json_output
from fakescope.benchmarks.machine import describe_cores_and_load, machine_facts
from fakescope.benchmarks.result_files import write_result
from fakescope.benchmarks.run import add_server_arguments
from fakescope.benchmarks.service_times import RUNTIME_DIR, code_version, running_server
from fakescope.client import cli
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.embedded import ServerAddress

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "analyze_jobs.json"
#: The job counts compared, the first being the baseline of the speed-ups.
JOBS = (1, 2, 4)
#: Each video appears this many times in one run's list, so that the jobs reach a steady state.
COPIES = 2


def analyze_once(url: str, videos: list[Path], jobs: int) -> tuple[float, list[float]]:
    """Run ``fakescope analyze --jobs JOBS --json`` on ``videos``; wall seconds, ratios."""
    argv = [*map(str, videos), "--url", url, "--protocol", "grpc", "--json"]
    out = io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli.main([*argv, "--jobs", str(jobs)])
    wall = time.perf_counter() - began
    if code != cli.EXIT_OK:
        raise RuntimeError(f"fakescope analyze exited {code}")
    verdicts = [json.loads(line) for line in out.getvalue().splitlines()]
    if [v["video"] for v in verdicts] != [str(v) for v in videos]:
        raise RuntimeError("the verdicts are not in the order the videos were given")
    return wall, [float(v["ratio"]) for v in verdicts]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time every set at every job count, interleaved; return the result document."""
    from fakescope.benchmarks.videos import ensure_videos  # needs scikit-image

    sets = {"bench videos": ensure_videos(args.videos_dir)}
    if args.dfdc_sample.is_dir():
        sets["DFDC samples"] = sorted(args.dfdc_sample.glob("*.mp4"))
    else:
        logger.warning("%s not found: measuring without real DFDC videos", args.dfdc_sample)
    facts = machine_facts()
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    runs: dict[str, dict[int, list[tuple[float, list[float]]]]] = {
        name: {jobs: [] for jobs in JOBS} for name in sets
    }
    with running_server(args.repository, address, RUNTIME_DIR):
        for videos in sets.values():  # warm-up: first-run costs of every model, not counted
            analyze_once(address.grpc_url, videos, max(JOBS))
        for round_ in range(args.rounds):
            for name, videos in sets.items():
                for jobs in JOBS:
                    runs[name][jobs].append(analyze_once(address.grpc_url, videos * COPIES, jobs))
            logger.info("round %d/%d", round_ + 1, args.rounds)
    facts["load_average_at_end"] = list(os.getloadavg())
    return {
        "what": "fakescope analyze in this process, gRPC, frames through shared memory, the "
        f"embedded Triton on the same host; each video {COPIES} times per run",
        "machine": facts,
        "code_version": code_version(),
        "rounds": args.rounds,
        "sets": {
            name: {
                "videos": [v.name for v in sets[name]],
                "jobs": {
                    str(jobs): {
                        "wall_s": statistics.median(wall for wall, _ in done),
                        "videos_per_min": 60
                        * len(sets[name])
                        * COPIES
                        / statistics.median(wall for wall, _ in done),
                        "ratio_median": statistics.median(r for _, ratios in done for r in ratios),
                        "ratio_worst": max(r for _, ratios in done for r in ratios),
                        "wall_runs_s": [wall for wall, _ in done],
                    }
                    for jobs, done in by_jobs.items()
                },
            }
            for name, by_jobs in runs.items()
        },
    }


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``analyze_jobs.json`` as a table."""
    lines = [
        "# fakescope analyze on several videos: --jobs",
        "",
        "Written by `python -m fakescope.benchmarks.analyze_jobs`; do not edit. "
        f"{result['what']}; {result['rounds']} rounds, the job counts interleaved; "
        f"{describe_cores_and_load(result['machine'])}. Wall time: median over rounds; ratio: "
        "a video's processing time over its duration (product limit 0.5), median and worst "
        "over every video of every round.",
        "",
        "| videos | jobs | wall s | videos/min | vs 1 job | ratio median / worst |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["sets"].items():
        first = row["jobs"][str(JOBS[0])]
        for jobs, cell in row["jobs"].items():
            lines.append(
                f"| {name} ({len(row['videos'])}) | {jobs} | {cell['wall_s']:.2f} "
                f"| {cell['videos_per_min']:.0f} "
                f"| {cell['videos_per_min'] / first['videos_per_min']:.2f}x "
                f"| {cell['ratio_median']:.3f} / {cell['ratio_worst']:.3f} |"
            )
    lines += [
        "",
        *(f"- {name}: {', '.join(row['videos'])}" for name, row in result["sets"].items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser, first_port=19100)
    parser.set_defaults(output=RESULT)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dfdc-sample", type=Path, default=DFDC_SAMPLE)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    check_json_output(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write_result(args.output, measure(args), render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
