"""Preprocessing as data: the classifier's spec, stored in its ONNX ``metadata_props``.

The export writes a :class:`ClassifierSpec` into the ONNX file; the server (``face_detector``,
which cuts the crops), the in-process benchmarks and training read it back from there, so input
size, mean/std and the crop margin exist in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fakescope import contract


@dataclass(frozen=True)
class ClassifierSpec:
    """How faces are prepared for the classifier."""

    arch: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    face_margin: float
    #: crop centre = box centre + shift * max(box w, box h), (x, y); measured on the training
    #: data's crops (``fakescope.export.crop_geometry``)
    face_shift: tuple[float, float] = (0.0, 0.0)
    #: the served logit is the network's logit divided by this (fitted on validation)
    temperature: float = 1.0
    #: served decision threshold on the (calibrated) fake probability
    threshold: float = 0.5

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> ClassifierSpec:
        """Parse the spec from ONNX ``metadata_props`` (raises ``KeyError`` when incomplete)."""
        mean = tuple(float(v) for v in json.loads(metadata[contract.META_MEAN]))
        std = tuple(float(v) for v in json.loads(metadata[contract.META_STD]))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean and std must have three channels")
        return cls(
            arch=metadata[contract.META_ARCH],
            input_size=int(metadata[contract.META_INPUT_SIZE]),
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            face_margin=float(metadata[contract.META_FACE_MARGIN]),
            # the three keys below exist from version 3 on; earlier versions were exported
            # without a shift or a temperature and labelled at 0.5
            face_shift=_pair(metadata.get(contract.META_FACE_SHIFT, "[0.0, 0.0]")),
            temperature=float(metadata.get(contract.META_TEMPERATURE, "1.0")),
            threshold=float(
                metadata.get(contract.META_THRESHOLD, repr(contract.UNSTATED_THRESHOLD))
            ),
        )


def _pair(text: str) -> tuple[float, float]:
    values = [float(v) for v in json.loads(text)]
    if len(values) != 2:
        raise ValueError(f"face shift must be two numbers, got {text!r}")
    return values[0], values[1]


def spec_to_metadata(spec: ClassifierSpec, *, trained: bool) -> dict[str, str]:
    """Serialise ``spec`` (and whether the weights are trained) as ONNX metadata strings.

    Geometry shift, temperature and threshold are written for trained models only: the
    untrained placeholder has none to state (readers take the pre-version-3 defaults).
    """
    out = {
        contract.META_ARCH: spec.arch,
        contract.META_INPUT_SIZE: str(spec.input_size),
        contract.META_MEAN: json.dumps(list(spec.mean)),
        contract.META_STD: json.dumps(list(spec.std)),
        contract.META_FACE_MARGIN: repr(spec.face_margin),
        contract.META_TRAINED: "true" if trained else "false",
    }
    if trained:
        out[contract.META_FACE_SHIFT] = json.dumps(list(spec.face_shift))
        out[contract.META_TEMPERATURE] = repr(spec.temperature)
        out[contract.META_THRESHOLD] = repr(spec.threshold)
    return out


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """Return the ``metadata_props`` of the ONNX file at ``path`` (via ONNX Runtime)."""
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def read_provenance(path: Path) -> dict[str, str]:
    """Return the provenance the export copied from training (``fakescope.provenance.*``)."""
    prefix = contract.META_PROVENANCE_PREFIX
    metadata = read_onnx_metadata(path)
    return {k[len(prefix) :]: v for k, v in metadata.items() if k.startswith(prefix)}


def read_classifier_limitations(path: Path) -> str | None:
    """Return the classifier's stated limitations (ONNX metadata) as one line, or ``None``."""
    text = read_onnx_metadata(path).get(contract.META_LIMITATIONS)
    return " ".join(text.split()) if text else None


def read_classifier_spec(path: Path) -> tuple[ClassifierSpec, bool]:
    """Return ``(spec, trained)`` read from the classifier ONNX file at ``path``."""
    metadata = read_onnx_metadata(path)
    try:
        return ClassifierSpec.from_metadata(metadata), metadata[contract.META_TRAINED] == "true"
    except KeyError as exc:
        raise ValueError(f"{path}: classifier ONNX lacks metadata key {exc}") from exc
