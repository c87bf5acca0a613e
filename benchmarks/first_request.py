"""The first videos after a server starts, each sent by a new ``fakescope analyze`` process.

A server answers its first requests after a start (a restart, a scale-up, a rollback) before
its processes have touched the memory those requests need; and every ``fakescope analyze`` a
user runs is a new client process, whose first decode fills memory it has never touched. Both
fall on the 1 s 720p clip, whose budget (0.5 s) leaves the least room. Here each round, for
each setting in turn, starts the embedded Triton and runs ``fakescope analyze --json`` on that
clip :data:`VIDEOS_PER_START` times, each in a new process, as a user would. Settings:

* ``numpy huge pages``: :data:`fakescope.allocator.HUGE_PAGE_ENV` set to 1 for the server and
  the clients (NumPy's own default, as they ran before :func:`fakescope.allocator.set_up_memory`
  turned the advice off), and no warm-up for ``video_aggregator`` (none then);
* ``small pages``: the variable unset (small pages), still no warm-up for ``video_aggregator``;
* ``small pages + warm-up``: the repository as committed.

Per setting and video after the start (1st, 2nd, …): the ratio (processing time over the
video's duration, as the CLI prints it), decode and server call seconds, the client's and the
server's system CPU seconds (the kernel's share: where a huge page's fault waits); for the
first and the last video the seconds of each step of the ensemble (Triton's statistics: queue
included); and the seconds from start to ready.

Run: ``python -m fakescope.benchmarks.first_request --output
benchmarks/results/<host>/first_request.json`` (writes the JSON and its table, ``.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tritonclient.grpc as grpcclient

from fakescope import contract
from fakescope.allocator import HUGE_PAGE_ENV
from fakescope.benchmarks.machine import describe_cores_and_load, machine_facts
from fakescope.benchmarks.result_files import code_version, fmt
from fakescope.benchmarks.run import run_server_benchmark
from fakescope.benchmarks.service_times import (
    process_group_system_cpu_seconds,
    snapshot,
    stage_split,
)
from fakescope.contract import PROCESSING_LIMIT_RATIO
from fakescope.paths import PROJECT_ROOT
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "first_request.json"
RUNTIME_DIR = PROJECT_ROOT / ".fakescope" / "runtime-first-request"
#: Videos sent after each start, each by a new CLI process.
VIDEOS_PER_START = 3
#: The settings compared: whether NumPy advises huge pages, and whether video_aggregator warms up.
SETTINGS = {
    "numpy huge pages": {"huge_pages": True, "aggregator_warmup": False},
    "small pages": {"huge_pages": False, "aggregator_warmup": False},
    "small pages + warm-up": {"huge_pages": False, "aggregator_warmup": True},
}
#: The ensemble's steps whose first-request seconds are reported.
STEPS = (
    contract.ENSEMBLE_MODEL,
    contract.FACE_DETECTOR_MODEL,
    contract.FACE_SCORER_MODEL,
    contract.VIDEO_AGGREGATOR_MODEL,
)
_WARMUP = re.compile(r"(?s)\n(?:#[^\n]*\n)*model_warmup \[.*?\n\]\n")


def without_warmup(repository: Path, model: str, folder: Path) -> Path:
    """Copy ``repository`` to ``folder`` with ``model``'s warm-up (and its comment) removed.

    Raises:
        ValueError: ``model``'s configuration has no warm-up to remove.

    """
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(repository, folder)
    config = folder / model / "config.pbtxt"
    text, count = _WARMUP.subn("\n", config.read_text())
    if count != 1:
        raise ValueError(f"{config}: no model_warmup block to remove")
    config.write_text(text)
    return folder


@contextlib.contextmanager
def huge_page_advice(on: bool) -> Iterator[dict[str, str]]:
    """Set NumPy's huge-page advice for the servers and clients started in the block.

    :data:`HUGE_PAGE_ENV` is set (``on``) or removed in this process's environment, which a
    server started here inherits; yields that environment for the clients' processes.
    """
    saved = os.environ.get(HUGE_PAGE_ENV)
    if on:
        os.environ[HUGE_PAGE_ENV] = "1"
    else:
        os.environ.pop(HUGE_PAGE_ENV, None)
    try:
        yield dict(os.environ)
    finally:
        if saved is None:
            os.environ.pop(HUGE_PAGE_ENV, None)
        else:
            os.environ[HUGE_PAGE_ENV] = saved


def _children_system_cpu() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


def analyze_in_new_process(clip: Path, url: str, env: dict[str, str]) -> dict[str, Any]:
    """Run ``fakescope analyze --json`` on ``clip`` in a new process; return its verdict.

    Adds ``client_system_cpu_s``, the process's system CPU seconds.

    Raises:
        RuntimeError: the CLI failed or printed no verdict.

    """
    argv = [sys.executable, "-m", "fakescope.cli", "analyze", str(clip), "--url", url, "--json"]
    before = _children_system_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"fakescope analyze exited {done.returncode}: {done.stderr}")
    verdict: dict[str, Any] = json.loads(done.stdout)
    verdict["client_system_cpu_s"] = _children_system_cpu() - before
    return verdict


def one_start(
    repository: Path, address: ServerAddress, clip: Path, env: dict[str, str]
) -> dict[str, Any]:
    """Start a server, send :data:`VIDEOS_PER_START` videos from new processes, stop it."""
    server = EmbeddedTriton(repository, address, runtime_dir=RUNTIME_DIR / "runtime")
    began = time.perf_counter()
    server.start()
    ready_s = time.perf_counter() - began
    try:
        assert server.process is not None
        pgid = server.process.pid  # tritonserver leads its own group, its stubs in it
        stats = grpcclient.InferenceServerClient(address.grpc_url)
        videos = []
        for _ in range(VIDEOS_PER_START):
            before = snapshot(stats, pgid)
            system_before = process_group_system_cpu_seconds(pgid)
            verdict = analyze_in_new_process(clip, address.grpc_url, env)
            steps = stage_split(before, snapshot(stats, pgid))
            videos.append(
                {
                    "ratio": verdict["ratio"],
                    "decode_s": verdict["decode_seconds"],
                    "infer_s": verdict["infer_seconds"],
                    "client_system_cpu_s": verdict["client_system_cpu_s"],
                    "server_system_cpu_s": process_group_system_cpu_seconds(pgid) - system_before,
                    "steps_s": {step: steps[step] for step in STEPS},
                }
            )
    finally:
        server.stop()
    return {"ready_s": ready_s, "videos": videos}


def _summary(starts: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and worst values per video position over the starts of one setting."""
    keys = ("ratio", "decode_s", "infer_s", "client_system_cpu_s", "server_system_cpu_s")
    positions = []
    for position in range(VIDEOS_PER_START):
        runs = [start["videos"][position] for start in starts]
        cell: dict[str, Any] = {}
        for key in keys:
            values = [run[key] for run in runs]
            cell[key] = {"median": statistics.median(values), "worst": max(values)}
        cell["late"] = sum(run["ratio"] > PROCESSING_LIMIT_RATIO for run in runs)
        cell["steps_s"] = {
            step: statistics.median(run["steps_s"][step] for run in runs) for step in STEPS
        }
        positions.append(cell)
    return {
        "ready_s": statistics.median(start["ready_s"] for start in starts),
        "starts": len(starts),
        "videos": positions,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every setting's starts, interleaved round by round; return the result document."""
    from fakescope.benchmarks.videos import SHORT_CLIP, ensure_videos  # needs scikit-image

    (clip,) = ensure_videos(args.videos_dir, (SHORT_CLIP,))
    facts = machine_facts()
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    no_warmup = without_warmup(
        args.repository, contract.VIDEO_AGGREGATOR_MODEL, RUNTIME_DIR / "no-aggregator-warmup"
    )
    starts: dict[str, list[dict[str, Any]]] = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        for name, setting in SETTINGS.items():
            repository = args.repository if setting["aggregator_warmup"] else no_warmup
            with huge_page_advice(setting["huge_pages"]) as env:
                starts[name].append(one_start(repository, address, clip, env))
        logger.info("round %d/%d", round_ + 1, args.rounds)
    shutil.rmtree(no_warmup)
    facts["load_average_at_end"] = list(os.getloadavg())
    return {
        "what": f"{clip.name} ({SHORT_CLIP.seconds:g} s, {SHORT_CLIP.width}x{SHORT_CLIP.height}),"
        f" {VIDEOS_PER_START} videos after each start of the embedded Triton, each by a new "
        "fakescope analyze process (gRPC, frames through shared memory) on the same host",
        "machine": facts,
        "code_version": code_version(),
        "rounds": args.rounds,
        "settings": {name: _summary(done) for name, done in starts.items()},
        "starts": starts,
    }


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``first_request.json`` as two tables."""
    lines = [
        "# The first videos after a server start, each from a new client process",
        "",
        "Written by `python -m fakescope.benchmarks.first_request`; do not edit. "
        f"{result['what']}; {result['rounds']} starts per setting, the settings interleaved; "
        f"{describe_cores_and_load(result['machine'])}. Median / worst over the starts; ratio: "
        f"processing time over the video's duration (product limit {PROCESSING_LIMIT_RATIO}); "
        "late: videos answered past it; system CPU: the kernel's share of the client process "
        "and of tritonserver with its stubs during that video.",
        "",
        "| setting | video after start | ratio | decode s | server call s "
        "| client system CPU s | server system CPU s | late |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["settings"].items():
        for position, cell in enumerate(row["videos"], start=1):
            values = " | ".join(
                f"{fmt(cell[key]['median'])} / {fmt(cell[key]['worst'])}"
                for key in (
                    "ratio",
                    "decode_s",
                    "infer_s",
                    "client_system_cpu_s",
                    "server_system_cpu_s",
                )
            )
            lines.append(f"| {name} | {position} | {values} | {cell['late']} of {row['starts']} |")
    lines += [
        "",
        "Each step's seconds of the first and the last video after a start (median; Triton's "
        "statistics, queue included; the ensemble's spans the others), and start to ready:",
        "",
        "| setting | video after start | " + " | ".join(STEPS) + " | start to ready s |",
        "|---|---|" + "---|" * (len(STEPS) + 1),
    ]
    for name, row in result["settings"].items():
        for position in (1, len(row["videos"])):
            steps = row["videos"][position - 1]["steps_s"]
            cells = " | ".join(fmt(steps[step]) for step in STEPS)
            lines.append(f"| {name} | {position} | {cells} | {fmt(row['ready_s'], 2)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    return run_server_benchmark(
        argv,
        doc=__doc__,
        first_port=19200,
        result=RESULT,
        rounds=5,
        measure=measure,
        render=render_markdown,
    )


if __name__ == "__main__":
    raise SystemExit(main())
