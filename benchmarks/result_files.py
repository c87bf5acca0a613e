"""Write a benchmark's result: the JSON document and, beside it, its Markdown table."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def fmt(value: float | None, digits: int = 3) -> str:
    """Return ``value`` with ``digits`` decimals for a result table, ``n/a`` when unknown."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_result(
    output: Path, result: dict[str, Any], render: Callable[[dict[str, Any]], str]
) -> None:
    """Write ``result`` to ``output`` (JSON) and ``render(result)`` to the same name ``.md``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    output.with_suffix(".md").write_text(render(result))
    logger.info("wrote %s and its table", output)
