"""``python -m fakescope.benchmarks.capacity``: run the capacity model, write its result files.

Writes ``docs/results/capacity/capacity.json`` (every figure, with the inputs it came from),
``docs/capacity.png`` and ``docs/capacity.md`` (rendered from the JSON alone). With
``--render-only`` it re-renders the page and the plot from the existing JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.benchmarks.capacity import bottleneck, experiments, report
from fakescope.benchmarks.capacity.assumptions import Assumptions
from fakescope.benchmarks.capacity.hpa import HpaBehavior
from fakescope.benchmarks.capacity.inputs import (
    BENCH_SUMMARY,
    SERVICE_TIMES,
    InputError,
    Measured,
    load_measurements,
)
from fakescope.benchmarks.result_files import write_result_files
from fakescope.paths import PROJECT_ROOT

logger = logging.getLogger(__name__)

RESULT_JSON = PROJECT_ROOT / "docs" / "results" / "capacity" / "capacity.json"
PAGE = PROJECT_ROOT / "docs" / "capacity.md"
PLOT = PROJECT_ROOT / "docs" / "capacity.png"
#: Uploads per day the issue asks about.
DAILY_VOLUMES = (10_000, 100_000, 1_000_000)
#: Constant arrival rates of the sweep, videos per second (log-spaced, past 1M/day's peak).
SWEEP_RATES = tuple(float(r) for r in np.geomspace(0.05, 40.0, 14))
#: HPA targets compared at the 100k/day peak.
TARGETS_COMPARED = (1.0, 2.0, 3.0, 4.0)
#: Simulated seconds: calibration per level, sweep per rate, static search per count; warm-up.
CALIBRATION_S, SWEEP_S, STATIC_S, WARMUP_S = 3600.0, 3600.0, 3600.0, 600.0


def _relative(path: Path) -> str:
    return str(path.resolve().relative_to(PROJECT_ROOT)) if path.is_absolute() else str(path)


def describe_inputs(
    measured: Measured, model: experiments.Model, protocol: str, sources: list[Path]
) -> dict[str, Any]:
    """Return the measured figures the model used, as they go into the result file."""
    kinds = measured.kinds(protocol)
    return {
        "files": [_relative(p) for p in sources],
        "protocol": protocol,
        "speedup": {"users": list(model.speedup.users), "factors": list(model.speedup.factors)},
        "kinds": [
            {"name": k.name, "duration_s": k.duration_s, "p50_s": k.p50_s, "p95_s": k.p95_s}
            for k in kinds
        ],
        "mean_work_s": model.mix.mean_work_s,
        "capacity_per_replica_per_s": model.capacity_per_replica(),
        "slots_per_replica": model.slots,
        "replica_start_s": measured.replica_start_s,
        "replica_start_runs": list(measured.replica_start_runs),
        "bench_run_seconds": measured.bench_run_seconds,
        "bench_load_start_end": list(measured.bench_load),
        "service_times_load_start_end": list(measured.service_load),
        "service_times_runs_per_video": measured.service_runs_per_video,
        "service_times_code_version": measured.service_code_version,
        "service_times_vs_bench_median": {
            k.name: measured.service_median[k.name]["processing_seconds"] / k.p50_s for k in kinds
        },
    }


def command_line(args: argparse.Namespace) -> str:
    """Return the command that writes these files: the module and its options not at default."""
    parts = [report.DEFAULT_COMMAND]
    for option, default in (
        ("--bench-summary", BENCH_SUMMARY),
        ("--service-times", SERVICE_TIMES),
        ("--output", RESULT_JSON),
        ("--page", PAGE),
        ("--plot", PLOT),
    ):
        value: Path = getattr(args, option[2:].replace("-", "_"))
        if value.resolve() != default.resolve():
            parts += [option, _relative(value)]
    return " ".join(parts)


def run_model(
    measured: Measured, assumptions: Assumptions, sources: list[Path], command: str
) -> dict[str, Any]:
    """Run calibration, sweep, daily volumes and bottleneck analysis; return the result doc."""
    a = assumptions
    seed = a.seed
    model = experiments.build_model(measured, a.protocol, a.slots_per_replica)
    behavior = HpaBehavior(target=a.hpa_target_jobs_per_replica, min_replicas=a.hpa_min_replicas)
    logger.info("calibration")
    calibration = experiments.calibrate(model, measured, CALIBRATION_S, WARMUP_S, seed)
    sweep = experiments.sweep(model, behavior, SWEEP_RATES, SWEEP_S, WARMUP_S, seed + 100)
    window = (-a.window_before_peak_s, a.window_after_peak_s)
    seeds = [seed + 200 + i for i in range(len(DAILY_VOLUMES))]
    volumes = [
        experiments.daily_volume(
            model, behavior, n, a.peak_factor, window, WARMUP_S, s, static_seconds=STATIC_S
        )
        for n, s in zip(DAILY_VOLUMES, seeds, strict=True)
    ]
    middle = volumes[1]
    targets = []
    for target in TARGETS_COMPARED:
        logger.info("target %.1f at %d/day", target, middle["uploads_per_day"])
        run = experiments.daily_volume(
            model,
            HpaBehavior(target=target, min_replicas=a.hpa_min_replicas),
            middle["uploads_per_day"],
            a.peak_factor,
            window,
            WARMUP_S,
            seeds[1],  # the same arrivals as the middle volume's own run
        )
        targets.append({"target": target, "hpa": run["hpa"]})
    levels = measured.levels(a.protocol)
    peaks = {str(v["uploads_per_day"]): v["peak_rate_per_s"] for v in volumes}
    return {
        "generated_by": command,
        "limit": experiments.LIMIT,
        "simulation": {
            "calibration_s": CALIBRATION_S,
            "sweep_s": SWEEP_S,
            "static_s": STATIC_S,
            "warmup_s": WARMUP_S,
        },
        "assumptions": a.rows(),
        "hpa": {
            "formula": "desired = ceil(current × metric / target), unchanged within tolerance",
            "metric": "(pending + running jobs) / replicas, read every sync period",
            **dataclasses.asdict(behavior),
        },
        "inputs": describe_inputs(measured, model, a.protocol, sources),
        "calibration": calibration,
        "sweep": sweep,
        "daily_volumes": volumes,
        "targets_at_middle_volume": targets,
        "bottleneck": {
            "stages": bottleneck.stage_split(measured),
            "cpu": bottleneck.cpu_ceiling(measured, levels[-1].videos_per_minute),
            "network": bottleneck.network(measured, a, peaks),
        },
        "gpu": {
            "measured": False,
            "why": "every figure is for the 2-core CPU box; the one GPU run "
            "(benchmarks/results/gpu-host/) served fewer videos within the limit than the "
            "CPUs of its own machine, so GPU replicas are not modelled",
        },
    }


def build_parser() -> argparse.ArgumentParser:
    """Return the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m fakescope.benchmarks.capacity",
        description="capacity model: replicas and p95 ratio for daily upload volumes",
    )
    parser.add_argument("--bench-summary", type=Path, default=BENCH_SUMMARY)
    parser.add_argument("--service-times", type=Path, default=SERVICE_TIMES)
    parser.add_argument("--output", type=Path, default=RESULT_JSON)
    parser.add_argument("--page", type=Path, default=PAGE)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument(
        "--render-only", action="store_true", help="re-render page and plot from --output"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the model (or only render); exit 2 when an input is missing or malformed."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.render_only:
            if not args.output.is_file():
                raise InputError(f"{args.output} is missing: run without --render-only first")
            try:
                doc = json.loads(args.output.read_text())
            except json.JSONDecodeError as exc:
                raise InputError(f"{args.output} is not a capacity result: {exc}") from None
        else:
            measured = load_measurements(args.bench_summary, args.service_times)
            sources = [args.bench_summary, args.service_times]
            doc = run_model(measured, Assumptions(), sources, command_line(args))
    except InputError as exc:
        print(f"capacity: {exc}", file=sys.stderr)  # noqa: T201 - a CLI's error line
        return 2
    # rendered and drawn before any file is written: a failure leaves the last run's together
    texts = {args.page: report.render_markdown(doc, args.page, args.output, args.plot)}
    if not args.render_only:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        texts[args.output] = json.dumps(doc, indent=1) + "\n"
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    write_result_files(texts, {args.plot: lambda path: report.plot(doc, path)})
    summary = {
        str(v["uploads_per_day"]): {
            "hpa_max_replicas": v["hpa"]["max_replicas"],
            "p95_ratio": round(v["hpa"]["p95"], 3),
            "static_replicas": v["static_at_peak"]["replicas"],
        }
        for v in doc["daily_volumes"]
    }
    print(json.dumps(summary, indent=1))  # noqa: T201 - a CLI prints its result
    return 0


if __name__ == "__main__":
    sys.exit(main())
