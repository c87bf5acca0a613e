"""A benchmark's result: its JSON document and Markdown table, and the commit it measured."""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fakescope.files import copy_file_atomically, write_text_atomically
from fakescope.paths import PROJECT_ROOT

logger = logging.getLogger(__name__)


def fmt(value: float | None, digits: int = 3) -> str:
    """Return ``value`` with ``digits`` decimals for a result table, ``n/a`` when unknown."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_result(
    output: Path, result: dict[str, Any], render: Callable[[dict[str, Any]], str]
) -> None:
    """Write ``result`` to ``output`` (JSON) and ``render(result)`` to the same name ``.md``.

    Rendered first (:func:`write_result_files`): a table that cannot be rendered leaves both
    files as they were.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    write_result_files(
        {output.with_suffix(".md"): render(result), output: json.dumps(result, indent=2) + "\n"}
    )
    logger.info("wrote %s and its table", output)


def write_result_files(
    texts: Mapping[Path, str], figures: Mapping[Path, Callable[[Path], None]] | None = None
) -> None:
    """Write a result's files together: each text, and each figure ``draw(path)`` draws.

    Every figure is drawn (to a scratch folder) before any file is written, and the texts come
    rendered: a render or a plot that fails leaves every file of the result as it was, not a
    new document beside an old table that no longer describes it. Each file is written whole
    (:mod:`fakescope.files`).
    """
    with tempfile.TemporaryDirectory(prefix="fakescope-result-") as scratch:
        drawn = {}
        for target, draw in (figures or {}).items():
            drawn[target] = Path(scratch) / target.name
            draw(drawn[target])
        for target, text in texts.items():
            write_text_atomically(target, text)
        for target, staged in drawn.items():
            copy_file_atomically(staged, target)


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
