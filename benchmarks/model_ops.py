"""Where the served ONNX models spend their time, by operator type (ONNX Runtime's profiler).

The three MTCNN nets and the served face classifier of this checkout's repository and, with
``--before COMMIT``, of that commit's ``model_repository/``, each given the inputs the served
detector gives it on one video (``face_720p_10s.mp4`` by default: every batch the in-process
detector hands each net, and the faces it finds, cut as the server cuts them, for the
classifier). Both repositories get the same inputs, recorded with this checkout's nets. Each
model runs on all of its batches ``--runs`` times after one untimed pass, with ONNX Runtime's
profiler on and one intra-op thread, so that the kernel times add up to the work: per model,
the milliseconds per video of its runs and of their kernels, and each operator type's share of
the kernels' time. What ONNX Runtime runs is its optimised graph, so the types include the
layout changes it inserts (``ReorderInput``, ``ReorderOutput``) and the fused kernels it picks
(``QLinearConv``).

Run: ``python -m fakescope.benchmarks.model_ops [--before COMMIT]`` (writes
``benchmarks/results/model_ops.json`` and its table, ``model_ops.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from fakescope import contract
from fakescope.benchmarks.arguments import add_run_arguments, check_runs
from fakescope.benchmarks.detector_int8 import NET_INPUTS, RecordingNets
from fakescope.benchmarks.inprocess import OrtPipeline
from fakescope.benchmarks.machine import describe_cpu, machine_facts
from fakescope.benchmarks.repository_ab import extract_repository, resolve_commit
from fakescope.benchmarks.result_files import code_version, write_result
from fakescope.benchmarks.videos import FACE_720P_10S, ensure_videos
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.video import sample_frames
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.serving.model_config import served_version_dir

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "model_ops.json"
THIS = "this"
#: The models profiled, in the order of the table, and each one's input tensor.
MODEL_INPUTS = {**NET_INPUTS, contract.CLASSIFIER_MODEL: contract.CLASSIFIER_INPUT}
#: Operator types named in the table per model; the rest are summed as "other".
TOP_TYPES = 6
_KERNEL_SUFFIX = "_kernel_time"
_RUN_EVENT = "model_run"


def recorded_inputs(repository: Path, video: Path) -> dict[str, list[NDArray[Any]]]:
    """Return every batch the served detector gives each net on ``video``, and its face crops."""
    pipeline = OrtPipeline(repository)
    recording = RecordingNets(pipeline.nets)
    pipeline.nets = recording
    sampled = sample_frames(video, DEFAULT_NUM_FRAMES, max_side=DEFAULT_MAX_SIDE)
    _, crops = pipeline.faces(sampled.frames)
    return {**recording.batches, contract.CLASSIFIER_MODEL: [crops]}


def model_path(repository: Path, model: str) -> Path:
    """Return the ONNX file ``repository`` serves for ``model`` (its newest version)."""
    return served_version_dir(repository / model) / "model.onnx"


def kernel_events(profile: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Return ``(operator type, microseconds)`` of each kernel run in an ONNX Runtime profile."""
    return [
        (event["args"]["op_name"], float(event["dur"]))
        for event in profile
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith(_KERNEL_SUFFIX)
    ]


def run_events(profile: list[dict[str, Any]]) -> list[float]:
    """Return the microseconds of each whole run (``model_run``) in an ONNX Runtime profile."""
    return [
        float(event["dur"])
        for event in profile
        if event.get("cat") == "Session" and event.get("name") == _RUN_EVENT
    ]


def _last_passes(events: list[Any], passes: int, timed: int) -> list[Any]:
    """Return the events of the last ``timed`` of ``passes`` equal passes (ValueError if not)."""
    if passes < 1 or not 1 <= timed <= passes or len(events) % passes:
        raise ValueError(f"{len(events)} events do not make {passes} equal passes")
    return events[len(events) - len(events) // passes * timed :]


def op_shares(
    events: list[tuple[str, float]], runs: list[float], passes: int, timed: int
) -> dict[str, Any]:
    """Summarise the events of ``passes`` equal passes, the last ``timed`` of them.

    ``events``: :func:`kernel_events`; ``runs``: :func:`run_events`. Returns the milliseconds
    per pass of the runs and of their kernels, and each operator type's kernel milliseconds
    per pass, largest first. Raises ValueError when either does not split into equal passes.
    """
    by_type: dict[str, float] = defaultdict(float)
    for op_type, microseconds in _last_passes(events, passes, timed):
        by_type[op_type] += microseconds / 1000.0 / timed
    ordered = dict(sorted(by_type.items(), key=lambda item: -item[1]))
    run_ms = sum(_last_passes(runs, passes, timed)) / 1000.0 / timed
    return {"run_ms": run_ms, "kernel_ms": sum(ordered.values()), "op_ms": ordered}


def profile_model(
    path: Path, input_name: str, batches: list[NDArray[Any]], runs: int
) -> dict[str, Any]:
    """Run ``path`` on ``batches`` once untimed and ``runs`` times profiled; summarise its ops."""
    import onnxruntime as ort

    from fakescope.pipeline.onnx_session import cpu_session_options

    with tempfile.TemporaryDirectory(prefix="model-ops-") as folder:
        options = cpu_session_options(intra_op_threads=1)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            for batch in batches:
                session.run(None, {input_name: batch})
        profile = json.loads(Path(session.end_profiling()).read_text())
    return op_shares(kernel_events(profile), run_events(profile), runs + 1, runs)


def measure(
    repositories: Mapping[str, Path], inputs: Mapping[str, list[NDArray[Any]]], runs: int
) -> list[dict[str, Any]]:
    """Profile every model of :data:`MODEL_INPUTS` in every repository on ``inputs``."""
    rows = []
    for model, input_name in MODEL_INPUTS.items():
        batches = inputs[model]
        for label, repository in repositories.items():
            path = model_path(repository, model)
            summary = profile_model(path, input_name, batches, runs)
            row = {
                "model": model,
                "repository": label,
                "version": path.parent.name,
                "batches": [list(batch.shape) for batch in batches],
                **summary,
            }
            logger.info("%s (%s): %.1f kernel ms per video", model, label, row["kernel_ms"])
            rows.append(row)
    return rows


def _ops_cell(row: dict[str, Any]) -> str:
    total = row["kernel_ms"]
    items = list(row["op_ms"].items())
    named = [f"{op} {ms / total:.0%}" for op, ms in items[:TOP_TYPES]]
    rest = sum(ms for _, ms in items[TOP_TYPES:])
    if rest:
        named.append(f"other {rest / total:.0%}")
    return ", ".join(named)


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``model_ops.json`` as a table."""
    method = result["method"]
    labels = {THIS: f"this (`{method['code_version'][:7]}`)"}
    if method.get("before_commit"):
        labels["before"] = f"`{method['before_commit'][:7]}`"
    lines = [
        "# Where the served ONNX models spend their time, by operator type",
        "",
        f"Written by `python -m fakescope.benchmarks.model_ops`; do not edit. The inputs the "
        f"served detector gives each net on `{method['video']}` ({method['num_frames']} frames, "
        f"long side <= {method['max_side']}) and the crops of the faces it finds, for the "
        "classifier; the same inputs for every repository. ONNX Runtime "
        f"{method['onnxruntime']}, one intra-op thread, its profiler on: milliseconds per video "
        f"of the model's runs and of their kernels (mean of {method['runs']} passes after an "
        f"untimed one) and each operator type's share of the kernels'; "
        f"{describe_cpu(result['machine'])}.",
        "",
        "| model | repository | version | batches | run ms per video | kernel ms | operator "
        "types (share of kernel ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        batches = len(row["batches"])
        lines.append(
            f"| {row['model']} | {labels.get(row['repository'], row['repository'])} | "
            f"{row['version']} | {batches} | {row['run_ms']:.1f} | {row['kernel_ms']:.1f} | "
            f"{_ops_cell(row)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Profile and write the result file; exit 2 when ``--before`` is not a usable commit."""
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, runs=5, result=RESULT)
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--before", help="also profile this commit's model_repository/")
    parser.add_argument(
        "--video", type=Path, help=f"default: the benchmark's {FACE_720P_10S.file_name}"
    )
    args = parser.parse_args(argv)
    check_runs(parser, args)
    if args.video is not None and not args.video.is_file():
        parser.error(f"--video {args.video}: no such file")
    before_commit = None
    if args.before is not None:
        try:
            before_commit = resolve_commit(args.before)
        except ValueError as exc:
            parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    video = args.video or ensure_videos(args.bench_videos, (FACE_720P_10S,))[0]
    with tempfile.TemporaryDirectory(prefix="model-ops-repository-") as folder:
        repositories = {THIS: args.repository}
        if before_commit is not None:
            repositories["before"] = extract_repository(before_commit, Path(folder))
        inputs = recorded_inputs(args.repository, video)
        rows = measure(repositories, inputs, args.runs)
    result = {
        "rows": rows,
        "method": {
            "video": video.name,
            "runs": args.runs,
            "num_frames": DEFAULT_NUM_FRAMES,
            "max_side": DEFAULT_MAX_SIDE,
            "onnxruntime": ort.__version__,
            "code_version": code_version(),
            "before_commit": before_commit,
        },
        "machine": machine_facts(),
    }
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
