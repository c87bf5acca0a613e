"""``fakescope bench``: Locust load levels against the embedded Triton, baselines, summary.json.

One run, one machine, same videos: the served pipeline at 1, 2, 4 and 8 concurrent users over
gRPC and HTTP (Locust, headless), then the same videos through the in-process ONNX Runtime
pipeline (what Triton costs) and the eager PyTorch baseline (what users had before). Results go to
``benchmarks/results/``: ``summary.json``, ``ratio_vs_users.png``, Locust's CSV and HTML, and the
raw per-request records. The run exits non-zero when p95(processing/duration) breaks the limit at
any level up to 4 users, when a request failed, or when a level had to be stopped (the videos
then in flight have no record).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fakescope import contract
from fakescope.arguments import (
    comma_separated_choices,
    frame_count,
    port,
    positive_int,
    positive_ints,
    positive_number,
)
from fakescope.benchmarks.arguments import (
    DFDC_SAMPLE,
    add_shared_memory_argument,
    check_json_output,
    describe_transport,
)
from fakescope.benchmarks.host_speed import WHAT as HOST_PROBE_WHAT
from fakescope.benchmarks.host_speed import HostProbe, read_cpu_ticks, steal_share
from fakescope.benchmarks.inprocess import LikeForLikeBaseline, OrtPipeline, SeedPipeline
from fakescope.benchmarks.level_checks import why_incomplete
from fakescope.benchmarks.machine import describe_cpu, describe_gpus, machine_facts
from fakescope.benchmarks.process_usage import (
    FAULTS_TO_PRICE,
    USAGE_KEYS,
    fault_price_us,
    measured_usage,
)
from fakescope.benchmarks.result_files import (
    code_version,
    fmt,
    write_result,
    write_result_files,
)
from fakescope.benchmarks.targets import check_targets, render_targets
from fakescope.benchmarks.turns import PairLeads
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES, analyze
from fakescope.client.frames import even_frame_indices
from fakescope.client.triton import DEFAULT_RETRIES, DetectorClient
from fakescope.client.video import sample_frames
from fakescope.paths import BENCH_VIDEOS_DIR, MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.serving.detector_nets import IN_PROCESS, PLACEMENTS
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress
from fakescope.serving.repository_check import check_repository

logger = logging.getLogger(__name__)

ROOT = PROJECT_ROOT
RESULTS = ROOT / "benchmarks" / "results"
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
USER_CLASSES = {"grpc": "GrpcVideoUser", "http": "HttpVideoUser"}
#: The protocols a load level can run, in the order the bench runs them by default.
PROTOCOLS = tuple(USER_CLASSES)
#: The product's hard limit: a video is processed in at most half its duration.
PRODUCT_LIMIT = contract.PROCESSING_LIMIT_RATIO
#: Levels that must meet the limit; 8 users is measured and reported.
CHECKED_MAX_USERS = 4
#: Seconds Locust gives a level's users to finish their videos after its run time
#: (``--stop-timeout``): every accepted video is answered, no result is lost.
STOP_TIMEOUT_S = 300
#: Seconds past run time + stop timeout after which a level is stopped with SIGTERM, on which
#: Locust still writes the records. Twice an HTTP user hung in ``on_stop`` (its client's
#: ``close()`` waited on a pooled connection never handed back) after every answer had
#: arrived, and Locust's own stop timeout did not end it.
STOP_GRACE_S = 30
#: The signal on which a Locust level writes every thread's Python stack to its stderr (the
#: locustfile registers it), sent before a level that outlived its limit is stopped: the one
#: record of where it hung.
STACKS_SIGNAL = signal.SIGUSR1
#: Seconds a level is given to write its stacks before SIGTERM.
STACKS_WRITE_S = 1.0


def _stats(ratios: list[float]) -> dict[str, float | None]:
    # the count says how far to trust a p95: from a dozen values it is about the largest one
    if not ratios:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    return {
        "count": len(ratios),
        "p50": float(np.percentile(ratios, 50)),
        "p95": float(np.percentile(ratios, 95)),
        "max": float(max(ratios)),
    }


def locust_env(
    videos: Sequence[Path],
    address: ServerAddress,
    *,
    frames: int,
    limit: float,
    shared_memory: bool = True,
    overload: bool = False,
) -> dict[str, str]:
    """Return the environment that configures the users of :mod:`~.benchmarks.locustfile`.

    ``overload``: no client retries (every refusal is seen) and each video decoded once
    before the run (see the locustfile's docstring).
    """
    return dict(
        os.environ,
        FAKESCOPE_BENCH_VIDEOS=os.pathsep.join(str(v) for v in videos),
        FAKESCOPE_BENCH_URL_GRPC=address.grpc_url,
        FAKESCOPE_BENCH_URL_HTTP=address.http_url,
        FAKESCOPE_BENCH_FRAMES=str(frames),
        FAKESCOPE_BENCH_LIMIT=str(limit),
        FAKESCOPE_BENCH_SHARED_MEMORY="on" if shared_memory else "off",
        FAKESCOPE_BENCH_RETRIES="0" if overload else str(DEFAULT_RETRIES),
        FAKESCOPE_BENCH_PREDECODED="1" if overload else "0",
        FAKESCOPE_BENCH_STACKS_SIGNAL=str(int(STACKS_SIGNAL)),
    )


@dataclass(frozen=True)
class BoundedRun:
    """How a command run by :func:`run_bounded` ended."""

    #: It outlived its limit and was stopped.
    stopped: bool
    #: Its exit status (negative: the signal that ended it).
    exit_code: int


@dataclass(frozen=True)
class LevelRun:
    """One Locust level: its per-request records, and how its process ended."""

    records: list[dict[str, Any]]
    #: The level outlived its limit and was stopped: the videos then in flight have no record.
    stopped: bool
    #: Locust's exit code (:data:`~.benchmarks.level_checks.LOCUST_EXIT_CODES_SAID_BY_RECORDS`).
    exit_code: int


def run_locust_level(
    protocol: str,
    users: int,
    env: dict[str, str],
    run_time_s: int,
    out: Path,
    *,
    stop_timeout_s: int = STOP_TIMEOUT_S,
) -> LevelRun:
    """Run one Locust level headless; return its per-request records and how it ended.

    ``stop_timeout_s``: how long the users may take to finish their videos after the run
    time (Locust's ``--stop-timeout``); a level still running :data:`STOP_GRACE_S` later is
    stopped (:func:`run_bounded`), and still writes its records.

    Raises:
        RuntimeError: Locust wrote no records.

    """
    prefix = out / f"locust_{protocol}_{users}u"
    records = prefix.with_suffix(".jsonl")
    records.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{run_time_s}s",
        "--stop-timeout",
        str(stop_timeout_s),
        "--csv",
        str(prefix),
        "--html",
        str(prefix) + ".html",
        "--only-summary",
        "--loglevel",
        "WARNING",
        USER_CLASSES[protocol],
    ]
    level_env = dict(env, FAKESCOPE_BENCH_RECORDS=str(records))
    logger.info("locust: %s, %d users, %d s", protocol, users, run_time_s)
    limit_s = run_time_s + stop_timeout_s + STOP_GRACE_S
    ended = run_bounded(command, level_env, limit_s, stacks_signal=STACKS_SIGNAL)
    if not records.is_file():
        raise RuntimeError(f"locust wrote no records for {protocol} at {users} users")
    return LevelRun(
        [json.loads(line) for line in records.read_text().splitlines() if line],
        ended.stopped,
        ended.exit_code,
    )


def run_level(
    protocol: str,
    users: int,
    env: dict[str, str],
    run_time_s: int,
    out: Path,
    *,
    stop_timeout_s: int = STOP_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """Run one Locust level headless (:func:`run_locust_level`); return its records.

    Raises:
        RuntimeError: Locust wrote no records, or they may lack videos it sent
            (:func:`~.benchmarks.level_checks.why_incomplete`): a caller that keeps the records
            alone could not tell.

    """
    level = run_locust_level(protocol, users, env, run_time_s, out, stop_timeout_s=stop_timeout_s)
    why = why_incomplete(level.stopped, level.exit_code)
    if why is not None:
        raise RuntimeError(f"locust level {protocol} at {users} users: {why}")
    return level.records


def run_bounded(
    command: list[str],
    env: dict[str, str],
    limit_s: float,
    *,
    stacks_signal: signal.Signals | None = None,
) -> BoundedRun:
    """Run ``command``; stop it with SIGTERM if it outlives ``limit_s`` (then SIGKILL).

    ``stacks_signal``: sent first, for a command that then writes where its threads are (a
    command that has no handler for it would die of it). Returns whether it had to be
    stopped (logged as a warning) and its exit status.
    """
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        return BoundedRun(stopped=False, exit_code=process.wait(timeout=limit_s))
    except subprocess.TimeoutExpired:
        logger.warning("%s still running after %.0f s: stopping it (SIGTERM)", command[:3], limit_s)
        if stacks_signal is not None:
            process.send_signal(stacks_signal)
            time.sleep(STACKS_WRITE_S)
        process.terminate()
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM for %d s: killing it", command[:3], STOP_GRACE_S)
            process.kill()
            process.wait()
        return BoundedRun(stopped=True, exit_code=process.returncode)


def cpu_per_video(
    load_generator_seconds: float, server_seconds: float, videos: int
) -> dict[str, float | int | None]:
    """CPU seconds of one level per video the server analysed, by side of the machine.

    ``load_generator_seconds``: the Locust process (decoding, sampling, the client calls);
    ``server_seconds``: tritonserver and its python stubs. ``videos`` counts every video the
    level analysed, untimed warm-ups included, since they cost the same.
    """
    if videos <= 0:
        return {"videos": videos, "load_generator": None, "server": None, "total": None}
    return {
        "videos": videos,
        "load_generator": load_generator_seconds / videos,
        "server": server_seconds / videos,
        "total": (load_generator_seconds + server_seconds) / videos,
    }


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's ended children (each Locust run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: Why Triton refused a video, by the words of its message: the admission queue was full (at
#: once), or the video waited past its queue's timeout or its own deadline.
REFUSAL_REASONS = {
    "queue_full": "Exceeds maximum queue size",
    "queue_timeout": "Request timeout expired",
}


def summarize_level(records: list[dict[str, Any]], run_time_s: int) -> dict[str, Any]:
    """Ratios, throughput, rejections and failures of one level.

    ``late``: accepted videos answered past the product's limit; ``rejected_by_reason``: the
    refusals per :data:`REFUSAL_REASONS` key (``other`` for any other message);
    ``late_per_video`` and ``rejected_per_video``: those counts per video file (every file the
    level sent, zeros included), as a deadline class is a set of files.
    """
    ok = [r for r in records if r.get("ratio") is not None]
    refusals = [r for r in records if r["status"] == "rejected"]
    # How fast the server said no: from sending the frames to the refusal (decode excluded).
    rejected = [r["infer_seconds"] * 1000 for r in refusals]
    reasons = dict.fromkeys([*REFUSAL_REASONS, "other"], 0)
    for refusal in refusals:
        found = [k for k, words in REFUSAL_REASONS.items() if words in refusal.get("error", "")]
        reasons[found[0] if found else "other"] += 1
    videos = sorted({r["video"] for r in records})
    return {
        "requests": len(records),
        "accepted": len(ok),
        "late": sum(r["ratio"] > PRODUCT_LIMIT for r in ok),
        "late_per_video": {
            video: sum(r["ratio"] > PRODUCT_LIMIT for r in ok if r["video"] == video)
            for video in videos
        },
        "rejected_per_video": {
            video: sum(r["video"] == video for r in refusals) for video in videos
        },
        "rejected": len(rejected),
        "rejected_by_reason": reasons,
        "rejection_ms": _stats(rejected),
        "failures": len(records) - len(ok) - len(rejected),
        "ratio": _stats([r["ratio"] for r in ok]),
        "videos_per_minute": len(ok) * 60.0 / run_time_s,
        "p50_processing_seconds": statistics.median([r["processing_seconds"] for r in ok])
        if ok
        else None,
        "ratio_per_video": {
            video: _stats([r["ratio"] for r in ok if r["video"] == video])
            for video in sorted({r["video"] for r in ok})
        },
    }


#: Timed runs per video of the served path, the in-process path and the client's sample, after
#: one warm-up run of each video; medians reported. One video's runs spread by more than the
#: Triton target's margin on a shared machine (benchmarks/README.md, "Triton against
#: in-process"), and these paths take about a second, so they are timed this often.
TIMED_RUNS = 15
#: Timed runs per video of the two baselines, in rounds spread evenly over the others: the seed
#: pipeline takes over a minute per round, and the speed-ups over the baselines are far from
#: their targets' margins.
BASELINE_TIMED_RUNS = 5

#: A timed path: analyze one video, return ``(seconds, fake_probability)`` (``None``: no face).
TimedPath = Callable[[Path], tuple[float, float | None]]


def spread_rounds(runs: int, rounds: int) -> set[int]:
    """Return the ``runs`` rounds of ``rounds`` (0-based) a path takes part in, evenly spread."""
    if not 0 < runs <= rounds:
        raise ValueError(f"runs must be in 1..{rounds}, got {runs}")
    return {i * rounds // runs for i in range(runs)}


@dataclass(frozen=True)
class TimedRuns:
    """The timed runs of :func:`time_paths`, path -> video -> one entry per run.

    Attributes:
        seconds: each run's wall seconds.
        usage: what this process used in each run (:func:`measured_usage`); the served path's
            server runs in tritonserver, so its entries hold the client's share only.

    """

    seconds: dict[str, dict[str, list[float]]]
    usage: dict[str, dict[str, list[dict[str, float]]]]


def time_paths(
    paths: dict[str, TimedPath],
    videos: list[Path],
    runs: dict[str, int],
    pair: tuple[str, str] | None = None,
) -> TimedRuns:
    """Warm every path up on every video, then time ``runs[path]`` runs of each, interleaved.

    Each round runs every video through every path that takes part in it, in turn, so load from
    a neighbour falls on all paths alike instead of on whichever ran at that moment. A path with
    fewer runs than the most takes part in rounds spread evenly over them
    (:func:`spread_rounds`). The two paths of ``pair``, compared with each other, take turns in
    running first (:class:`PairLeads`).
    """
    rounds = max(runs.values())
    taking_part = {name: spread_rounds(runs[name], rounds) for name in paths}
    previous: str | None = None
    for video in videos:
        for name, run in paths.items():
            run(video)
            previous = name
    leads = PairLeads(pair) if pair else None
    timed = TimedRuns({name: {} for name in paths}, {name: {} for name in paths})
    for round_ in range(rounds):
        for video in videos:
            names = [name for name in paths if round_ in taking_part[name]]
            for name in leads.order(names, video.name, previous) if leads else names:
                with measured_usage() as usage:
                    seconds = paths[name](video)[0]
                timed.seconds[name].setdefault(video.name, []).append(seconds)
                timed.usage[name].setdefault(video.name, []).append(usage)
                previous = name
    return timed


def _path_summary(
    times: dict[str, list[float]],
    usage: dict[str, list[dict[str, float]]],
    durations: dict[str, float],
    what: str,
) -> dict[str, Any]:
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    return {
        "what": what,
        "timed_runs": min(len(runs) for runs in times.values()),
        "seconds": medians,
        "runs": times,
        "ratio": _stats([medians[n] / durations[n] for n in medians]),
        "process_usage": {
            name: {key: statistics.median(run[key] for run in runs) for key in USAGE_KEYS}
            for name, runs in usage.items()
        },
    }


def served_path(address: ServerAddress, frames: int) -> tuple[TimedPath, DetectorClient]:
    """Return the served path as one user calls it, and its client (close it when done).

    The client's decode + sample + infer over gRPC with frames through shared memory, timed
    like the in-process paths.
    """
    client = DetectorClient(address.grpc_url, "grpc", shared_memory=True)

    def run(video: Path) -> tuple[float, float]:
        start = time.perf_counter()
        verdict = analyze(video, client=client, num_frames=frames, max_side=DEFAULT_MAX_SIDE)
        return time.perf_counter() - start, verdict.fake_probability

    return run, client


#: The timed path of the service as one user calls it (:func:`served_path`), and the same steps
#: in one process (:class:`~fakescope.benchmarks.inprocess.OrtPipeline`): Triton's overhead is
#: the one over the other.
SERVED = "served"
ONNXRUNTIME_INPROCESS = "onnxruntime_inprocess"
#: The timed path that only decodes and samples (see :func:`_timed_sample`).
CLIENT_SAMPLE = "client_sample"
#: The timed paths of the two baselines (:mod:`~fakescope.benchmarks.inprocess`).
LIKE_FOR_LIKE = "like_for_like_baseline"
SEED_PIPELINE = "seed_pipeline"
BASELINES = (LIKE_FOR_LIKE, SEED_PIPELINE)


def _timed_sample(video: Path, frames: int) -> tuple[float, None]:
    """Time the client's decode and sample of ``video`` alone (no verdict: ``None``)."""
    start = time.perf_counter()
    sample_frames(video, frames, max_side=DEFAULT_MAX_SIDE)
    return time.perf_counter() - start, None


def run_paths(
    videos: list[Path],
    frames: int,
    repository: Path,
    served: TimedPath,
    baseline: bool,
    runs: int = TIMED_RUNS,
    baseline_runs: int = BASELINE_TIMED_RUNS,
) -> dict[str, Any]:
    """Time the served path and the in-process paths on every video, interleaved.

    Warm-up, then the median of ``runs`` runs, ``baseline_runs`` of the baselines
    (:func:`time_paths`). The ONNX Runtime path and the like-for-like baseline sample the same
    frame indices as the served path (the same sampler, ``frames`` per video); the seed pipeline
    gets our sampler's indices for its own 32 frames.
    """
    probes = {v.name: sample_frames(v, 1) for v in videos}
    durations = {name: p.duration_seconds for name, p in probes.items()}
    ort_pipeline = OrtPipeline(repository)
    paths: dict[str, TimedPath] = {
        SERVED: served,
        ONNXRUNTIME_INPROCESS: lambda v: ort_pipeline.run(v, frames, DEFAULT_MAX_SIDE),
        CLIENT_SAMPLE: lambda v: _timed_sample(v, frames),
    }
    what = {
        SERVED: "the served path, one gRPC user: the client's decode and sample, the "
        "ensemble on the embedded Triton (frames through shared memory)",
        ONNXRUNTIME_INPROCESS: "the served steps with ONNX Runtime in one process, same frames",
        CLIENT_SAMPLE: "the client's decode and sample alone, the first step of the served "
        "path, the in-process path and the like-for-like baseline alike",
    }
    if baseline:
        like = LikeForLikeBaseline(repository)
        seed = SeedPipeline(repository)
        indices = {
            name: np.asarray(even_frame_indices(p.total_frames, SeedPipeline.FRAMES))
            for name, p in probes.items()
        }
        paths[LIKE_FOR_LIKE] = lambda v: like.run(v, frames, DEFAULT_MAX_SIDE)
        paths[SEED_PIPELINE] = lambda v: seed.run(v, indices[v.name])
        what[LIKE_FOR_LIKE] = (
            "same frames, facenet-pytorch MTCNN at the served parameters, same crops, the same "
            "classifier architecture in eager PyTorch"
        )
        what[SEED_PIPELINE] = (
            "the seed project as written: OpenCV read-all, facenet-pytorch MTCNN() defaults on "
            f"{SeedPipeline.FRAMES} full-resolution frames, efficientnet-pytorch B0 per face"
        )
    counts = {name: baseline_runs if name in BASELINES else runs for name in paths}
    # in rounds with the baselines, the first path of a video's turn runs straight after a
    # PyTorch baseline and was slower for it: the served path, always first until the pair took
    # turns (its per-run times in benchmarks/results/xeon-host/seventeenth/summary.json)
    pair = (SERVED, ONNXRUNTIME_INPROCESS)
    timed = time_paths(paths, videos, counts, pair)
    result: dict[str, Any] = {"durations": durations, "pair_leads_in_turn": list(pair)}
    for name, per_video in timed.seconds.items():
        result[name] = _path_summary(per_video, timed.usage[name], durations, what[name])
    return result


def speedup_summary(base: dict[str, list[float]], ours: dict[str, list[float]]) -> dict[str, Any]:
    """Median speed-up over videos, its range over videos, and per video (median of runs)."""
    per_video = {
        v: statistics.median(base[v]) / statistics.median(ours[v]) for v in ours if v in base
    }
    values = list(per_video.values())
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "per_video": per_video,
    }


def compare_with_inprocess(summary: dict[str, Any]) -> None:
    """Add Triton's overhead over in-process ORT and the speed-ups over both baselines.

    All from the interleaved runs of :func:`run_paths` (``summary["inprocess"]``).
    """
    inprocess = summary["inprocess"]
    ours = inprocess[SERVED]["runs"]
    ort = inprocess[ONNXRUNTIME_INPROCESS]["runs"]
    overhead = {
        v: statistics.median(ours[v]) / statistics.median(ort[v]) - 1 for v in ours if v in ort
    }
    summary["triton_overhead_per_video"] = overhead
    summary["triton_overhead"] = statistics.median(overhead.values())
    for key in BASELINES:
        if key in inprocess:
            summary[f"speedup_vs_{key}"] = speedup_summary(inprocess[key]["runs"], ours)
    # Every path but the seed's decodes with the client's sampler first, so no speed-up over
    # the like-for-like baseline can pass its time over the decode alone, whatever the server
    # does after it.
    if LIKE_FOR_LIKE in inprocess and CLIENT_SAMPLE in inprocess:
        summary["speedup_ceiling_vs_like_for_like_baseline"] = speedup_summary(
            inprocess[LIKE_FOR_LIKE]["runs"], inprocess[CLIENT_SAMPLE]["runs"]
        )


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share * 100:.1f}"


def served_instances(client: Any) -> dict[str, list[str]]:
    """Return each ready model's instance groups as the server resolved them (``1 KIND_GPU``).

    Read from the running server (``KIND_AUTO`` comes back as the kind it became), so a result
    says where each model ran rather than what its ``config.pbtxt`` asked for.
    """
    index = client.get_model_repository_index(as_json=True).get("models", [])
    instances = {}
    for model in sorted({m["name"] for m in index if m.get("state") == "READY"}):
        config = client.get_model_config(model, as_json=True)["config"]
        groups = config.get("instance_group", [])
        instances[model] = [
            f"{group.get('count', 1)} {group.get('kind', 'KIND_AUTO')}" for group in groups
        ] or [config.get("platform", "no instances")]  # an ensemble has none of its own
    return instances


def _measured_code(summary: dict[str, Any]) -> str:
    """`` (code `<commit>`)``, or nothing for a summary written before runs recorded it."""
    version = summary.get("code_version")
    return f" (code `{version}`)" if version else ""


def render_markdown(summary: dict[str, Any]) -> str:
    """Render ``summary.json`` as the tables the READMEs point to (``summary.md``)."""
    levels = summary["levels"]
    protocols = list(levels)
    users = sorted({int(u) for p in protocols for u in levels[p]})
    head = " | ".join(f"{p} p50 / p95 ratio" for p in protocols)
    # overload runs decode once before the run and skip the warm-up (see the locustfile)
    warm_up = (
        "" if summary["mode"] == "overload" else " (each user's first video is an untimed warm-up)"
    )
    lines = [
        f"# Bench summary ({summary['mode']}, {summary['frames']} frames per video)",
        "",
        f"Written by `fakescope bench` from `summary.json`{_measured_code(summary)}; "
        f"limit {summary['limit']}, "
        f"{summary['run_time_seconds_per_level']} s per level{warm_up}; "
        f"{describe_transport(summary['shared_memory'] == 'on')}; "
        f"videos: {', '.join(summary.get('videos', [])) or 'not recorded'}; load average at start "
        f"{summary['machine']['load_average_at_start'][0]:.2f} on {summary['machine']['cores']} "
        f"cores ({describe_cpu(summary['machine'])}; {describe_gpus(summary['machine'])}).",
        "",
        f"| users | {head} | videos/min ({protocols[0]}) | accepted / refused / failed |",
        "|---|" + "---|" * len(protocols) + "---|---|",
    ]
    for u in users:
        cells = []
        for p in protocols:
            ratio = levels[p].get(str(u), {}).get("ratio", {})
            cells.append(f"{fmt(ratio.get('p50'))} / {fmt(ratio.get('p95'))}")
        first = levels[protocols[0]].get(str(u), {})
        counts = f"{first.get('accepted')} / {first.get('rejected')} / {first.get('failures')}"
        lines.append(
            f"| {u} | {' | '.join(cells)} | {fmt(first.get('videos_per_minute'), 0)} | {counts} |"
        )
    lines += [
        "",
        "| protocol | users | requests | accepted | refused | failed | videos/min "
        "| p95 ratio (accepted) | refusal ms p50 / p95 "
        "| CPU s per video: load generator / server | host probe ms | steal % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in protocols:
        for u in users:
            level = levels[p].get(str(u))
            if level is None:
                continue
            refusal = level.get("rejection_ms", {})
            cpu = level.get("cpu_seconds_per_video", {})
            lines.append(
                f"| {p} | {u} | {level.get('requests')} | {level.get('accepted')} "
                f"| {level.get('rejected')} | {level.get('failures')} "
                f"| {fmt(level.get('videos_per_minute'), 0)} "
                f"| {fmt(level.get('ratio', {}).get('p95'))} "
                f"| {fmt(refusal.get('p50'), 0)} / {fmt(refusal.get('p95'), 0)} "
                f"| {fmt(cpu.get('load_generator'), 2)} / {fmt(cpu.get('server'), 2)} "
                f"| {fmt(level.get('host_probe', {}).get('median_ms'), 1)} "
                f"| {_percent(level.get('steal_share'))} |"
            )
    lines.append("")
    if "host_probe_what" in summary:
        before = summary.get("host_probe_before_inprocess", {}).get("median_ms")
        lines.append(
            f"- Host probe, timed before each level with nothing else of the benchmark "
            f"running: {summary['host_probe_what']}; before the in-process comparison: "
            f"{fmt(before, 1)} ms. Steal %: the hypervisor's share of the level's CPU time."
        )
    lines += render_comparison(summary)
    if "served_instances" in summary:
        kinds = "; ".join(
            f"{model} {', '.join(groups)}" for model, groups in summary["served_instances"].items()
        )
        lines.append(
            f"- MTCNN nets: {summary.get('detector_nets', IN_PROCESS)}; instances as served: "
            f"{kinds}"
        )
    incomplete = [
        f"{p} {u} users ({why})"
        for p in protocols
        for u, level in levels[p].items()
        if (why := why_incomplete(level.get("stopped", False), level.get("locust_exit_code")))
    ]
    if incomplete:
        lines.append(f"- Levels whose records may lack videos: {'; '.join(incomplete)}")
    lines.append(f"- Passed: {summary.get('passed')}")
    lines.extend(f"  - {failure}" for failure in summary.get("failures", []))
    lines += render_process_usage(summary.get("inprocess", {}))
    targets = render_targets(summary.get("targets", []))
    if targets:
        lines += ["", *targets]
    return "\n".join(lines) + "\n"


def render_comparison(summary: dict[str, Any]) -> list[str]:
    """Render the in-process comparison: Triton's overhead, the speed-ups and each timed path."""
    lines: list[str] = []
    if "triton_overhead" in summary:
        lines.append(
            f"- Triton over the same steps in-process (ONNX Runtime): "
            f"{summary['triton_overhead'] * 100:+.1f} % (median per video)"
        )
    for key, name in (
        ("speedup_vs_like_for_like_baseline", "Speed-up over the like-for-like baseline"),
        (
            "speedup_ceiling_vs_like_for_like_baseline",
            "The most any served path could gain over the like-for-like baseline with the same "
            "client decoding (the baseline's time over the client's decode and sample alone)",
        ),
        ("speedup_vs_seed_pipeline", "Speed-up over the seed pipeline"),
    ):
        if key in summary:
            s = summary[key]
            per_video = ", ".join(f"{v} {x:.1f}×" for v, x in sorted(s["per_video"].items()))
            lines.append(
                f"- {name}: {s['median']:.1f}× median over videos "
                f"({s['min']:.1f}–{s['max']:.1f}×; {per_video})"
            )
    inprocess = summary.get("inprocess", {})
    for key, value in inprocess.items():
        if isinstance(value, dict) and "ratio" in value:
            lines.append(
                f"- `{key}` ratio p50 {fmt(value['ratio']['p50'])}: {value.get('what', key)} "
                # summaries before per-path counts kept one count for every path
                f"(median of {value.get('timed_runs', inprocess.get('timed_runs', '?'))} runs "
                "per video)"
            )
    if "pair_leads_in_turn" in inprocess:
        first, second = inprocess["pair_leads_in_turn"]
        lines.append(
            f"- Each round takes every video through the paths in turn; `{first}` and `{second}` "
            "run first in turn, so each as often runs straight after the same path (a baseline "
            "in the baselines' rounds)"
        )
    return lines


def render_process_usage(inprocess: dict[str, Any]) -> list[str]:
    """Render what this process used per timed path and video (none for older summaries)."""
    paths = {
        key: value["process_usage"]
        for key, value in inprocess.items()
        if isinstance(value, dict) and "process_usage" in value
    }
    if not paths:
        return []
    lines = [
        "",
        "What the benchmark's process used in each timed run, median per video (the served "
        "path's server work is tritonserver's and not counted here; a page fault is the kernel "
        "mapping a page the process touched for the first time; the price of one, the run's "
        f"system CPU over its faults, is given where it took at least {FAULTS_TO_PRICE} of "
        "them):",
        "",
        "| path | video | wall s | user CPU s | system CPU s | page faults (thousands) "
        "| system µs per fault |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, per_video in paths.items():
        for video, usage in per_video.items():
            lines.append(
                f"| {key} | {video} | {fmt(inprocess[key]['seconds'].get(video), 2)} "
                f"| {fmt(usage['user_cpu_s'], 2)} | {fmt(usage['system_cpu_s'], 2)} "
                f"| {fmt(usage['page_faults'] / 1000, 1)} | {fmt(fault_price_us(usage), 1)} |"
            )
    return lines


def plot(summary: dict[str, Any], limit: float, path: Path) -> None:
    """Plot p95 and p50 ratio vs users per protocol, with the limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for protocol, levels in summary["levels"].items():
        users = sorted(int(u) for u in levels)
        ax.plot(
            users, [levels[str(u)]["ratio"]["p95"] for u in users], "o-", label=f"{protocol} p95"
        )
        ax.plot(
            users, [levels[str(u)]["ratio"]["p50"] for u in users], "x--", label=f"{protocol} p50"
        )
    paths = (
        (CLIENT_SAMPLE, (0, (1, 4))),
        (ONNXRUNTIME_INPROCESS, ":"),
        (LIKE_FOR_LIKE, "-."),
        (SEED_PIPELINE, "--"),
    )
    for key, style in paths:
        if key in summary["inprocess"]:
            ax.axhline(
                summary["inprocess"][key]["ratio"]["p50"],
                ls=style,
                c="gray",
                label=f"{key} p50 (1 user)",
            )
    ax.axhline(limit, c="red", label=f"product limit {limit}")
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("processing time / video duration")
    ax.set_xscale("log", base=2)
    ax.set_title(
        f"FakeScope on {summary['machine']['cores']} cores ({summary['frames']} frames/video)"
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_failures(
    levels: dict[str, dict[str, dict[str, Any]]], limit: float, *, overload: bool
) -> list[str]:
    """Return why a bench run fails, one line per broken level (none: it passed).

    A failed request or a level whose records may lack videos
    (:func:`~.benchmarks.level_checks.why_incomplete`) at any level; up to
    :data:`CHECKED_MAX_USERS` users, a p95 ratio above ``limit`` and (``overload`` aside) a
    refusal.
    """
    failures = []
    for protocol, by_users in levels.items():
        for users, level in by_users.items():
            p95 = level["ratio"]["p95"]
            if level["failures"]:
                failures.append(f"{protocol} {users} users: {level['failures']} failed requests")
            incomplete = why_incomplete(level.get("stopped", False), level.get("locust_exit_code"))
            if incomplete is not None:
                failures.append(f"{protocol} {users} users: {incomplete}")
            # above the checked levels the server is past its capacity on purpose: refusing
            # some videos (after the client's retries) is the admission control working
            if level["rejected"] and not overload and int(users) <= CHECKED_MAX_USERS:
                failures.append(f"{protocol} {users} users: {level['rejected']} rejected")
            if int(users) <= CHECKED_MAX_USERS and (p95 is None or p95 > limit):
                failures.append(f"{protocol} {users} users: p95 ratio {p95} > limit {limit}")
    return failures


def run_bench(args: argparse.Namespace) -> int:
    """Run the whole benchmark; return the exit code (1 if the limit is broken)."""
    # Here, not at the top: service_times imports this module.
    import tritonclient.grpc as grpcclient

    from fakescope.benchmarks.service_times import admission_split, process_group_cpu_seconds

    # The bench videos need scikit-image (the bench/dev extras); `fakescope --help` must load
    # on a thin-client install, which imports this module for the bench parser.
    from fakescope.benchmarks.videos import ensure_videos

    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    check_repository(args.repository)
    facts = machine_facts()
    if facts["load_average_at_start"][0] > 0.5 * (facts["cores"] or 1):
        logger.warning(
            "machine is busy (load %.2f): timings will be pessimistic",
            facts["load_average_at_start"][0],
        )
    videos = args.videos or ensure_videos(args.videos_dir)
    probe = HostProbe()
    address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
    server = EmbeddedTriton(args.repository, address, detector_nets=args.detector_nets)
    started = time.perf_counter()
    server.start()
    start_seconds = time.perf_counter() - started
    assert server.process is not None  # started; tritonserver leads its own process group
    pgid = server.process.pid
    summary: dict[str, Any] = {
        "mode": "overload" if args.overload else "load",
        "code_version": code_version(),
        "machine": facts,
        "host_probe_what": HOST_PROBE_WHAT,
        "frames": args.frames,
        "shared_memory": args.shared_memory,
        "limit": args.limit,
        "run_time_seconds_per_level": args.run_time,
        "server_start_seconds": start_seconds,
        "detector_nets": args.detector_nets,
        "videos": [v.name for v in videos],
        "levels": {},
    }
    env = locust_env(
        videos,
        address,
        frames=args.frames,
        limit=args.limit,
        shared_memory=args.shared_memory == "on",
        overload=args.overload,
    )
    summary["inprocess"] = {}
    stats_client = grpcclient.InferenceServerClient(address.grpc_url)
    try:
        summary["served_instances"] = served_instances(stats_client)
        for video in videos:  # warm-up: first-run costs of every model, not counted
            analyze(video, url=address.grpc_url, protocol="grpc", num_frames=args.frames)
        for protocol in args.protocols:
            for users in args.users:
                host_probe = probe.read()
                ticks = read_cpu_ticks()
                client_cpu, server_cpu = _children_cpu_seconds(), process_group_cpu_seconds(pgid)
                stats = stats_client.get_inference_statistics(as_json=True)
                level_run = run_locust_level(protocol, users, env, args.run_time, out)
                level = summarize_level(level_run.records, args.run_time)
                # a level cut short leaves the videos in flight without a record: it fails
                # (bench_failures), whatever its records say
                level["stopped"] = level_run.stopped
                level["locust_exit_code"] = level_run.exit_code
                level["server_seconds_per_video"] = admission_split(
                    stats, stats_client.get_inference_statistics(as_json=True)
                )
                level["host_probe"] = host_probe
                level["steal_share"] = steal_share(ticks, read_cpu_ticks())
                # each user's untimed warm-up video is work too (overload runs have none)
                warm_ups = 0 if args.overload else users
                level["cpu_seconds_per_video"] = cpu_per_video(
                    _children_cpu_seconds() - client_cpu,
                    process_group_cpu_seconds(pgid) - server_cpu,
                    level["accepted"] + warm_ups,
                )
                summary["levels"].setdefault(protocol, {})[str(users)] = level
        # the server is still up: the served path is timed beside the rest
        if not args.overload and not args.skip_inprocess:
            summary["host_probe_before_inprocess"] = probe.read()
            served, client = served_path(address, args.frames)
            with client:
                summary["inprocess"] = run_paths(
                    videos, args.frames, args.repository, served, not args.skip_baseline
                )
            compare_with_inprocess(summary)
    finally:
        stats_client.close()
        server.stop()
    summary["machine"]["load_average_at_end"] = list(os.getloadavg())
    failures = bench_failures(summary["levels"], args.limit, overload=args.overload)
    summary["passed"] = not failures
    summary["failures"] = failures
    summary["targets"] = check_targets(summary)
    write_result_files(
        {
            out / "summary.md": render_markdown(summary),
            out / "summary.json": json.dumps(summary, indent=2) + "\n",
        },
        {out / "ratio_vs_users.png": lambda path: plot(summary, args.limit, path)},
    )
    shown = (
        "levels",
        "triton_overhead",
        "speedup_vs_like_for_like_baseline",
        "speedup_ceiling_vs_like_for_like_baseline",
        "speedup_vs_seed_pipeline",
        "passed",
        "targets",
    )
    print(json.dumps({k: summary.get(k) for k in shown}, indent=1))
    for failure in failures:
        print(f"fakescope bench: LIMIT BROKEN: {failure}", file=sys.stderr)
    return 0 if not failures else 1


def add_server_arguments(parser: argparse.ArgumentParser, *, first_port: int) -> None:
    """Add the options of a benchmark that serves the repository on its own embedded Triton.

    ``--repository``, ``--output`` (result folder), ``--videos-dir`` and the three ports from
    ``first_port``: each benchmark has its own ports, so two can run side by side.
    """
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--videos-dir", type=Path, default=BENCH_VIDEOS_DIR)
    parser.add_argument("--http-port", type=port, default=first_port)
    parser.add_argument("--grpc-port", type=port, default=first_port + 1)
    parser.add_argument("--metrics-port", type=port, default=first_port + 2)


def run_server_benchmark(
    argv: list[str] | None,
    *,
    doc: str,
    first_port: int,
    result: Path,
    rounds: int,
    measure: Callable[[argparse.Namespace], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    dfdc_sample: bool = False,
) -> int:
    """Be the ``main`` of a benchmark that serves the repository on its own embedded Triton.

    Parses :func:`add_server_arguments` (``first_port``, ``--output`` defaulting to ``result``,
    a ``.json`` file), ``--rounds`` (default ``rounds``) and, with ``dfdc_sample``,
    ``--dfdc-sample``; then writes ``measure(args)`` and its table ``render`` made
    (:func:`~fakescope.benchmarks.result_files.write_result`). ``doc``: the module's
    docstring, whose first paragraph is the command's description.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_server_arguments(parser, first_port=first_port)
    parser.set_defaults(output=result)
    parser.add_argument("--rounds", type=positive_int, default=rounds)
    if dfdc_sample:
        parser.add_argument("--dfdc-sample", type=Path, default=DFDC_SAMPLE)
    args = parser.parse_args(argv)
    check_json_output(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write_result(args.output, measure(args), render)
    return 0


def _video_file(text: str) -> Path:
    """Return ``text`` as a path for ``--videos``; refuse one that names no file."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such video file: {text}")
    return path


def add_videos_argument(parser: argparse.ArgumentParser, note: str) -> None:
    """Add ``--videos FILE...``: given files, e.g. real ones, instead of the bench videos."""
    parser.add_argument(
        "--videos",
        type=_video_file,
        nargs="+",
        help="video files to run instead of the synthetic bench videos (--videos-dir), e.g. "
        f"real ones ({note})",
    )


def add_bench_parser(subparsers: Any) -> None:
    """Register ``fakescope bench``."""
    parser = subparsers.add_parser("bench", help="load test (Locust) + baselines -> summary.json")
    add_server_arguments(parser, first_port=18000)
    parser.add_argument("--users", type=positive_ints, default=[1, 2, 4, 8])
    parser.add_argument(
        "--protocols", type=comma_separated_choices(PROTOCOLS), default=list(PROTOCOLS)
    )
    parser.add_argument("--run-time", type=positive_int, default=30, help="seconds per load level")
    parser.add_argument("--frames", type=frame_count, default=DEFAULT_NUM_FRAMES)
    parser.add_argument(
        "--limit", type=positive_number, default=PRODUCT_LIMIT, help="p95 ratio limit"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="no PyTorch baseline")
    parser.add_argument(
        "--skip-inprocess",
        action="store_true",
        help="no in-process comparison or baselines after the load levels (a GPU host: they "
        "would time this host's CPU against its GPU)",
    )
    parser.add_argument(
        "--detector-nets",
        choices=PLACEMENTS,
        default=IN_PROCESS,
        help="where face_detector runs the MTCNN nets: in its own process on the CPU, or "
        "through BLS on the served mtcnn_* models (on a GPU where the server has one)",
    )
    parser.add_argument(
        "--overload",
        action="store_true",
        help="overload table: no client retries, rejections are reported, not failures; "
        "use with --users well above capacity and --output elsewhere",
    )
    add_videos_argument(
        parser, "issue #14's targets, which summary.md checks, are set on the bench videos"
    )
    add_shared_memory_argument(parser)
    parser.set_defaults(func=run_bench)
