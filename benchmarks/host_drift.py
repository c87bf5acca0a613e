"""How far the host and the workloads moved between two ``fakescope bench`` runs.

The host probe (:mod:`~.benchmarks.host_speed`) is timed before each load level and before the
in-process comparison so that two runs of the same code can be told apart from a host that
changed speed between them. Whether it does that is itself measured here: for two runs'
``summary.json`` files, level by level, how much the probe moved against how much each side's
CPU seconds per video moved, and, before the in-process comparison, how much the probe moved
against each in-process path's ratio. Every figure is read from the two files; nothing runs.

``python -m fakescope.benchmarks.host_drift BEFORE.json AFTER.json --labels 'run 7' 'run 8'
--output OUT.json`` writes the JSON and, beside it, its Markdown tables (``OUT.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from fakescope.benchmarks.result_files import write_result

logger = logging.getLogger(__name__)

#: The CPU each level records per video: the load generator's and the server's.
CPU_SIDES = ("load_generator", "server")


class RunFileError(ValueError):
    """A file is not a ``fakescope bench`` load run with host probes."""


def read_run(path: Path) -> dict[str, Any]:
    """Load one run's ``summary.json``; refuse one without what the comparison needs.

    Raises:
        RunFileError: unreadable, not JSON, not a load run, or a level or the in-process
            comparison without a host probe (runs before the probe was recorded).

    """
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFileError(f"{path}: cannot read a bench summary ({exc})") from exc
    if not isinstance(summary, dict) or summary.get("mode") != "load":
        raise RunFileError(f"{path}: not the summary.json of a `fakescope bench` load run")
    if not summary.get("host_probe_before_inprocess") or "inprocess" not in summary:
        raise RunFileError(f"{path}: no host probe before the in-process comparison")
    for protocol, levels in summary.get("levels", {}).items():
        for users, level in levels.items():
            if not level.get("host_probe") or not level.get("cpu_seconds_per_video"):
                raise RunFileError(
                    f"{path}: {protocol} at {users} users has no host probe or CPU per video"
                )
    return summary


def _is_path(entry: Any) -> bool:
    """Whether an entry of ``summary["inprocess"]`` is a timed path (not a setting)."""
    return isinstance(entry, dict) and "ratio" in entry


def _change(before: float, after: float) -> float:
    return after / before - 1.0


def _pair(before: float, after: float) -> dict[str, float]:
    return {"before": before, "after": after, "change": _change(before, after)}


def compare_runs(
    before: dict[str, Any], after: dict[str, Any], labels: tuple[str, str]
) -> dict[str, Any]:
    """Set two runs side by side: probe against CPU per level, probe against in-process ratios.

    ``labels`` name the two runs in the tables. Only levels both runs measured are compared. A
    change is ``after / before - 1``.
    """
    levels = []
    for protocol, by_users in before["levels"].items():
        for users, level in by_users.items():
            other = after["levels"].get(protocol, {}).get(users)
            if other is None:
                continue
            cpu_before, cpu_after = level["cpu_seconds_per_video"], other["cpu_seconds_per_video"]
            levels.append(
                {
                    "protocol": protocol,
                    "users": int(users),
                    "host_probe_ms": _pair(
                        level["host_probe"]["median_ms"], other["host_probe"]["median_ms"]
                    ),
                    **{
                        f"cpu_{side}": _pair(cpu_before[side], cpu_after[side])
                        for side in CPU_SIDES
                    },
                    "p95_ratio": _pair(level["ratio"]["p95"], other["ratio"]["p95"]),
                }
            )
    if not levels:
        raise RunFileError("the two runs share no protocol and user level")
    # every timed path both runs have, in the order the earlier run reports them
    inprocess = [
        {"path": name, "ratio_p50": _pair(ours["ratio"]["p50"], theirs["ratio"]["p50"])}
        for name, ours in before["inprocess"].items()
        if _is_path(ours) and _is_path(theirs := after["inprocess"].get(name))
    ]
    probe_changes = [row["host_probe_ms"]["change"] for row in levels]
    cpu_changes = [row[f"cpu_{side}"]["change"] for row in levels for side in CPU_SIDES]
    same_direction = sum(
        all(
            (row[f"cpu_{side}"]["change"] > 0) == (row["host_probe_ms"]["change"] > 0)
            for side in CPU_SIDES
        )
        for row in levels
    )
    return {
        "what": (
            "two `fakescope bench` runs: the host probe timed before each level against each "
            "side's CPU seconds per video at that level, and the probe before the in-process "
            "comparison against each in-process path's p50 ratio; change = after / before - 1"
        ),
        "labels": list(labels),
        "levels": levels,
        "host_probe_before_inprocess_ms": _pair(
            before["host_probe_before_inprocess"]["median_ms"],
            after["host_probe_before_inprocess"]["median_ms"],
        ),
        "inprocess": inprocess,
        "level_probe_change_range": [min(probe_changes), max(probe_changes)],
        "level_cpu_change_range": [min(cpu_changes), max(cpu_changes)],
        "levels_probe_and_cpu_same_direction": same_direction,
    }


def _percent(change: float) -> str:
    return f"{change * 100:+.0f} %"


def _cells(pair: dict[str, float], digits: int) -> str:
    return f"{pair['before']:.{digits}f} → {pair['after']:.{digits}f} ({_percent(pair['change'])})"


def render_markdown(result: dict[str, Any]) -> str:
    """Render the comparison as Markdown: a table of the levels, one of the in-process paths."""
    before, after = result["labels"]
    lines = [
        "# The host probe against the workloads, between two bench runs",
        "",
        "Written by `python -m fakescope.benchmarks.host_drift` from the two runs' "
        f"`summary.json`; do not edit. Before: {before}; after: {after}. Each cell: before → "
        "after (change). The probe is an R-Net of the detector on 512 fixed windows, one ONNX "
        "Runtime thread, median of 7 rounds, timed just before the level: the served R-Net up "
        "to the tenth Xeon run and the runs before it, a pinned copy of it as served up to "
        "commit a373ed6 since (`benchmarks/host_speed.py`), so a comparison across the "
        "re-export of the served nets after a373ed6 (the ninth Xeon run against the tenth) "
        "compares two networks, not two hosts.",
        "",
        "| protocol | users | host probe ms | CPU s per video, load generator "
        "| CPU s per video, server | p95 ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["levels"]:
        lines.append(
            f"| {row['protocol']} | {row['users']} | {_cells(row['host_probe_ms'], 1)} "
            f"| {_cells(row['cpu_load_generator'], 2)} | {_cells(row['cpu_server'], 2)} "
            f"| {_cells(row['p95_ratio'], 3)} |"
        )
    probe = result["level_probe_change_range"]
    cpu = result["level_cpu_change_range"]
    lines += [
        "",
        f"- Level by level the probe moved {_percent(probe[0])} to {_percent(probe[1])}, "
        f"the CPU seconds per video of either side {_percent(cpu[0])} to {_percent(cpu[1])}; "
        f"at {result['levels_probe_and_cpu_same_direction']} of {len(result['levels'])} levels "
        "both sides' CPU moved the way the probe did.",
        "",
        "In-process comparison (one gRPC user, median of the runs per video, p50 over videos), "
        "with the probe timed just before it: "
        f"{_cells(result['host_probe_before_inprocess_ms'], 1)} ms.",
        "",
        "| path | ratio p50 |",
        "|---|---|",
    ]
    lines += [f"| `{row['path']}` | {_cells(row['ratio_p50'], 3)} |" for row in result["inprocess"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Compare two runs' ``summary.json``; write the JSON and its Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the earlier run's summary.json")
    parser.add_argument("after", type=Path, help="the later run's summary.json")
    parser.add_argument(
        "--labels",
        nargs=2,
        metavar=("BEFORE", "AFTER"),
        help="how the tables name the two runs (default: the file paths)",
    )
    parser.add_argument("--output", type=Path, required=True, help="the JSON to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    labels = tuple(args.labels) if args.labels else (str(args.before), str(args.after))
    try:
        result = compare_runs(read_run(args.before), read_run(args.after), labels)
    except RunFileError as exc:
        parser.error(str(exc))
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
