"""Export facenet-pytorch's MTCNN networks (P-Net, R-Net, O-Net) to ONNX.

The weights are the state dicts shipped inside the facenet-pytorch wheel
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``); nothing is downloaded. Each network becomes one
ONNX file named after its Triton model (``mtcnn_pnet.onnx``, ``mtcnn_rnet.onnx``,
``mtcnn_onet.onnx``) with the tensor names of :mod:`fakescope.contract`:

=========  ===================  ===========================================================
model      inputs               outputs
=========  ===================  ===========================================================
P-Net      PNET_IMAGES          PNET_BOX_REGRESSION [B,4,h,w], PNET_FACE_PROBABILITY [B,2,h,w]
           FP32 [B,3,H,W]
R-Net      RNET_IMAGES          RNET_BOX_REGRESSION [B,4], RNET_FACE_PROBABILITY [B,2]
           FP32 [B,3,24,24]
O-Net      ONET_IMAGES          ONET_BOX_REGRESSION [B,4], ONET_LANDMARKS [B,10],
           FP32 [B,3,48,48]     ONET_FACE_PROBABILITY [B,2]
=========  ===================  ===========================================================

Inputs are RGB, NCHW, normalised as ``(pixel - 127.5) * 0.0078125`` (the normalisation is *not*
inside the graph; the cascade in :mod:`fakescope.pipeline.mtcnn` applies it). Every export is
checked with ``onnx.checker`` and against facenet-pytorch's own nets with ONNX Runtime on crops
and pyramid levels of a real face image.

Each PReLU is written as ``x + (slope - 1) * min(x, 0)`` (ONNX ``Clip``, ``Mul``, ``Add``:
:func:`_prelu_as_min`), not as ONNX ``PRelu``: ONNX Runtime's CPU ``PRelu`` kernel, a
per-channel broadcast, was the largest operator of P-Net and R-Net and the second of O-Net,
and the three plain ops take less time on P-Net and R-Net, about the same on O-Net
(``benchmarks/results/xeon-host/model_ops.md``, ``python -m fakescope.benchmarks.model_ops``).
The same function up to float rounding, within the parity check's tolerance, as the check shows.

Run as ``python -m fakescope.export.mtcnn_onnx OUTPUT_DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakescope.contract import (
    ONET_INPUT,
    ONET_LANDMARKS,
    ONET_MODEL,
    ONET_PROBABILITY,
    ONET_REGRESSION,
    PNET_INPUT,
    PNET_MODEL,
    PNET_PROBABILITY,
    PNET_REGRESSION,
    RNET_INPUT,
    RNET_MODEL,
    RNET_PROBABILITY,
    RNET_REGRESSION,
)
from fakescope.extras import TRAINING_INSTALL_HINT
from fakescope.pipeline.mtcnn import PIXEL_MEAN, PIXEL_SCALE

__all__ = ["MtcnnExportError", "export_mtcnn", "facenet_weights_dir"]

logger = logging.getLogger(__name__)

OPSET_VERSION = 17
#: Largest |ORT - PyTorch| accepted on any output.
TOLERANCE = 1e-4
NORMALISATION = f"(x - {PIXEL_MEAN}) * {PIXEL_SCALE}"

#: Metadata keys written on each exported MTCNN model.
META_SOURCE = "fakescope.source"
META_NORMALISATION = "fakescope.normalisation"
META_LAYOUT = "fakescope.input_layout"
META_WEIGHTS_SHA256 = "fakescope.weights_sha256"
META_MAX_ABS_DIFF = "fakescope.ort_vs_torch_max_abs_diff"


class MtcnnExportError(RuntimeError):
    """An exported network failed its check (ONNX checker or ORT vs PyTorch parity)."""


@dataclass(frozen=True)
class _NetSpec:
    model_name: str
    short: str
    weights: str
    input_name: str
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]


_BATCH_ONLY = {0: "batch"}
_SPECS = (
    _NetSpec(
        PNET_MODEL,
        "pnet",
        "pnet.pt",
        PNET_INPUT,
        (PNET_REGRESSION, PNET_PROBABILITY),
        {
            PNET_INPUT: {0: "batch", 2: "height", 3: "width"},
            PNET_REGRESSION: {0: "batch", 2: "out_height", 3: "out_width"},
            PNET_PROBABILITY: {0: "batch", 2: "out_height", 3: "out_width"},
        },
    ),
    _NetSpec(
        RNET_MODEL,
        "rnet",
        "rnet.pt",
        RNET_INPUT,
        (RNET_REGRESSION, RNET_PROBABILITY),
        {RNET_INPUT: _BATCH_ONLY, RNET_REGRESSION: _BATCH_ONLY, RNET_PROBABILITY: _BATCH_ONLY},
    ),
    _NetSpec(
        ONET_MODEL,
        "onet",
        "onet.pt",
        ONET_INPUT,
        (ONET_REGRESSION, ONET_LANDMARKS, ONET_PROBABILITY),
        {
            ONET_INPUT: _BATCH_ONLY,
            ONET_REGRESSION: _BATCH_ONLY,
            ONET_LANDMARKS: _BATCH_ONLY,
            ONET_PROBABILITY: _BATCH_ONLY,
        },
    ),
)


def facenet_weights_dir() -> Path:
    """Return the ``data`` folder of the installed facenet-pytorch wheel (without importing it)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MtcnnExportError(f"facenet-pytorch is not installed; {TRAINING_INSTALL_HINT}")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [s.weights for s in _SPECS if not (data / s.weights).is_file()]
    if missing:
        raise MtcnnExportError(f"facenet-pytorch wheel lacks {missing} in {data}")
    return data


def _facenet_version() -> str:
    try:
        return importlib.metadata.version("facenet-pytorch")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - odd installs
        return "unknown"


def _load_net(spec: _NetSpec, weights: Path):
    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    net = {"pnet": PNet, "rnet": RNet, "onet": ONet}[spec.short](pretrained=False)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def _prelu_as_min(prelu):
    """Return a module computing ``prelu`` as ``x + (slope - 1) * min(x, 0)`` (module docstring)."""
    import torch

    class _PReluAsMin(torch.nn.Module):
        def __init__(self, slope: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("slope_minus_one", slope.detach().clone() - 1.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # one slope per channel (dimension 1), as torch.nn.PReLU broadcasts it
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return x + self.slope_minus_one.view(shape) * torch.clamp(x, max=0.0)

    return _PReluAsMin(prelu.weight)


def _for_export(net):
    """Return a copy of ``net`` with every ``PReLU`` replaced by :func:`_prelu_as_min`'s module."""
    import copy

    import torch

    rewritten = copy.deepcopy(net)
    for name, module in list(rewritten.named_modules()):
        if isinstance(module, torch.nn.PReLU):
            parent, _, child = name.rpartition(".")
            owner = rewritten.get_submodule(parent) if parent else rewritten
            setattr(owner, child, _prelu_as_min(module))
    return rewritten.eval()


def _default_reference_image() -> np.ndarray:
    try:
        from skimage import data
    except ImportError as exc:
        raise MtcnnExportError(
            "the export checks the nets on a real face image; pass reference_image= "
            "(UINT8 [H, W, 3] RGB) or install scikit-image for skimage.data.astronaut()"
        ) from exc
    return data.astronaut()


def _reference_inputs(image: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Normalised NCHW inputs for each net, made from a real image like the cascade makes them.

    P-Net: several pyramid levels (odd and even sizes, batch of 2). R-Net / O-Net: crops on a
    grid of positions and sizes (face and background, some smaller than the net's input so
    they are upsampled), area-resized to 24 / 48, plus a batch of one.
    """
    import torch
    import torch.nn.functional as functional

    img = torch.as_tensor(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    flipped = torch.flip(img, dims=[3])
    both = torch.cat([img, flipped])
    height, width = img.shape[2:]

    def norm(t: torch.Tensor) -> np.ndarray:
        return ((t - PIXEL_MEAN) * PIXEL_SCALE).contiguous().numpy().astype(np.float32)

    pnet_inputs = []
    for scale in (0.6, 0.3, 0.0507, 12.0 / min(height, width)):
        size = (int(height * scale + 1), int(width * scale + 1))
        pnet_inputs.append(norm(functional.interpolate(both, size=size, mode="area")))

    crops = []
    short = min(height, width)
    for frac in (0.06, 0.15, 0.35, 0.7):
        side = max(8, int(short * frac))
        step = max(side // 2, 1)
        for y in range(0, height - side + 1, step):
            for x in range(0, width - side + 1, step):
                crops.append(img[:, :, y : y + side, x : x + side])
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(crops), size=min(len(crops), 96), replace=False)
    picked = [crops[i] for i in sorted(chosen)]

    def resized(size: int) -> torch.Tensor:
        return torch.cat(
            [functional.interpolate(c, size=(size, size), mode="area") for c in picked]
        )

    r, o = norm(resized(24)), norm(resized(48))
    return {"pnet": pnet_inputs, "rnet": [r, r[:1]], "onet": [o, o[:1]]}


def _export_one(net, spec: _NetSpec, example: np.ndarray, path: Path) -> None:
    import torch

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # dynamo=False is deliberate (small static CNNs, stable names, deterministic bytes)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            net,
            (torch.from_numpy(example),),
            buffer,
            dynamo=False,
            opset_version=OPSET_VERSION,
            input_names=[spec.input_name],
            output_names=list(spec.output_names),
            dynamic_axes=spec.dynamic_axes,
            do_constant_folding=True,
        )
    path.write_bytes(buffer.getvalue())


def _max_abs_diff(net, path: Path, spec: _NetSpec, inputs: list[np.ndarray]) -> float:
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if names != ([spec.input_name], list(spec.output_names)):
        raise MtcnnExportError(f"{path.name}: tensor names {names} are not the contract names")
    worst = 0.0
    for batch in inputs:
        with torch.no_grad():
            expected = [t.numpy() for t in net(torch.from_numpy(batch))]
        got = session.run(list(spec.output_names), {spec.input_name: batch})
        for name, want, have in zip(spec.output_names, expected, got, strict=True):
            if want.shape != have.shape:
                raise MtcnnExportError(
                    f"{path.name}: {name} shape {have.shape} != PyTorch {want.shape} "
                    f"for input {batch.shape}"
                )
            worst = max(worst, float(np.max(np.abs(want - have))))
    return worst


def _set_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString(deterministic=True))


def export_mtcnn(
    output_dir: Path,
    *,
    reference_image: np.ndarray | None = None,
    tolerance: float = TOLERANCE,
) -> dict[str, Path]:
    """Export P-Net, R-Net and O-Net to ONNX and verify each one.

    Writes ``output_dir/mtcnn_pnet.onnx``, ``mtcnn_rnet.onnx`` and ``mtcnn_onet.onnx`` (file
    stems are the Triton model names of :mod:`fakescope.contract`). Each file is checked with
    ``onnx.checker.check_model(full_check=True)`` and run with ONNX Runtime against PyTorch on
    pyramid levels and crops of ``reference_image``. Re-exporting on the same CPU gives the same
    bytes; on another CPU the weights may differ in the last bits (see ``onnx_differences``).

    Args:
        output_dir: folder to write into (created if missing).
        reference_image: UINT8 ``[H, W, 3]`` RGB image with a face used for the parity check;
            default ``skimage.data.astronaut()``.
        tolerance: largest accepted ``|ORT - PyTorch|`` on any output.

    Returns:
        ``{model_name: path}`` for ``mtcnn_pnet``, ``mtcnn_rnet`` and ``mtcnn_onet``.

    Raises:
        MtcnnExportError: when facenet-pytorch is missing, the checker fails, the tensor names
            differ from the contract, or ORT and PyTorch differ by more than ``tolerance``.

    """
    import onnx

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    weights_dir = facenet_weights_dir()
    version = _facenet_version()
    image = _default_reference_image() if reference_image is None else reference_image
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise MtcnnExportError(
            f"reference_image must be UINT8 [H, W, 3] RGB, got {image.dtype} {image.shape}"
        )
    inputs = _reference_inputs(image)

    written: dict[str, Path] = {}
    for spec in _SPECS:
        weights = weights_dir / spec.weights
        net = _load_net(spec, weights)
        path = output_dir / f"{spec.model_name}.onnx"
        _export_one(_for_export(net), spec, inputs[spec.short][0], path)
        try:
            onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise MtcnnExportError(f"{path.name} fails the ONNX checker: {exc}") from exc
        diff = _max_abs_diff(net, path, spec, inputs[spec.short])
        if not diff <= tolerance:
            raise MtcnnExportError(
                f"{path.name}: ONNX Runtime and PyTorch differ by {diff:.3g} "
                f"(> tolerance {tolerance:g}) on real inputs"
            )
        _set_metadata(
            path,
            {
                META_SOURCE: f"facenet-pytorch {version} {spec.short}",
                META_NORMALISATION: NORMALISATION,
                META_LAYOUT: "NCHW RGB float32",
                META_WEIGHTS_SHA256: hashlib.sha256(weights.read_bytes()).hexdigest(),
                # rounded up so the value (and the file) is stable across re-exports
                META_MAX_ABS_DIFF: f"{_ceil_pow10(diff):.0e}",
            },
        )
        logger.info("exported %s (ORT vs PyTorch max |diff| %.2g)", path, diff)
        written[spec.model_name] = path
    return written


def _ceil_pow10(value: float) -> float:
    """Smallest power of ten >= value (1e-12 for 0)."""
    if value <= 0.0:
        return 1e-12
    return float(10.0 ** np.ceil(np.log10(value)))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m fakescope.export.mtcnn_onnx OUTPUT_DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name, path in export_mtcnn(args.output_dir).items():
        logger.info("%s -> %s", name, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
