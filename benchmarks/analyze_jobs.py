"""``fakescope analyze`` over several videos with ``--jobs`` 1, 2, 4, … against one server.

A user with a folder of videos runs ``fakescope analyze *.mp4``: with one job the client
decodes a video, waits for the server's answer, then decodes the next; with more, one video's
decode runs while the server works on another's frames (:mod:`fakescope.client.cli`), and the
user's videos wait for each other at the server. Here the CLI runs in this process, as a user
runs it (``--json``, gRPC, frames through shared memory), against the embedded Triton on the
same host, over each video set in turn: the benchmark videos, four copies of a 1 s clip (a
0.5 s budget, the least room to wait) and, where present, the DFDC samples (real video, whose
decode is most of the client's time). The job counts are interleaved round by round. Per set
and job count: the run's wall time (median over rounds) and videos per minute, each answered
video's ratio (its processing time over its duration, as the CLI prints it: the product limit
is 0.5) at the median and at worst, the videos answered past that limit, and the videos the
server refused (it refuses a video still waiting when its budget is spent; the CLI reports it
as a server error).

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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakescope.benchmarks.machine import describe_cores_and_load, machine_facts
from fakescope.benchmarks.result_files import code_version, fmt
from fakescope.benchmarks.run import REFUSAL_REASONS, run_server_benchmark
from fakescope.benchmarks.service_times import RUNTIME_DIR, running_server
from fakescope.client import cli
from fakescope.contract import PROCESSING_LIMIT_RATIO
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.embedded import ServerAddress

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "analyze_jobs.json"
#: The job counts compared, the first being the baseline of the speed-ups.
JOBS = (1, 2, 4)
#: Each video appears this many times in one run's list, so that the jobs reach a steady state.
COPIES = 2
#: Copies of the 1 s clip in its set.
CLIPS = 4


@dataclass(frozen=True)
class CliRun:
    """One ``fakescope analyze`` run: its wall time, the answered videos' ratios, the refusals."""

    wall_s: float
    ratios: list[float]
    refused: int


def analyze_once(url: str, videos: list[Path], jobs: int) -> CliRun:
    """Run ``fakescope analyze --jobs JOBS --json`` on ``videos`` and read what it printed.

    Raises:
        RuntimeError: an error other than the server's refusal, or verdicts out of order.

    """
    argv = [*map(str, videos), "--url", url, "--protocol", "grpc", "--json"]
    out, err = io.StringIO(), io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*argv, "--jobs", str(jobs)])
    wall = time.perf_counter() - began
    errors = err.getvalue().splitlines()
    refused = [e for e in errors if any(reason in e for reason in REFUSAL_REASONS.values())]
    if code not in (cli.EXIT_OK, cli.EXIT_SERVER_ERROR) or len(refused) != len(errors):
        raise RuntimeError(f"fakescope analyze exited {code}: {err.getvalue()}")
    verdicts = [json.loads(line) for line in out.getvalue().splitlines()]
    given = iter(map(str, videos))  # the verdicts: the videos given, less the refused, in order
    in_order = all(any(v["video"] == path for path in given) for v in verdicts)
    if not in_order or len(verdicts) + len(refused) != len(videos):
        raise RuntimeError("the verdicts are not those of the videos given, in their order")
    return CliRun(wall, [float(v["ratio"]) for v in verdicts], len(refused))


def _cell(runs: list[CliRun], count: int) -> dict[str, Any]:
    """Summarise one set's runs at one job count (``count`` videos per run)."""
    wall = statistics.median(r.wall_s for r in runs)
    ratios = [ratio for r in runs for ratio in r.ratios]
    return {
        "wall_s": wall,
        "videos_per_min": 60 * count / wall,
        "ratio_median": statistics.median(ratios) if ratios else None,
        "ratio_worst": max(ratios) if ratios else None,
        "late": sum(ratio > PROCESSING_LIMIT_RATIO for ratio in ratios),
        "refused": sum(r.refused for r in runs),
        "sent": count * len(runs),
        "wall_runs_s": [r.wall_s for r in runs],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time every set at every job count, interleaved; return the result document."""
    from fakescope.benchmarks.videos import SHORT_CLIP, ensure_videos  # needs scikit-image

    (clip,) = ensure_videos(args.videos_dir, (SHORT_CLIP,))
    sets = {"bench videos": ensure_videos(args.videos_dir), "1 s clips": [clip] * CLIPS}
    if args.dfdc_sample.is_dir():
        sets["DFDC samples"] = sorted(args.dfdc_sample.glob("*.mp4"))
    else:
        logger.warning("%s not found: measuring without real DFDC videos", args.dfdc_sample)
    facts = machine_facts()
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    runs: dict[str, dict[int, list[CliRun]]] = {name: {jobs: [] for jobs in JOBS} for name in sets}
    with running_server(args.repository, address, RUNTIME_DIR):
        for videos in sets.values():  # warm-up: first-run costs of every model, not counted
            analyze_once(address.grpc_url, videos, JOBS[0])
        for round_ in range(args.rounds):
            for name, videos in sets.items():
                for jobs in JOBS:
                    runs[name][jobs].append(analyze_once(address.grpc_url, videos * COPIES, jobs))
            logger.info("round %d/%d", round_ + 1, args.rounds)
    facts["load_average_at_end"] = list(os.getloadavg())
    return {
        "what": "fakescope analyze in this process, gRPC, frames through shared memory, the "
        f"embedded Triton on the same host; each set's videos {COPIES} times per run",
        "machine": facts,
        "code_version": code_version(),
        "rounds": args.rounds,
        "sets": {
            name: {
                "videos": [v.name for v in sets[name]],
                "jobs": {
                    str(jobs): _cell(done, len(sets[name]) * COPIES)
                    for jobs, done in runs[name].items()
                },
            }
            for name in sets
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
        f"an answered video's processing time over its duration (product limit "
        f"{PROCESSING_LIMIT_RATIO}), median and worst over every round; late: videos answered "
        "past the limit; refused: videos the server refused; both of those sent, over every "
        "round.",
        "",
        "| videos | jobs | wall s | videos/min | vs 1 job | ratio median / worst | late "
        "| refused |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["sets"].items():
        first = row["jobs"][str(JOBS[0])]
        for jobs, cell in row["jobs"].items():
            lines.append(
                f"| {name} ({len(row['videos'])}) | {jobs} | {cell['wall_s']:.2f} "
                f"| {cell['videos_per_min']:.0f} "
                f"| {cell['videos_per_min'] / first['videos_per_min']:.2f}x "
                f"| {fmt(cell['ratio_median'])} / {fmt(cell['ratio_worst'])} "
                f"| {cell['late']} of {cell['sent']} | {cell['refused']} of {cell['sent']} |"
            )
    lines.append("")
    for name, row in result["sets"].items():
        names = Counter(row["videos"])
        listed = ", ".join(f"{n} ×{k}" if k > 1 else n for n, k in names.items())
        lines.append(f"- {name}: {listed}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    return run_server_benchmark(
        argv,
        doc=__doc__,
        first_port=19100,
        result=RESULT,
        rounds=7,
        measure=measure,
        render=render_markdown,
        dfdc_sample=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
