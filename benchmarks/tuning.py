"""Server and client settings tuned by measurement: one variant at a time against the served one.

Each variant is the served model repository with one setting changed (a copy; the repository
itself is untouched), or the load generator with one setting changed. For each, a fresh
embedded Triton serves it and Locust runs gRPC users over the benchmark videos at 1 user (the
single-user latency) and at 8 users (saturation: throughput, p95, refusals). Every variant runs
in the same session on the same machine, so they compare with each other; the absolute figures
of ``make bench`` stay the reference.

Settings: ONNX Runtime intra-op threads per ONNX model, instances of ``face_detector`` and of
``face_classifier``, the detector's admission queue (``max_queue_size``), the two detector
settings together, arrival order instead of deadline classes in the detector's queue, the load
generator's decoding threads, and detection on keyframes
(``keyframe_stride``). With ``--rounds N`` the chosen variants run round-robin ``N`` times
(a neighbour's load then falls on all of them alike); the table gives each variant's median
round and the spread of its throughput.

Run: ``python -m fakescope.benchmarks.tuning`` (writes ``benchmarks/results/tuning.json`` and
``tuning.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakescope import contract
from fakescope.arguments import positive_int
from fakescope.benchmarks.machine import machine_facts
from fakescope.benchmarks.result_files import write_result_files
from fakescope.benchmarks.run import (
    PRODUCT_LIMIT,
    add_server_arguments,
    locust_env,
    run_level,
    summarize_level,
)
from fakescope.client.analyze import DEFAULT_NUM_FRAMES, analyze
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress

logger = logging.getLogger(__name__)

ONNX_MODELS = (
    contract.PNET_MODEL,
    contract.RNET_MODEL,
    contract.ONET_MODEL,
    contract.CLASSIFIER_MODEL,
)


def set_parameter(text: str, key: str, value: str) -> str:
    """Return a ``config.pbtxt`` text with the string parameter ``key`` set to ``value``."""
    entry = f'{{ key: "{key}" value: {{ string_value: "{value}" }} }}'
    existing = re.compile(rf'\{{\s*key:\s*"{re.escape(key)}"\s*value:\s*\{{[^}}]*\}}\s*\}}')
    if existing.search(text):
        return existing.sub(entry, text)
    if re.search(r"^parameters\s*\[", text, re.MULTILINE):
        return re.sub(
            r"^parameters\s*\[", f"parameters [\n  {entry},", text, count=1, flags=re.MULTILINE
        )
    return text + f"\nparameters [\n  {entry}\n]\n"


def set_instance_count(text: str, count: int) -> str:
    """Return a ``config.pbtxt`` text whose (single) instance group has ``count`` instances."""
    new, n = re.subn(r"(instance_group\s*\[\s*\{\s*count:\s*)\d+", rf"\g<1>{count}", text)
    if n != 1:
        raise ValueError("expected exactly one instance_group with a count")
    return new


def set_max_queue_size(text: str, size: int) -> str:
    """Return a ``config.pbtxt`` text whose default queue policy admits ``size`` waiting."""
    new, n = re.subn(
        r"(default_queue_policy\s*\{[^}]*?max_queue_size:\s*)\d+", rf"\g<1>{size}", text
    )
    if n != 1:
        raise ValueError("expected exactly one default_queue_policy with a max_queue_size")
    return new


def without_priorities(text: str) -> str:
    """Return a ``config.pbtxt`` text whose dynamic batcher serves requests in arrival order."""
    new, n = re.subn(
        r"^\s*(priority_levels|default_priority_level):\s*\d+\s*\n", "", text, flags=re.M
    )
    if n != 2:
        raise ValueError("expected priority_levels and default_priority_level")
    # a per-level policy names a level that no longer exists: Triton would refuse the config
    return re.sub(r"^\s*priority_queue_policy\s*\{.*?^  \}\s*\n", "", new, flags=re.M | re.S)


Edit = Callable[[str], str]


@dataclass(frozen=True)
class Variant:
    """One setting changed against the served configuration."""

    name: str
    what: str
    edits: dict[str, Edit] = field(default_factory=dict)  # model -> config text edit
    env: dict[str, str] = field(default_factory=dict)  # load generator settings


def _two_detectors_queue_8(text: str) -> str:
    return set_max_queue_size(set_instance_count(text, 2), 8)


def variants() -> list[Variant]:
    """Return the served configuration and one change of each setting."""

    def intra(n: int) -> dict[str, Edit]:
        return {
            m: (lambda t, n=n: set_parameter(t, "intra_op_thread_count", str(n)))
            for m in ONNX_MODELS
        }

    return [
        Variant("served", "as served"),
        Variant("intra_op_1", "ONNX Runtime: 1 intra-op thread per ONNX model", intra(1)),
        Variant(
            "detector_instances_2",
            "face_detector: 2 instances",
            {contract.FACE_DETECTOR_MODEL: lambda t: set_instance_count(t, 2)},
        ),
        Variant(
            "classifier_instances_2",
            "face_classifier: 2 instances",
            {contract.CLASSIFIER_MODEL: lambda t: set_instance_count(t, 2)},
        ),
        Variant(
            "queue_2",
            "face_detector max_queue_size 2",
            {contract.FACE_DETECTOR_MODEL: lambda t: set_max_queue_size(t, 2)},
        ),
        Variant(
            "queue_8",
            "face_detector max_queue_size 8",
            {contract.FACE_DETECTOR_MODEL: lambda t: set_max_queue_size(t, 8)},
        ),
        Variant(
            "detector_instances_2_queue_8",
            "face_detector: 2 instances and max_queue_size 8",
            {contract.FACE_DETECTOR_MODEL: _two_detectors_queue_8},
        ),
        Variant(
            "no_priorities",
            "face_detector: arrival order (no deadline classes)",
            {contract.FACE_DETECTOR_MODEL: without_priorities},
        ),
        Variant(
            "keyframes_off",
            "face_detector keyframe_stride 1 (every frame)",
            {contract.FACE_DETECTOR_MODEL: lambda t: set_parameter(t, "keyframe_stride", "1")},
        ),
        Variant(
            "decode_threads_1",
            "load generator: 1 decoding thread",
            env={"FAKESCOPE_BENCH_DECODE_THREADS": "1"},
        ),
    ]


def repository_for(variant: Variant, source: Path, folder: Path) -> Path:
    """Copy ``source`` into ``folder`` with the variant's config edits applied."""
    target = folder / "model_repository"
    shutil.copytree(source, target, symlinks=True)
    for model, edit in variant.edits.items():
        config = target / model / "config.pbtxt"
        config.write_text(edit(config.read_text()))
    return target


def measure(variant: Variant, videos: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    """Serve the variant, warm up, run 1 and 8 gRPC users; return both levels' summaries."""
    with tempfile.TemporaryDirectory(prefix=f"tuning-{variant.name}-") as tmp:
        repository = repository_for(variant, args.repository, Path(tmp))
        address = ServerAddress("127.0.0.1", args.http_port, args.grpc_port, args.metrics_port)
        server = EmbeddedTriton(repository, address)
        server.start()
        env = locust_env(videos, address, frames=DEFAULT_NUM_FRAMES, limit=PRODUCT_LIMIT)
        env.update(variant.env)
        levels = {}
        try:
            for video in videos:
                analyze(video, url=address.grpc_url, protocol="grpc")
            for users, seconds in ((1, args.single_seconds), (8, args.saturated_seconds)):
                raw = Path(tmp) / "raw"
                raw.mkdir(exist_ok=True)
                records = run_level("grpc", users, env, seconds, raw)
                levels[str(users)] = summarize_level(records, seconds)
        finally:
            server.stop()
    return {"name": variant.name, "what": variant.what, "levels": levels}


def _p95(level: dict[str, Any]) -> str:
    p95 = level["ratio"]["p95"]
    return "—" if p95 is None else f"{p95:.3f}"


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the round whose 8-user throughput is the median of the rounds (lower middle)."""
    ordered = sorted(rounds, key=lambda r: r["levels"]["8"]["videos_per_minute"])
    return ordered[(len(ordered) - 1) // 2]


def render_markdown(result: dict[str, Any]) -> str:
    """Render the variants side by side, each against the served configuration."""
    rounds = result.get("rounds", 1)
    chosen = {r["name"]: median_round(r["rounds"]) for r in result["variants"]}
    base = chosen["served"]["levels"]["8"]["videos_per_minute"]
    lines = [
        "# Server and client settings, one at a time",
        "",
        "Written by `python -m fakescope.benchmarks.tuning` from `tuning.json`; do not edit. "
        f"gRPC users over the benchmark videos: 1 user for {result['single_seconds']} s and 8 "
        f"users for {result['saturated_seconds']} s per variant, each on a fresh server, "
        f"{rounds} round(s) round-robin, all in one session (load average at start "
        f"{result['machine']['load_average_at_start'][0]:.1f}, at end "
        f"{result['machine']['load_average_at_end'][0]:.1f}). Each row is the variant's median "
        "round by 8-user throughput; the spread is the lowest and highest throughput of its "
        "rounds.",
        "",
        "| variant | 1 user p95 | 8 users p95 | 8 users videos/min (spread) | vs served "
        "| refused at 8 |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["variants"]:
        median = chosen[r["name"]]
        one, eight = median["levels"]["1"], median["levels"]["8"]
        rate = eight["videos_per_minute"]
        rates = [x["levels"]["8"]["videos_per_minute"] for x in r["rounds"]]
        lines.append(
            f"| {r['what']} | {_p95(one)} | {_p95(eight)} | {rate:.0f} ({min(rates):.0f}–"
            f"{max(rates):.0f}) | {rate / base - 1:+.0%} | {eight['rejected']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure every variant and write the result files."""
    from fakescope.benchmarks.videos import ensure_videos

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(parser, first_port=18200)
    parser.add_argument("--single-seconds", type=positive_int, default=20)
    parser.add_argument("--saturated-seconds", type=positive_int, default=40)
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    parser.add_argument(
        "--rounds", type=positive_int, default=1, help="round-robin repeats (default 1)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    chosen = [v for v in variants() if not args.only or v.name in args.only]
    if not chosen or not any(v.name == "served" for v in chosen):
        parser.error(f"no variant named {args.only}, or 'served' (the reference) left out")
    videos = ensure_videos(args.videos_dir)
    facts = machine_facts()
    rounds: dict[str, list[dict[str, Any]]] = {v.name: [] for v in chosen}
    for round_number in range(1, args.rounds + 1):
        for variant in chosen:
            logger.info("round %d, variant %s: %s", round_number, variant.name, variant.what)
            rounds[variant.name].append({"levels": measure(variant, videos, args)["levels"]})
    facts["load_average_at_end"] = list(os.getloadavg())
    result = {
        "machine": facts,
        "single_seconds": args.single_seconds,
        "saturated_seconds": args.saturated_seconds,
        "rounds": args.rounds,
        "variants": [{"name": v.name, "what": v.what, "rounds": rounds[v.name]} for v in chosen],
    }
    args.output.mkdir(parents=True, exist_ok=True)
    write_result_files(
        {
            args.output / "tuning.md": render_markdown(result),
            args.output / "tuning.json": json.dumps(result, indent=2) + "\n",
        }
    )
    logger.info("wrote %s", args.output / "tuning.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
