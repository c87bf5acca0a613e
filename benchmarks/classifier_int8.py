"""An int8 face classifier: what it costs in quality and buys in speed (issue #14, item 3).

The float ``face_classifier`` (the newest version folder of the model repository or, where
that is an int8 version, the float version it was made from) is quantized with ONNX
Runtime's static quantization (QDQ, int8 weights per channel, uint8 activations), calibrated on
``--calibration-faces`` faces drawn from the TRAIN split of the face-crop set
(``../shared/data/dfdc_faces``). Variants:

* ``float``: the float model, unchanged (its temperature and threshold were fitted on the
  validation faces at training time);
* ``int8-all``: every operator quantized, the two outputs (logit, probability) included;
* ``int8``: the backbone quantized, the head (``Gemm``, the temperature ``Div``, ``Sigmoid``)
  kept in float, so the outputs are not rounded to 256 levels;
* ``int8-7bit``: as ``int8``, with weights of 7 bits (``reduce_range``). On a CPU without VNNI
  (``avx512_vnni`` / ``avx_vnni`` in :func:`~fakescope.benchmarks.machine.cpu_facts`) ONNX
  Runtime's int8 kernels multiply uint8 activations by int8 weights with 16-bit intermediate
  sums, which can saturate; 7-bit weights cannot;
* ``int8-mixed``: as ``int8-7bit``, with ``--float-blocks`` of the backbone's blocks kept in
  float: those whose quantization costs the most LogLoss, chosen on ``--selection-faces``
  faces of the TRAIN split that are not calibration faces (each block kept in float alone,
  :func:`choose_float_blocks`), so the validation faces play no part in the choice: the recipe
  ``fakescope export --quantize`` publishes (:mod:`fakescope.export.quantize`);
* ``float+T`` and ``int8+T``: the same models with a temperature refitted on the calibration
  faces (:func:`fakescope.training.calibration.fit_temperature`, appended to the graph, so the
  file itself is the calibrated model). Each model is calibrated on the same training faces,
  none on the validation faces, and ``int8+T`` is judged against ``float+T``.

Every variant is scored on the same validation faces by the code of
``fakescope evaluate DATA --split val`` with the split the float model recorded in its
provenance (the quality work's, Makefile ``SPLIT_ARGS``): its split selection,
:func:`~fakescope.training.face_crops.read_face_crops` and
:func:`~fakescope.training.evaluate.evaluate_face_crops`. A variant is accepted when its AUC is
at most ``0.005`` lower and its LogLoss at most ``0.005`` higher than its reference's
(:func:`accepted`). A quantized variant is scored twice: as ONNX Runtime runs it on this CPU
(its fused int8 kernels), and in the model's own arithmetic (graph optimisations off, so each
``QuantizeLinear`` / ``DequantizeLinear`` pair and float operator runs as written: what a CPU
whose kernels do not saturate gives). It is accepted only when both pass: where the figures
differ, the int8 model's quality depends on the server's CPU. Time: ONNX Runtime with 2
intra-op threads and idle threads sleeping (the served backend's setting), batches of 16 and 32
validation faces, all models interleaved round by round so a busy neighbour slows them alike;
median of ``--rounds``.

Run: ``python -m fakescope.benchmarks.classifier_int8`` (writes
``benchmarks/results/classifier_int8.json`` and its table ``classifier_int8.md``). Exit 0 once
measured, whatever the verdict; 2 when the face-crop set is absent.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper

from fakescope import contract
from fakescope.benchmarks.arguments import DFDC_FACES
from fakescope.benchmarks.machine import cpu_facts, describe_cpu
from fakescope.benchmarks.result_files import write_result
from fakescope.export.quantize import (
    CALIBRATION_FACES,
    CALIBRATION_METHOD,
    CALIBRATION_SEED,
    FLOAT_BLOCKS,
    SELECTION_FACES,
    SELECTION_SEED,
    TOLERANCE,
    Quality,
    accepted,
    calibration_names,
    choose_float_blocks,
    classifier_logits,
    float_source,
    head_nodes,
    own_arithmetic_options,
    quantize,
    recorded_split_arguments,
)
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.pipeline.onnx_session import cpu_session_options

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "classifier_int8.json"
DEFAULT_DATA = DFDC_FACES
INTRA_OP_THREADS = 2
TIMED_BATCHES = (16, 32)
WARMUP_ROUNDS = 3
EXIT_NO_DATA = 2


def with_extra_temperature(model: onnx.ModelProto, temperature: float) -> onnx.ModelProto:
    """Return a copy of ``model`` whose logit is divided by ``temperature`` once more.

    The division goes in front of everything that reads the logit (the probability too), and
    the metadata's temperature becomes the product, so the file describes itself.

    Raises:
        ValueError: when ``temperature`` is not positive or no single node writes the logit.

    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    out = copy.deepcopy(model)
    logit = contract.CLASSIFIER_LOGIT
    writers = [i for i, n in enumerate(out.graph.node) if logit in n.output]
    if len(writers) != 1:
        raise ValueError(f"expected one node writing {logit}, found {len(writers)}")
    writer = out.graph.node[writers[0]]
    before = f"{logit}_before_refit"
    writer.output[list(writer.output).index(logit)] = before
    divisor = numpy_helper.from_array(np.array(temperature, np.float32), "refit_temperature")
    out.graph.initializer.append(divisor)
    out.graph.node.insert(
        writers[0] + 1,
        helper.make_node("Div", [before, divisor.name], [logit], name="/refit_temperature/Div"),
    )
    for prop in out.metadata_props:
        if prop.key == contract.META_TEMPERATURE:
            prop.value = repr(float(prop.value) * temperature)
    return out


# --- building the variants ----------------------------------------------------------------------


def refit_temperature(
    source: Path, target: Path, crops: NDArray[Any], labels: NDArray[Any]
) -> float:
    """Fit a temperature on ``source``'s logits of ``crops``; write the calibrated model."""
    from fakescope.training.calibration import fit_temperature

    temperature = fit_temperature(labels, classifier_logits(source, crops))
    onnx.save(with_extra_temperature(onnx.load(str(source)), temperature), str(target))
    return temperature


# --- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One measured model."""

    name: str
    description: str
    path: Path
    reference: str | None  #: the variant it is judged against; ``None``: it is a reference
    refit_temperature: float | None = None
    quantized: bool = True


@dataclass(frozen=True)
class Timing:
    """ms per batch of one size: wall median and minimum, CPU median (all threads)."""

    wall_median: float
    wall_min: float
    cpu_median: float


def time_models(
    paths: dict[str, Path], faces: NDArray[Any], rounds: int
) -> dict[str, dict[int, Timing]]:
    """Time each model on batches of each :data:`TIMED_BATCHES` size, interleaved.

    Per round every model runs every batch once, so a busy neighbour slows all alike. CPU time
    is this process's (ONNX Runtime's threads included): what a saturated server pays, and far
    less disturbed by other work on the machine than wall time.
    """
    import onnxruntime as ort

    sessions = {}
    for name, path in paths.items():
        sessions[name] = ort.InferenceSession(
            str(path), cpu_session_options(INTRA_OP_THREADS), providers=["CPUExecutionProvider"]
        )
    batches = {size: np.ascontiguousarray(faces[:size]) for size in TIMED_BATCHES}
    wall: dict[str, dict[int, list[float]]] = {n: {s: [] for s in batches} for n in sessions}
    cpu: dict[str, dict[int, list[float]]] = {n: {s: [] for s in batches} for n in sessions}
    for warm in (True, False):
        for _ in range(WARMUP_ROUNDS if warm else rounds):
            for name, session in sessions.items():
                for size, batch in batches.items():
                    started, started_cpu = time.perf_counter(), time.process_time()
                    session.run(None, {contract.CLASSIFIER_INPUT: batch})
                    if not warm:
                        wall[name][size].append((time.perf_counter() - started) * 1000.0)
                        cpu[name][size].append((time.process_time() - started_cpu) * 1000.0)
    return {
        n: {
            s: Timing(statistics.median(wall[n][s]), min(wall[n][s]), statistics.median(cpu[n][s]))
            for s in batches
        }
        for n in sessions
    }


def measure(
    data: Path,
    model_source: Path,
    workdir: Path,
    *,
    count: int,
    method: str,
    rounds: int,
    selection_count: int = SELECTION_FACES,
    float_block_count: int = FLOAT_BLOCKS,
) -> dict[str, Any] | int:
    """Build, evaluate and time the variants; the result, or the exit code of a data error."""
    import onnxruntime as ort

    from fakescope.training.cli import _split_entries
    from fakescope.training.dataset import DatasetError
    from fakescope.training.evaluate import OnnxClassifier, evaluate_face_crops, resolve_model
    from fakescope.training.face_crops import load_face_crop_set, read_face_crops

    started = time.monotonic()
    loadavg_before = os.getloadavg()
    float_model = float_source(resolve_model(model_source, workdir))
    classifier = OnnxClassifier(float_model)
    size = classifier.spec.input_size
    try:
        dataset = load_face_crop_set(data)
    except DatasetError as exc:
        logger.error("%s", exc)
        return 1

    # the split the float model was trained with, as its provenance records it
    try:
        recorded = recorded_split_arguments(classifier.provenance, float_model)
    except ValueError as exc:
        logger.error("%s", exc)
        return 1

    def split(name: str) -> Any:
        # the selection of `fakescope evaluate --split NAME`, its check of the recorded split too
        args = argparse.Namespace(split=name, **vars(recorded))
        return _split_entries(dataset, args, classifier.provenance)

    val_entries, code = split("val")
    if code is not None:
        return int(code)
    train_entries, code = split("train")
    if code is not None:
        return int(code)
    by_name = {e.name: e for e in train_entries}
    chosen = calibration_names(list(by_name), count, CALIBRATION_SEED)
    logger.info("reading %d validation and %d calibration faces", len(val_entries), count)
    val_crops = read_face_crops(dataset, [e.name for e in val_entries], size).crops
    calibration = read_face_crops(dataset, chosen, size).crops
    selection = calibration_names(
        sorted(set(by_name) - set(chosen)), selection_count, SELECTION_SEED, "selection faces"
    )
    selection_crops = read_face_crops(dataset, selection, size).crops
    selection_labels = np.array([int(by_name[n].is_fake) for n in selection], np.float64)
    calibration_labels = np.array([int(by_name[n].is_fake) for n in chosen], np.float64)

    paths = {"float": float_model}
    for name, float_head, seven_bit in (
        ("int8-all", False, False),
        ("int8", True, False),
        ("int8-7bit", True, True),
    ):
        logger.info("quantizing: %s", name)
        paths[name] = workdir / f"{name}.onnx"
        quantize(
            float_model,
            paths[name],
            calibration,
            float_head=float_head,
            method=method,
            seven_bit_weights=seven_bit,
        )
    logger.info("choosing %d float blocks on %d training faces", float_block_count, selection_count)
    float_blocks, block_losses = choose_float_blocks(
        float_model,
        workdir,
        calibration,
        selection_crops,
        selection_labels,
        count=float_block_count,
        method=method,
    )
    paths["int8-mixed"] = workdir / "int8-mixed.onnx"
    quantize(
        float_model,
        paths["int8-mixed"],
        calibration,
        float_head=True,
        method=method,
        seven_bit_weights=True,
        float_blocks=float_blocks,
    )
    temperatures = {}
    for base in ("float", "int8"):
        paths[f"{base}+T"] = workdir / f"{base}-refit.onnx"
        temperatures[f"{base}+T"] = refit_temperature(
            paths[base], paths[f"{base}+T"], calibration, calibration_labels
        )
    variants = [
        Variant(
            "float",
            "float model (temperature fitted on validation)",
            paths["float"],
            None,
            quantized=False,
        ),
        Variant("int8-all", "every op int8, outputs included", paths["int8-all"], "float"),
        Variant("int8", "backbone int8, head float", paths["int8"], "float"),
        Variant(
            "int8-7bit", "backbone int8 with 7-bit weights, head float", paths["int8-7bit"], "float"
        ),
        Variant(
            "int8-mixed",
            f"as int8-7bit, blocks {' and '.join(float_blocks)} float (chosen on training faces)",
            paths["int8-mixed"],
            "float",
        ),
        Variant(
            "float+T",
            "float model, temperature refitted on the calibration faces",
            paths["float+T"],
            None,
            temperatures["float+T"],
            quantized=False,
        ),
        Variant(
            "int8+T",
            "int8 (head float), temperature refitted on the calibration faces",
            paths["int8+T"],
            "float+T",
            temperatures["int8+T"],
        ),
    ]
    quality: dict[str, dict[str, Any]] = {}
    for variant in variants:
        logger.info("evaluating %s on %d validation faces", variant.name, len(val_entries))
        evaluation = evaluate_face_crops(val_entries, val_crops, OnnxClassifier(variant.path))
        quality[variant.name] = {
            "metrics": evaluation.metrics.to_json(),
            "threshold_source": evaluation.threshold_source,
            "youden_threshold_on_this_set": evaluation.youden_threshold,
        }
        if variant.quantized:
            own = OnnxClassifier(
                variant.path, session_options=own_arithmetic_options(INTRA_OP_THREADS)
            )
            metrics = evaluate_face_crops(val_entries, val_crops, own).metrics.to_json()
            quality[variant.name]["metrics_own_arithmetic"] = metrics
    logger.info("timing %d rounds", rounds)
    ms = time_models({v.name: v.path for v in variants}, val_crops, rounds)
    rows = []
    for variant in variants:
        metrics = quality[variant.name]["metrics"]
        row: dict[str, Any] = {
            "variant": variant.name,
            "description": variant.description,
            "reference": variant.reference,
            "refit_temperature": variant.refit_temperature,
            "model_bytes": variant.path.stat().st_size,
            **quality[variant.name],
            **{f"ms_per_{s}_faces": ms[variant.name][s].wall_median for s in TIMED_BATCHES},
            **{f"min_ms_per_{s}_faces": ms[variant.name][s].wall_min for s in TIMED_BATCHES},
            **{f"cpu_ms_per_{s}_faces": ms[variant.name][s].cpu_median for s in TIMED_BATCHES},
            **{
                f"speedup_{s}": ms["float"][s].wall_median / ms[variant.name][s].wall_median
                for s in TIMED_BATCHES
            },
            **{
                f"cpu_speedup_{s}": ms["float"][s].cpu_median / ms[variant.name][s].cpu_median
                for s in TIMED_BATCHES
            },
        }
        if variant.reference is not None:
            ref = quality[variant.reference]["metrics"]
            row["delta_auc"] = metrics["auc"] - ref["auc"]
            row["delta_logloss"] = metrics["logloss"] - ref["logloss"]
            scored = [metrics, quality[variant.name].get("metrics_own_arithmetic", metrics)]
            row["accepted"] = accepted(
                Quality(ref["auc"], ref["logloss"]),
                *(Quality(m["auc"], m["logloss"]) for m in scored),
            )
        rows.append(row)
    return {
        "model": str(float_model.relative_to(PROJECT_ROOT))
        if float_model.is_relative_to(PROJECT_ROOT)
        else str(float_model),
        "model_version": float_model.parent.name,
        "served_temperature": classifier.spec.temperature,
        "data": {
            "dir": str(data.resolve()),
            "split": vars(recorded),
            "val_faces": len(val_entries),
            "calibration_faces": count,
            "calibration_split": "train",
            "calibration_seed": CALIBRATION_SEED,
            "calibration_fake_share": float(calibration_labels.mean()),
        },
        "mixed_precision": {
            "float_blocks": float_blocks,
            "selection_faces": selection_count,
            "selection_split": "train, none of them calibration faces",
            "selection_seed": SELECTION_SEED,
            "selection_logloss_by_float_block": block_losses,
            "rule": "each backbone block kept in float alone (7-bit weights elsewhere, head "
            "float); the blocks whose model has the lowest LogLoss on the selection faces",
        },
        "quantization": {
            "format": "QDQ",
            "weights": "int8, per channel",
            "activations": "uint8, asymmetric",
            "calibration_method": method,
            "float_head_nodes": head_nodes(onnx.load(str(float_model))),
        },
        "acceptance": {
            "tolerance": TOLERANCE,
            "rule": "AUC at most tolerance lower and LogLoss at most tolerance higher than the "
            "reference variant's, on the same validation faces",
        },
        "timing": {
            "intra_op_threads": INTRA_OP_THREADS,
            "allow_spinning": False,
            "rounds": rounds,
            "warmup_rounds": WARMUP_ROUNDS,
            "statistic": "median ms per batch (wall and process CPU); minimum wall ms too",
        },
        "variants": rows,
        "machine": {
            **cpu_facts(),
            "cores": os.cpu_count(),
            "onnxruntime": ort.__version__,
            "loadavg_before": loadavg_before,
            "loadavg_after": os.getloadavg(),
        },
        "seconds": time.monotonic() - started,
    }


# --- report -------------------------------------------------------------------------------------


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.4f}"


def render_markdown(result: dict[str, Any]) -> str:
    """Render the table of ``result``: quality, deltas, time and verdict per variant."""
    data, timing = result["data"], result["timing"]
    lines = [
        "# int8 face classifier (written by `fakescope.benchmarks.classifier_int8` from "
        "classifier_int8.json)",
        "",
        f"Classifier v{result['model_version']} quantized with ONNX Runtime "
        f"{result['machine']['onnxruntime']} ({result['quantization']['format']}, "
        f"{result['quantization']['weights']} weights, {result['quantization']['activations']} "
        f"activations, {result['quantization']['calibration_method']} calibration on "
        f"{data['calibration_faces']} faces of the train split). Quality on the "
        f"{data['val_faces']} validation faces (seed {data['split']['seed']}, val fraction "
        f"{data['split']['val_fraction']}); time: median of {timing['rounds']} interleaved "
        f"rounds, {timing['intra_op_threads']} intra-op threads, {result['machine']['cores']} "
        f"cores ({describe_cpu(result['machine'])}), load "
        f"{result['machine']['loadavg_before'][0]:.2f} at start and "
        f"{result['machine']['loadavg_after'][0]:.2f} at the end; CPU ms counts all threads, "
        "speed-ups are against `float`. Accepted: AUC at most "
        f"{result['acceptance']['tolerance']} lower and LogLoss at most "
        f"{result['acceptance']['tolerance']} higher than the reference variant's, "
        "both on this CPU and in the model's own arithmetic (ONNX Runtime's graph optimisations "
        "off: no fused int8 kernels, so no dependence on the CPU's int8 instructions).",
        "",
        "| variant | what | reference | AUC | LogLoss | ΔAUC | ΔLogLoss "
        "| AUC / LogLoss, own arithmetic | ms / 16 faces "
        "| ms / 32 faces | CPU ms / 16 faces | speed-up (16, wall) | speed-up (16, CPU) "
        "| accepted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["variants"]:
        m = row["metrics"]
        own = row.get("metrics_own_arithmetic")
        own_text = "–" if own is None else f"{own['auc']:.4f} / {own['logloss']:.4f}"
        verdict = "reference" if row["reference"] is None else "yes" if row["accepted"] else "no"
        lines.append(
            f"| {row['variant']} | {row['description']} | {row['reference'] or '–'} "
            f"| {m['auc']:.4f} | {m['logloss']:.4f} | {_signed(row.get('delta_auc'))} "
            f"| {_signed(row.get('delta_logloss'))} | {own_text} | {row['ms_per_16_faces']:.1f} "
            f"| {row['ms_per_32_faces']:.1f} | {row['cpu_ms_per_16_faces']:.1f} "
            f"| {row['speedup_16']:.2f}x | {row['cpu_speedup_16']:.2f}x | {verdict} |"
        )
    refits = [r for r in result["variants"] if r["refit_temperature"] is not None]
    if refits:
        factors = ", ".join(f"{r['variant']} ×{r['refit_temperature']:.3f}" for r in refits)
        lines += [
            "",
            f"Refitted temperatures (dividing the served logit, whose own temperature is "
            f"{result['served_temperature']:.3f}): {factors}. The calibration faces come from "
            "the training split, which the model was trained on"
            + (
                "; a factor below 1 sharpens the probabilities beyond what new faces warrant."
                if any(r["refit_temperature"] < 1 for r in refits)
                else "."
            ),
        ]
    mixed = result.get("mixed_precision")
    if mixed:
        lines += [
            "",
            f"int8-mixed keeps blocks {' and '.join(mixed['float_blocks'])} of the backbone in "
            f"float: of its {len(mixed['selection_logloss_by_float_block'])} blocks, each kept "
            "in float alone, those whose model had the lowest LogLoss on "
            f"{mixed['selection_faces']} faces of the train split that are not calibration "
            "faces; the validation faces play no part in the choice.",
        ]
    taken = [r["variant"] for r in result["variants"] if r.get("accepted")]
    lines += [
        "",
        f"Accepted: {', '.join(taken)}."
        if taken
        else "Accepted: none — the served classifier stays float.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file and its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="face-crop set")
    parser.add_argument(
        "--model",
        type=Path,
        default=MODEL_REPOSITORY,
        help="model repository, face_classifier folder or .onnx (default: the newest version; "
        "an int8 one is measured from the float version it was made from)",
    )
    parser.add_argument("--calibration-faces", type=int, default=CALIBRATION_FACES)
    parser.add_argument(
        "--calibration-method",
        choices=["MinMax", "Entropy", "Percentile"],
        default=CALIBRATION_METHOD,
    )
    parser.add_argument(
        "--selection-faces",
        type=int,
        default=SELECTION_FACES,
        help="training faces (not calibration faces) on which int8-mixed chooses its float blocks",
    )
    parser.add_argument(
        "--float-blocks", type=int, default=FLOAT_BLOCKS, help="blocks int8-mixed keeps in float"
    )
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds per model")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.calibration_faces < 1:
        parser.error("--calibration-faces must be at least 1")
    if args.selection_faces < 1:
        parser.error("--selection-faces must be at least 1")
    if args.float_blocks < 1:
        parser.error("--float-blocks must be at least 1 (int8-7bit is the model without any)")
    if not args.data.is_dir():
        logger.error("%s not found: no real faces to calibrate and validate on; skipped", args.data)
        return EXIT_NO_DATA
    with tempfile.TemporaryDirectory(prefix="classifier-int8-") as work:
        try:
            result = measure(
                args.data,
                args.model,
                Path(work),
                count=args.calibration_faces,
                method=args.calibration_method,
                rounds=args.rounds,
                selection_count=args.selection_faces,
                float_block_count=args.float_blocks,
            )
        except (ValueError, FileNotFoundError) as exc:
            logger.error("%s", exc)
            return 1
    if isinstance(result, int):
        return result
    write_result(args.output, result, render_markdown)
    sys.stdout.write(render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
