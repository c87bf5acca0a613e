"""The classifier's model card, written by code from what the code measured.

A card is rendered from the model's own record (the spec and provenance that training wrote
into the checkpoint and the export copied into the ONNX metadata) and, once the exported
version has been evaluated, from the evaluation reports (``metrics.json`` files written by
``fakescope evaluate``) in a results folder. No figure in a card is typed by hand:
``fakescope model-card VERSION --results DIR`` renders it again, and a test checks that the
committed card is what that command writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fakescope.export.classifier import PARITY_TOLERANCE
from fakescope.pipeline.metadata import ClassifierSpec

__all__ = ["load_results", "model_card"]

#: Metrics shown for each set, in this order.
_METRICS = ("auc", "logloss", "recall", "precision", "accuracy")


def load_results(results: Path, root: Path) -> dict[str, dict[str, Any]]:
    """Every ``*/metrics.json`` under ``results``, keyed by its path relative to ``root``.

    (Absolute when ``results`` is outside ``root``.)
    """
    found = {}
    root = Path(root).resolve()
    for path in sorted(Path(results).resolve().glob("*/metrics.json")):
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        found[shown.as_posix()] = json.loads(path.read_text())
    if not found:
        raise FileNotFoundError(f"no */metrics.json under {results}")
    return found


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)


def _measured(results: Mapping[str, dict[str, Any]]) -> list[str]:
    lines = [
        "## Measured (by `fakescope evaluate` on this version, as served)",
        "",
        "| set | unit | n | "
        + " | ".join(_METRICS)
        + " | threshold | confusion [[TN, FP], [FN, TP]] |",
        "|---|---|---|" + "---|" * len(_METRICS) + "---|---|",
    ]
    for path, report in results.items():
        name = Path(path).parent.name
        matrix = (report.get("confusion_matrix") or {}).get("matrix")
        cells = [_fmt(report.get(m)) for m in _METRICS]
        lines.append(
            f"| [{name}]({path}) | {report.get('unit', 'video')} | {report.get('n')} | "
            + " | ".join(cells)
            + f" | {_fmt(report.get('threshold'))} | {matrix} |"
        )
    lines.append("")
    for path, report in results.items():
        name = Path(path).parent.name
        data = report.get("data_dir", "?")
        split = report.get("split", "all")
        lines.append(f"- {name}: `{Path(data).name}`, split `{split}`; report `{path}`")
        roc = (report.get("report_files") or {}).get("roc")
        if roc:
            lines.append(f"  (ROC curve: `{Path(path).parent.as_posix()}/{Path(roc).name}`)")
    return lines


def _training_rows(provenance: Mapping[str, str]) -> list[str]:
    rows = []
    for key in sorted(k for k in provenance if "_metrics" in k):
        try:
            metrics = json.loads(provenance[key])
        except json.JSONDecodeError:
            continue
        shown = ", ".join(f"{m} {_fmt(metrics.get(m))}" for m in (*_METRICS, "threshold", "n"))
        rows.append(f"| {key.replace('_', ' ')} | {shown} |")
    return rows


def _framing_line(framing: Mapping[str, Any]) -> str:
    videos = ", ".join(f"`{Path(v['video']).name}`" for v in framing["videos"])
    return (
        f"  (calibrated on {framing['faces']} faces of {videos}: our MTCNN, run again on the "
        f"served crops, finds margin and shift {framing['served']}; in the training data's "
        f"crops {framing['data']})"
    )


def _quantization_line(record: Mapping[str, Any]) -> str:
    """Say what an int8 version was quantized from, how, and why it was published."""
    figures = ", ".join(
        f"{label} AUC {record[key]['auc']:.4f} LogLoss {record[key]['logloss']:.4f}"
        for label, key in (
            ("float", "float"),
            ("int8 on the exporting CPU", "int8_this_cpu"),
            ("int8 in its own arithmetic", "int8_own_arithmetic"),
        )
    )
    return (
        f"- int8 model of version {record['source_version']}: {record['format']}; weights "
        f"{record['weights']}; activations {record['activations']}; "
        f"{record['calibration']['method']} calibration on {record['calibration']['faces']} "
        f"faces of the train split; float: {record['float_nodes']}"
        + (
            "; input normalisation with scalar constants (equal in every channel)"
            if record.get("scalar_normalisation")
            else ""
        )
        + ". Published because it keeps "
        f"the float model's quality within {record['tolerance']} on the "
        f"{record['validation_faces']} validation faces: {figures}"
    )


def model_card(
    spec: ClassifierSpec,
    trained: bool,
    provenance: Mapping[str, str],
    version: int,
    results: Mapping[str, dict[str, Any]] | None = None,
) -> str:
    """Render the model card of a classifier version (provenance, metrics, reproduction)."""
    p = dict(provenance)
    status = "trained" if trained else "UNTRAINED"
    code = p.pop("git_commit", "unknown")
    if "export_git_commit" in p:  # exported by later code than the run that trained it
        code = f"{code} (training), {p.pop('export_git_commit')} (export)"
    lines = [
        f"# face_classifier, version {version} — {status}",
        "",
        f"- architecture: `{spec.arch}`, input {spec.input_size}×{spec.input_size} RGB uint8, "
        f"mean {list(spec.mean)}, std {list(spec.std)} (applied inside the ONNX graph)",
        f"- face crop: square side max(box w, h) × (1 + 2 × {spec.face_margin}), centre shifted "
        f"by {list(spec.face_shift)} × that side (x, y)",
        f"- starting weights: {p.pop('initial_weights', 'unknown')}",
        f"- trained on: {p.pop('trained_on', 'see data_version')}",
        f"- data version: {p.pop('data_version', 'unknown')}",
        f"- served decision threshold: {spec.threshold!r} on the fake probability "
        f"({p.pop('threshold_rule', 'no rule recorded')}); temperature {spec.temperature!r}",
        f"- code: git commit {code}",
        f"- ONNX Runtime vs PyTorch: max |logit difference| ≤ {PARITY_TOLERANCE:.0e} "
        "(PARITY_TOLERANCE), checked at export on real face crops",
    ]
    quantization = p.pop("quantization", None)
    if quantization:
        lines[-1] = _quantization_line(json.loads(quantization))
        if "quantize_git_commit" in p:
            lines[-2] += f", {p.pop('quantize_git_commit')} (quantization)"
    framing = p.pop("framing_calibration", None)
    if framing:
        lines.insert(4, _framing_line(json.loads(framing)))
    p.pop("threshold", None)
    p.pop("temperature", None)
    if results:
        lines += ["", *_measured(results)]
    rows = _training_rows(p)
    if rows:
        lines += ["", "## Training run (validation faces, recorded by `fakescope train`)", ""]
        lines += ["| set | values |", "|---|---|", *rows]
    for key in [k for k in p if "_metrics" in k]:
        p.pop(key)
    command = p.pop("command", None)
    reproduce = p.pop("reproduce", None)
    later = [p.pop(key) for key in ("export_command", "quantize_command") if key in p]
    if reproduce or command:
        steps = [reproduce or command or "", *later]
        lines += ["", "## Reproduce", "", "```sh", *steps, "```"]
    limits = p.pop("limitations", None)
    if limits:
        lines += ["", "## What it can and cannot tell", "", limits]
    splits = p.pop("splits", None)
    if splits:
        sizes = {k: len(v) for k, v in json.loads(splits).items()}
        p["splits"] = f"videos per split {sizes} (names in the ONNX metadata)"
    lines += ["", "## Provenance", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(p.items())]
    return "\n".join(lines) + "\n"
