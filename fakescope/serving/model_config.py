"""Helpers to read a Triton model configuration (the JSON the python backend hands to models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_model_config(args: dict[str, str]) -> dict[str, Any]:
    """Parse ``args["model_config"]`` as given to ``TritonPythonModel.initialize``."""
    return json.loads(args["model_config"])


def parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """Return the ``parameters`` of a model configuration as a plain ``str -> str`` dict."""
    return {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}


def latest_version_dir(model_dir: Path) -> Path:
    """Return the highest numeric version directory of a Triton model directory."""
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise FileNotFoundError(f"no numeric version directory in {model_dir}")
    return max(versions, key=lambda p: int(p.name))
