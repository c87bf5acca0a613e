"""A cheaper face classifier at the same quality: int8 versions of a float one (issue #14, item 3).

The recipe (measured against its alternatives by ``python -m fakescope.benchmarks.classifier_int8``,
``benchmarks/results/classifier_int8.md``): ONNX Runtime's static quantization in the QDQ
format, int8 weights per channel with 7 bits (``reduce_range``, which cannot saturate the 16-bit
sums of a CPU without VNNI), uint8 activations, MinMax calibration on :data:`CALIBRATION_FACES`
faces of the model's TRAIN split; the head (the fully connected layer, the temperature, the
sigmoid) stays float, and so do the :data:`FLOAT_BLOCKS` backbone blocks whose quantization
costs the most LogLoss, chosen on :data:`SELECTION_FACES` other training faces
(:func:`choose_float_blocks`). The validation faces play no part in building it.

:func:`export_quantized_version` builds that model from the served float version (where the
served version is int8 already, from the float version it was made from) and publishes it as the
next ``face_classifier`` version only when :func:`accepted` holds on the model's own
validation faces (the split its training recorded): AUC at most :data:`TOLERANCE` lower and
LogLoss at most :data:`TOLERANCE` higher than the float version's, both as ONNX Runtime runs it on
this CPU (fused int8 kernels) and in its own arithmetic (graph optimisations off: each
``QuantizeLinear`` / ``DequantizeLinear`` pair and float operator as written: what a runtime
computes where it has no fused int8 kernel for an operator).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from numpy.typing import NDArray

from fakescope import contract
from fakescope.export.normalisation import scalar_normalisation
from fakescope.pipeline.onnx_session import cpu_session_options

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "CALIBRATION_FACES",
    "FLOAT_BLOCKS",
    "QUANTIZATION_KEY",
    "SELECTION_FACES",
    "TOLERANCE",
    "Quality",
    "accepted",
    "backbone_blocks",
    "calibration_names",
    "choose_float_blocks",
    "classifier_logits",
    "export_quantized_version",
    "float_source",
    "head_nodes",
    "own_arithmetic_options",
    "quantize",
]

logger = logging.getLogger(__name__)

#: The acceptance rule of issue #14, item 3: AUC and LogLoss within this of the float model.
TOLERANCE = 0.005
#: Faces of the train split the activations are calibrated on, and the seed that draws them.
CALIBRATION_FACES = 512
CALIBRATION_SEED = 0
#: Training faces (not calibration faces) on which the float blocks are chosen.
SELECTION_FACES = 2048
SELECTION_SEED = 1
#: Backbone blocks kept in float.
FLOAT_BLOCKS = 2
#: ONNX Runtime's calibration method (``CalibrationMethod`` member).
CALIBRATION_METHOD = "MinMax"
#: Float rounding must not turn a delta of exactly the tolerance into a rejection.
_ROUNDING = 1e-12
#: The provenance key a quantized version records its recipe and verdict under.
QUANTIZATION_KEY = "quantization"


@dataclass(frozen=True)
class Quality:
    """The two figures the acceptance rule compares."""

    auc: float
    logloss: float


def accepted(reference: Quality, *candidates: Quality, tolerance: float = TOLERANCE) -> bool:
    """Return whether every one of ``candidates`` keeps the reference's quality.

    That is: AUC at most ``tolerance`` lower and LogLoss at most ``tolerance`` higher (better
    figures pass). A quantized model's candidates are its figures on this CPU and in its own
    arithmetic.
    """
    return bool(candidates) and all(
        reference.auc - candidate.auc <= tolerance + _ROUNDING
        and candidate.logloss - reference.logloss <= tolerance + _ROUNDING
        for candidate in candidates
    )


def calibration_names(
    train_names: Sequence[str], count: int, seed: int, what: str = "calibration faces"
) -> list[str]:
    """``count`` names drawn without replacement from ``train_names`` (seeded; sorted).

    ``what`` names the faces in the error (calibration or selection faces).

    Raises:
        ValueError: when ``count`` is not in ``1..len(train_names)``.

    """
    pool = sorted(train_names)
    if not 1 <= count <= len(pool):
        raise ValueError(f"{what} must be 1..{len(pool)} (of the train split), got {count}")
    picked = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
    return sorted(pool[i] for i in picked)


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Return the names of the classifier head's nodes.

    The fully connected layer(s) and the nodes writing the logit and the probability (the
    temperature ``Div``, ``Sigmoid``).
    """
    outputs = {contract.CLASSIFIER_LOGIT, contract.CLASSIFIER_OUTPUT}
    return [n.name for n in model.graph.node if n.op_type == "Gemm" or outputs & set(n.output)]


#: The backbone block a node belongs to, from the exported node names (``/backbone/_blocks.3/...``).
_BLOCK = re.compile(r"/_blocks\.(\d+)/")


def backbone_blocks(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Return the names of each backbone block's nodes, by block number (as a string)."""
    blocks: dict[str, list[str]] = {}
    for node in model.graph.node:
        found = _BLOCK.search(node.name)
        if found:
            blocks.setdefault(found.group(1), []).append(node.name)
    return dict(sorted(blocks.items(), key=lambda item: int(item[0])))


def _reader(crops: NDArray[Any], batch: int = 32) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = iter(
                [
                    {contract.CLASSIFIER_INPUT: crops[i : i + batch]}
                    for i in range(0, len(crops), batch)
                ]
            )

        def get_next(self) -> dict[str, NDArray[Any]] | None:
            return next(self._batches, None)

    return Batches()


def quantize(
    source: Path,
    target: Path,
    calibration: NDArray[Any],
    *,
    float_head: bool,
    method: str,
    seven_bit_weights: bool = False,
    float_blocks: Collection[str] = (),
) -> list[str]:
    """Write the int8 (QDQ) version of ``source`` to ``target``, calibrated on ``calibration``.

    ``float_head`` keeps :func:`head_nodes` in float, ``float_blocks`` the nodes of those
    :func:`backbone_blocks`; ``seven_bit_weights`` quantizes weights to 7 bits (ONNX Runtime's
    ``reduce_range``). The input normalisation's uniform constants become scalars
    (:func:`~fakescope.export.normalisation.scalar_normalisation`). The source's metadata (the
    classifier's spec and provenance) is carried over. Returns the normalisation nodes whose
    constants became scalars.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_suffix(".pre.onnx")
    # symbolic shape inference is for transformer graphs; ONNX's own is enough here
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    scalars = scalar_normalisation(model)  # the same values, faster (export.normalisation)
    if scalars:
        onnx.save(model, str(prepared))
    exclude = head_nodes(model) if float_head else []
    blocks = backbone_blocks(model)
    unknown = sorted(set(float_blocks) - set(blocks))
    if unknown:
        raise ValueError(f"no backbone block {', '.join(unknown)} (blocks: {', '.join(blocks)})")
    exclude += [name for block in float_blocks for name in blocks[block]]
    quantize_static(
        str(prepared),
        str(target),
        _reader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=seven_bit_weights,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=CalibrationMethod[method],
        nodes_to_exclude=exclude,
    )
    prepared.unlink()
    quantized, original = onnx.load(str(target)), onnx.load(str(source))
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(original.metadata_props)
    onnx.save(quantized, str(target))
    return scalars


def classifier_logits(path: Path, crops: NDArray[Any]) -> NDArray[Any]:
    """Return the classifier at ``path``'s logits of ``crops`` (float64 ``[F]``)."""
    from fakescope.training.evaluate import OnnxClassifier

    session = OnnxClassifier(path).session
    out = [
        session.run([contract.CLASSIFIER_LOGIT], {contract.CLASSIFIER_INPUT: crops[i : i + 32]})[0]
        for i in range(0, len(crops), 32)
    ]
    logits: NDArray[Any] = np.concatenate(out).reshape(-1).astype(np.float64)
    return logits


def choose_float_blocks(
    source: Path,
    workdir: Path,
    calibration: NDArray[Any],
    faces: NDArray[Any],
    labels: NDArray[Any],
    *,
    count: int,
    method: str,
) -> tuple[list[str], dict[str, float]]:
    """Return the ``count`` backbone blocks whose quantization costs the most LogLoss on ``faces``.

    Each block in turn is kept in float, everything else quantized as ``int8-7bit``; the blocks
    whose float-keeping gives the lowest LogLoss (served temperature) win. Returns them in
    block order, and the LogLoss of every block's model.
    """
    from fakescope.training.binary_metrics import binary_metrics
    from fakescope.training.calibration import sigmoid

    losses = {}
    for block in backbone_blocks(onnx.load(str(source))):
        path = workdir / f"float-block-{block}.onnx"
        quantize(
            source,
            path,
            calibration,
            float_head=True,
            method=method,
            seven_bit_weights=True,
            float_blocks=[block],
        )
        losses[block] = binary_metrics(labels, sigmoid(classifier_logits(path, faces)), 0.5).logloss
        path.unlink()
    ranked = sorted(losses, key=lambda block: (losses[block], int(block)))
    return sorted(ranked[:count], key=int), losses


def own_arithmetic_options(intra_op_threads: int | None = None) -> ort.SessionOptions:
    """ONNX Runtime session options that run a QDQ model in its own arithmetic.

    Graph optimisations off: no fused int8 kernels, each ``QuantizeLinear`` /
    ``DequantizeLinear`` pair and float operator runs as written, so the figures do not depend
    on the CPU's int8 instructions.
    """
    import onnxruntime as ort

    options = cpu_session_options(intra_op_threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


# --- a quantized version of the served classifier -----------------------------------------------


@dataclass(frozen=True)
class _Faces:
    """The real faces a quantized version is built and judged on."""

    val_entries: list[Any]
    val: NDArray[Any]
    calibration: NDArray[Any]
    selection: NDArray[Any]
    selection_labels: NDArray[np.float64]


def float_source(model: Path) -> Path:
    """Return ``model``, or the float version it was quantized from (in the same repository).

    An int8 model is built from, and judged against, the float model.

    Raises:
        FileNotFoundError: ``model`` is quantized and its float version is not beside it.

    """
    from fakescope.pipeline.metadata import read_provenance

    record = read_provenance(model).get(QUANTIZATION_KEY)
    if record is None:
        return model
    source = model.parent.parent / str(json.loads(record)["source_version"]) / model.name
    if not source.is_file():
        raise FileNotFoundError(f"{model} is int8; its float version {source} is not there")
    logger.info("%s is int8: starting from its float version %s", model, source)
    return source


def recorded_split_arguments(provenance: dict[str, str], source: Path) -> argparse.Namespace:
    """Return ``fakescope evaluate``'s split arguments that give the split ``source`` trained with.

    Raises:
        ValueError: ``source`` records no split, or one with a test split.

    """
    recorded = provenance.get("split")
    if not recorded:
        raise ValueError(
            f"{source} records no training split: without its validation faces the int8 "
            "model cannot be judged against it"
        )
    split = json.loads(recorded)
    if split.get("test_faces", 0):
        raise ValueError(f"{source} was trained with a test split; only train/val is supported")
    return argparse.Namespace(
        seed=int(split["seed"]), val_fraction=float(split["val_fraction"]), test_fraction=0.0
    )


def _read_faces(
    data: Path,
    source: Path,
    provenance: dict[str, str],
    calibration_faces: int,
    selection_faces: int,
) -> _Faces:
    """Read the validation, calibration and selection faces of ``data``, split as ``source`` was.

    ``selection_faces`` 0: none (no float blocks to choose).
    """
    from fakescope.pipeline.metadata import read_classifier_spec
    from fakescope.training.cli import _split_entries
    from fakescope.training.face_crops import load_face_crop_set, read_face_crops

    size = read_classifier_spec(source)[0].input_size
    dataset = load_face_crop_set(data)  # DatasetError (a ValueError) for a folder that is not one
    arguments = recorded_split_arguments(provenance, source)
    entries = {}
    for name in ("val", "train"):
        # the selection `fakescope evaluate --split NAME` makes, with its check of the split
        found, code = _split_entries(
            dataset, argparse.Namespace(split=name, **vars(arguments)), provenance
        )
        if code is not None:
            raise ValueError(f"{data}: no {name} faces split as {source} was trained")
        entries[name] = found
    train = {e.name: e for e in entries["train"]}
    chosen = calibration_names(list(train), calibration_faces, CALIBRATION_SEED)
    selection = (
        calibration_names(
            sorted(set(train) - set(chosen)), selection_faces, SELECTION_SEED, "selection faces"
        )
        if selection_faces
        else []
    )
    logger.info(
        "reading %d validation, %d calibration and %d selection faces",
        len(entries["val"]),
        len(chosen),
        len(selection),
    )
    return _Faces(
        val_entries=entries["val"],
        val=read_face_crops(dataset, [e.name for e in entries["val"]], size).crops,
        calibration=read_face_crops(dataset, chosen, size).crops,
        selection=read_face_crops(dataset, selection, size).crops
        if selection
        else np.zeros((0, size, size, 3), np.uint8),
        selection_labels=np.array([int(train[n].is_fake) for n in selection], np.float64),
    )


def _validation_metrics(
    path: Path, faces: _Faces, options: ort.SessionOptions | None = None
) -> dict[str, Any]:
    """Score the classifier on the validation faces; its figures (``BinaryMetrics.to_json``)."""
    from fakescope.training.evaluate import OnnxClassifier, evaluate_face_crops

    classifier = OnnxClassifier(path, session_options=options)
    metrics: dict[str, Any] = evaluate_face_crops(
        faces.val_entries, faces.val, classifier
    ).metrics.to_json()
    return metrics


def _quality(metrics: dict[str, Any]) -> Quality:
    if metrics["auc"] is None or metrics["logloss"] is None:
        raise ValueError("the validation faces hold one class only: no AUC to judge by")
    return Quality(auc=float(metrics["auc"]), logloss=float(metrics["logloss"]))


def _set_provenance(path: Path, entries: dict[str, str]) -> None:
    """Write ``entries`` into the model's provenance metadata, replacing keys it holds."""
    model = onnx.load(str(path))
    keys = {contract.META_PROVENANCE_PREFIX + key: value for key, value in entries.items()}
    kept = [p for p in model.metadata_props if p.key not in keys]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in keys.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))


def _same_graph(first: Path, second: Path) -> bool:
    """Whether two ONNX files hold the same graph (operators and weights; metadata aside)."""
    return (
        onnx.load(str(first)).graph.SerializeToString()
        == onnx.load(str(second)).graph.SerializeToString()
    )


def export_quantized_version(
    repository: Path,
    data: Path,
    *,
    calibration_faces: int = CALIBRATION_FACES,
    selection_faces: int = SELECTION_FACES,
    float_block_count: int = FLOAT_BLOCKS,
    tolerance: float = TOLERANCE,
) -> int:
    """Publish the int8 model of the served classifier's float version as the next version.

    The float version is the served one, or where that is int8 already, the float version it was
    made from (:func:`float_source`): quantizing again applies this module's recipe as it now
    is. ``data`` is the face-crop set the float version was trained on (its recorded split gives
    the training and validation faces). The model is built in a staging folder, judged on the
    validation faces and renamed into place only when :func:`accepted` holds; the config then
    pins it and its card is served (as :func:`fakescope.export.versions.export_new_version`
    does). Returns the new version number.

    Raises:
        FileNotFoundError: no classifier version in ``repository``, or the served int8
            version's float version is gone.
        ValueError: the served version is the int8 model this would publish, or the float
            version records no split, or ``data`` is not its face-crop set, or a face count is
            out of range.
        RuntimeError: the int8 model does not keep the float model's quality (nothing is left
            behind; the figures are in the message).

    """
    from fakescope.benchmarks.machine import cpu_facts
    from fakescope.export.model_card import model_card
    from fakescope.export.provenance import git_commit
    from fakescope.export.versions import CARD, list_versions, publishing, served_version
    from fakescope.pipeline.metadata import read_classifier_spec, read_provenance
    from fakescope.training.cli import AT_SERVED_THRESHOLD, face_crop_limitations

    repository = Path(repository)
    folder = repository / contract.CLASSIFIER_MODEL
    served = folder / str(served_version(repository)) / "model.onnx"
    source = float_source(served)
    source_version = int(source.parent.name)
    provenance = read_provenance(source)
    if float_block_count < 0:
        raise ValueError(f"float blocks must be >= 0, got {float_block_count}")
    faces = _read_faces(
        Path(data),
        source,
        provenance,
        calibration_faces,
        selection_faces if float_block_count else 0,
    )
    version = list_versions(repository)[-1] + 1
    with publishing(folder, version) as staging:
        blocks: list[str] = []
        losses: dict[str, float] = {}
        if float_block_count:
            logger.info("choosing %d float blocks", float_block_count)
            blocks, losses = choose_float_blocks(
                source,
                staging,
                faces.calibration,
                faces.selection,
                faces.selection_labels,
                count=float_block_count,
                method=CALIBRATION_METHOD,
            )
        target = staging / "model.onnx"
        scalars = quantize(
            source,
            target,
            faces.calibration,
            float_head=True,
            method=CALIBRATION_METHOD,
            seven_bit_weights=True,
            float_blocks=blocks,
        )
        if served != source and _same_graph(target, served):
            raise ValueError(
                f"face_classifier version {served.parent.name} is this recipe's int8 model of "
                f"version {source_version} already; nothing published"
            )
        logger.info(
            "judging version %d against %d on %d faces", version, source_version, len(faces.val)
        )
        served_metrics = _validation_metrics(target, faces)
        reference = _quality(_validation_metrics(source, faces))
        this_cpu = _quality(served_metrics)
        own = _quality(_validation_metrics(target, faces, own_arithmetic_options()))
        passed = accepted(reference, this_cpu, own, tolerance=tolerance)
        verdict = (
            f"float AUC {reference.auc:.4f} LogLoss {reference.logloss:.4f}; int8 on this CPU "
            f"{this_cpu.auc:.4f} / {this_cpu.logloss:.4f}, in its own arithmetic "
            f"{own.auc:.4f} / {own.logloss:.4f} ({len(faces.val)} validation faces)"
        )
        if not passed:
            raise RuntimeError(
                f"the int8 model does not keep the float model's quality within {tolerance}: "
                f"{verdict}; nothing published"
            )
        import onnxruntime as ort

        record = {
            "source_version": source_version,
            "format": "QDQ (ONNX Runtime static quantization)",
            "weights": "int8 per channel, 7 bits",
            "activations": "uint8, asymmetric",
            "calibration": {
                "method": CALIBRATION_METHOD,
                "faces": calibration_faces,
                "split": "train",
                "seed": CALIBRATION_SEED,
            },
            "float_nodes": "the head (fully connected layer, temperature, sigmoid) and blocks "
            + (", ".join(blocks) or "none"),
            "float_blocks": blocks,
            "scalar_normalisation": scalars,
            "selection": {
                "faces": selection_faces if float_block_count else 0,
                "seed": SELECTION_SEED,
                "logloss": losses,
            },
            "validation_faces": len(faces.val),
            "tolerance": tolerance,
            "float": vars(reference),
            "int8_this_cpu": vars(this_cpu),
            "int8_own_arithmetic": vars(own),
            "onnxruntime": ort.__version__,
            "exporting_cpu": cpu_facts(),
        }
        # the scope statement that travels with the model (config, CLI, web page) states this
        # model's own validation figures, as training stated the float model's
        split = json.loads(provenance["split"])
        limitations = face_crop_limitations(
            served_metrics, split["val_originals"], served_metrics["threshold"], AT_SERVED_THRESHOLD
        )
        _set_provenance(
            target,
            {
                "limitations": limitations,
                QUANTIZATION_KEY: json.dumps(record, sort_keys=True),
                "quantize_command": f"fakescope export --quantize {data}",
                "quantize_git_commit": git_commit(),
            },
        )
        spec, trained = read_classifier_spec(target)
        (staging / CARD).write_text(model_card(spec, trained, read_provenance(target), version))
    logger.info(
        "published the int8 model of version %d as version %d: %s", source_version, version, verdict
    )
    return version
