"""Render a ``fakescope bench`` result folder's ``summary.md`` again from its ``summary.json``.

For a run made before :mod:`~.benchmarks.targets` or the page's layout changed: the targets are
checked again against the recorded figures and both files rewritten; no figure is measured
again. ``python -m fakescope.benchmarks.render_summary FOLDER``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fakescope.benchmarks.result_files import write_result_files
from fakescope.benchmarks.run import render_markdown
from fakescope.benchmarks.targets import check_targets

logger = logging.getLogger(__name__)


def render_summary(folder: Path) -> list[dict[str, object]]:
    """Check the targets of ``folder/summary.json`` again, rewrite it and ``summary.md``.

    Returns the targets. Raises FileNotFoundError or ValueError (not a bench summary).
    """
    path = folder / "summary.json"
    summary = json.loads(path.read_text())
    if not isinstance(summary, dict) or "levels" not in summary:
        raise ValueError(f"{path} is not a fakescope bench summary (no levels)")
    summary["targets"] = check_targets(summary)
    page = render_markdown(summary)  # before either file is written (write_result_files)
    write_result_files({folder / "summary.md": page, path: json.dumps(summary, indent=2) + "\n"})
    return summary["targets"]


def main(argv: list[str] | None = None) -> int:
    """Re-render each folder given; exit 2 when one holds no bench summary."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(
        prog="python -m fakescope.benchmarks.render_summary", description=__doc__
    )
    parser.add_argument("folders", type=Path, nargs="+", help="folders holding summary.json")
    args = parser.parse_args(argv)
    for folder in args.folders:
        try:
            targets = render_summary(folder)
        except (OSError, ValueError) as exc:
            logger.error("%s", exc)
            return 2
        logger.info("%s: %d targets", folder / "summary.md", len(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
