"""A benchmark's result: its JSON document and Markdown table, and the commit it measured."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakescope.files import write_text_atomically
from fakescope.paths import PROJECT_ROOT

logger = logging.getLogger(__name__)


def fmt(value: float | None, digits: int = 3) -> str:
    """Return ``value`` with ``digits`` decimals for a result table, ``n/a`` when unknown."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_result(
    output: Path, result: dict[str, Any], render: Callable[[dict[str, Any]], str]
) -> None:
    """Write ``result`` to ``output`` (JSON) and ``render(result)`` to the same name ``.md``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output, json.dumps(result, indent=2) + "\n")
    write_text_atomically(output.with_suffix(".md"), render(result))
    logger.info("wrote %s and its table", output)


#: Paths whose content decides the timings: a run on a tree with local changes there says so.
TIMED_PATHS = ("model_repository", "fakescope", "client", "benchmarks")
# A benchmark writes its results before they are committed: they are not code that was timed.
UNTIMED_PATHS = (":(exclude)benchmarks/results",)


def code_version(root: Path = PROJECT_ROOT) -> str:
    """Return the checkout's commit, ``-dirty`` when :data:`TIMED_PATHS` (results aside) changed.

    ``unknown`` outside a git checkout (e.g. an exported tree: pass ``--code-version`` then).
    """
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", *TIMED_PATHS, *UNTIMED_PATHS],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if changes else "")
