"""Check a model repository's files before tritonserver sees it, naming what is missing."""

from __future__ import annotations

import re
from pathlib import Path

from fakescope import contract
from fakescope.serving.model_config import (
    ORT_BACKEND_PARAMETERS,
    config_parameters,
    parse_pinned_version,
)


class RepositoryError(RuntimeError):
    """The model repository is incomplete; the message names the file."""


_BACKEND = re.compile(r'^\s*(backend|platform)\s*:\s*"([^"]+)"', re.MULTILINE)
_REQUIRED = {"python": "model.py", "onnxruntime": "model.onnx", "onnxruntime_onnx": "model.onnx"}


def check_repository(repository: Path) -> list[str]:
    """Return the model names of ``repository``; raise :class:`RepositoryError` if one is broken.

    Every model directory needs ``config.pbtxt`` and a numeric version directory; python models
    need ``<version>/model.py``, ONNX models ``<version>/model.onnx`` (non-empty); a version
    the config pins must have its folder. An ONNX model's parameters (``backend:
    "onnxruntime"`` or ``platform: "onnxruntime_onnx"``) must be ones the real ONNX Runtime
    backend documents, or the classifier's facts for clients: anything else would act only on
    the embedded CPU stand-in.
    """
    if not repository.is_dir():
        raise RepositoryError(f"model repository not found: {repository}")
    models = []
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        config = model_dir / "config.pbtxt"
        if not config.is_file():
            raise RepositoryError(f"missing {config}")
        text = config.read_text()
        match = _BACKEND.search(text)
        if match is None:
            raise RepositoryError(f"{config}: no backend or platform")
        versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        if not versions:
            raise RepositoryError(f"{model_dir}: no version directory (e.g. {model_dir}/1)")
        try:
            pinned = parse_pinned_version(text, str(config))
        except ValueError as exc:
            raise RepositoryError(str(exc)) from None
        if pinned is not None and not (model_dir / str(pinned)).is_dir():
            raise RepositoryError(f"{config} pins version {pinned}, which has no folder")
        if _REQUIRED.get(match.group(2)) == "model.onnx":
            _check_ort_parameters(config)
        required = _REQUIRED.get(match.group(2))
        for version in versions:
            if required and not (version / required).is_file():
                raise RepositoryError(f"missing {version / required}")
            if required and (version / required).stat().st_size == 0:
                raise RepositoryError(f"empty model file {version / required}")
        models.append(model_dir.name)
    if not models:
        raise RepositoryError(f"model repository {repository} holds no model")
    return models


def _check_ort_parameters(config: Path) -> None:
    unknown = set(config_parameters(config)) - ORT_BACKEND_PARAMETERS
    unknown -= contract.CLASSIFIER_FACT_PARAMETERS
    if unknown:
        raise RepositoryError(
            f"{config}: parameters {sorted(unknown)} are not settings of the real onnxruntime"
            f" backend, which ignores them (it documents {sorted(ORT_BACKEND_PARAMETERS)})"
        )
