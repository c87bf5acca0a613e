"""One table of the Locust levels of several ``fakescope bench`` runs, from their records.

``python -m fakescope.benchmarks.level_table RUN_DIR... --output DIR`` reads each run's
``summary.json`` (its mode, run time and per-level server split) and its per-request records
(``locust_<protocol>_<users>u.jsonl``), summarises every level again with
:func:`fakescope.benchmarks.run.summarize_level` (so runs written before a field was added,
such as ``late``, get it too) and writes ``levels.json`` and ``levels.md``: per run, protocol
and users, the videos accepted, answered late and refused (queue full / queue timeout; late
and refused also per video file), the p95 ratio, videos per minute and the mean seconds in
and after the admission queue. For A/B runs of the same command on one host, e.g. a served
setting against a variant.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from fakescope.benchmarks.result_files import fmt, write_result
from fakescope.benchmarks.run import summarize_level

logger = logging.getLogger(__name__)


def level_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Return one row per level of the ``fakescope bench`` output in ``run_dir``.

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``summary.json``, or a level's records are
            missing.

    """
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = []
    for protocol, levels in summary["levels"].items():
        for users, written in levels.items():
            records_path = run_dir / f"locust_{protocol}_{users}u.jsonl"
            records = [json.loads(line) for line in records_path.read_text().splitlines() if line]
            level = summarize_level(records, summary["run_time_seconds_per_level"])
            split = written.get("server_seconds_per_video") or {}
            rows.append(
                {
                    "run": run_dir.name,
                    "mode": summary["mode"],
                    "protocol": protocol,
                    "users": int(users),
                    "accepted": level["accepted"],
                    "late": level["late"],
                    "rejected": level["rejected"],
                    "rejected_by_reason": level["rejected_by_reason"],
                    "late_per_video": level["late_per_video"],
                    "rejected_per_video": level["rejected_per_video"],
                    "p95_ratio": level["ratio"]["p95"],
                    "max_ratio": level["ratio"]["max"],
                    "videos_per_minute": level["videos_per_minute"],
                    "entry_queue_seconds": split.get("entry_queue_seconds"),
                    "after_queue_seconds": split.get("after_queue_seconds"),
                    "host_probe_ms": written.get("host_probe", {}).get("median_ms"),
                }
            )
    return rows


def render_markdown(result: dict[str, Any]) -> str:
    """Return ``result``'s levels as a Markdown table, in the order given."""
    lines = [
        "# Locust levels of several bench runs",
        "",
        "Written by `python -m fakescope.benchmarks.level_table` from each run's records. Late:"
        " accepted videos answered past the product's limit (half the duration). Refused:"
        " queue full / queue timeout (a level's own or the video's deadline) / other. In and"
        " after queue: Triton's mean seconds per answered video in `face_detector`'s queue and"
        " from leaving it to the answer.",
        "",
        "| run | mode | protocol | users | accepted | late | refused (full / timeout / other)"
        " | p95 ratio | max ratio | videos/min | in / after queue, s | host probe ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["levels"]:
        reasons = row["rejected_by_reason"]
        lines.append(
            f"| {row['run']} | {row['mode']} | {row['protocol']} | {row['users']} "
            f"| {row['accepted']} | {row['late']} | {row['rejected']} ({reasons['queue_full']} / "
            f"{reasons['queue_timeout']} / {reasons['other']}) | {fmt(row['p95_ratio'], 3)} "
            f"| {fmt(row['max_ratio'], 3)} | {row['videos_per_minute']:.1f} "
            f"| {fmt(row['entry_queue_seconds'], 2)} / {fmt(row['after_queue_seconds'], 2)} "
            f"| {fmt(row['host_probe_ms'], 0)} |"
        )
    return "\n".join([*lines, "", *_per_video_table(result["levels"])]) + "\n"


def _per_video_table(rows: list[dict[str, Any]]) -> list[str]:
    """Late and refused videos of each level, one column per video file (a deadline class)."""
    videos = sorted({video for row in rows for video in row["rejected_per_video"]})
    lines = [
        "Late / refused, per video file:",
        "",
        "| run | protocol | users | " + " | ".join(videos) + " |",
        "|---|---|---|" + "---|" * len(videos),
    ]
    for row in rows:
        cells = [
            f"{row['late_per_video'].get(v, 0)} / {row['rejected_per_video'].get(v, 0)}"
            if v in row["rejected_per_video"]
            else "n/a"
            for v in videos
        ]
        lines.append(
            f"| {row['run']} | {row['protocol']} | {row['users']} | " + " | ".join(cells) + " |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Write ``levels.json`` and ``levels.md`` for the runs given; 2 on a missing run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="fakescope bench output folders")
    parser.add_argument("--output", type=Path, required=True, help="folder for levels.*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        rows = [row for run in args.runs for row in level_rows(run)]
    except FileNotFoundError as exc:
        logger.error("not a complete fakescope bench output: %s", exc)
        return 2
    result = {"runs": [run.name for run in args.runs], "levels": rows}
    write_result(args.output / "levels.json", result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
