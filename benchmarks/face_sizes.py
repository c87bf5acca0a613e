"""How large real faces are at detection scale, and what a larger minimum face would cost them.

Issue #14 asks to bound the P-Net pyramid by a minimum face size relative to the frame "where the
data allows". The data is ``dfdc_faces/metadata.csv``: each face crop's side in its video's
pixels (``original_width``/``original_height``). A crop is not a detector box: the served
framing, calibrated on that data (``face_margin`` in the classifier's metadata), cuts a square
of side ``box * (1 + 2 * face_margin)`` around our MTCNN box, so a crop of side ``c`` holds a box
of side ``c / (1 + 2 * face_margin)``. ``metadata.csv`` does not give the videos' frame sizes:
``--frame-long-side`` is assumed for all of them (1920: DFDC's videos are 1920x1080 or
1080x1920, as are the DFDC videos of ``dfdc_sample``). The client downscales to its
``--max-side`` and the detector to ``detection_max_side``, so a box of side ``b`` is seen at
``b * detection_max_side / frame_long_side`` pixels.

For each candidate minimum face (the served one and larger): the share of the data's faces
below it at detection scale (those MTCNN is not built to find) and the pixels P-Net reads per
frame (the sum of its pyramid levels, :func:`fakescope.pipeline.mtcnn.pyramid_scales`) relative
to the served minimum.

Run: ``python -m fakescope.benchmarks.face_sizes`` (writes ``benchmarks/results/face_sizes.json``
and its table, ``face_sizes.md``).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fakescope import contract
from fakescope.benchmarks.arguments import DFDC_FACES
from fakescope.benchmarks.result_files import write_result
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.pipeline.metadata import read_classifier_spec
from fakescope.pipeline.mtcnn import pyramid_scales
from fakescope.serving.model_config import detector_params, served_version_dir

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "face_sizes.json"
METADATA = DFDC_FACES / "metadata.csv"
#: Minimum faces (pixels at detection scale) compared with the served one.
CANDIDATES = (40, 48, 56, 64, 80)
PERCENTILES = (1, 5, 10, 25, 50)


def crop_sides(metadata: Path) -> NDArray[np.float64]:
    """Return the long side of every face crop in ``metadata`` (pixels of its video).

    Raises:
        ValueError: the file lacks the size columns, or a size is not a positive integer.

    """
    with metadata.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"original_width", "original_height"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{metadata}: no column {', '.join(sorted(missing))}")
        sides = []
        for line, row in enumerate(reader, start=2):
            try:
                side = max(int(row["original_width"]), int(row["original_height"]))
            except ValueError:
                raise ValueError(f"{metadata}:{line}: the crop size is not an integer") from None
            if side <= 0:
                raise ValueError(f"{metadata}:{line}: crop size {side} is not positive")
            sides.append(side)
    if not sides:
        raise ValueError(f"{metadata} holds no face")
    return np.asarray(sides, np.float64)


def pnet_pixels(height: int, width: int, min_face: float, factor: float) -> int:
    """Pixels of every P-Net pyramid level of one ``height`` x ``width`` frame."""
    return sum(
        math.ceil(height * s) * math.ceil(width * s)
        for s in pyramid_scales(height, width, min_face, factor)
    )


def measure(
    sides: NDArray[np.float64],
    *,
    face_margin: float,
    frame_long_side: int,
    detection_max_side: int,
    detection_short_side: int,
    factor: float,
    served_min_face: int,
) -> dict[str, Any]:
    """Box sides at detection scale, and per candidate minimum the faces below it and P-Net cost."""
    at_detection = sides / (1.0 + 2.0 * face_margin) * detection_max_side / frame_long_side
    served_pixels = pnet_pixels(detection_short_side, detection_max_side, served_min_face, factor)
    rows = []
    for min_face in sorted({served_min_face, *CANDIDATES}):
        pixels = pnet_pixels(detection_short_side, detection_max_side, min_face, factor)
        rows.append(
            {
                "min_face_px": min_face,
                "faces_below": float(np.mean(at_detection < min_face)),
                "pnet_pixels_vs_served": pixels / served_pixels,
            }
        )
    return {
        "faces": len(sides),
        "box_px_at_detection_percentiles": {
            str(p): float(np.percentile(at_detection, p)) for p in PERCENTILES
        },
        "candidates": rows,
    }


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``face_sizes.json`` as a table."""
    method = result["method"]
    quantiles = ", ".join(
        f"p{p} {v:.0f}" for p, v in result["box_px_at_detection_percentiles"].items()
    )
    lines = [
        "# Real faces at detection scale",
        "",
        f"Written by `python -m fakescope.benchmarks.face_sizes`; do not edit. {result['faces']} "
        f"face crops of `dfdc_faces/metadata.csv`; box side = crop side / (1 + 2 x "
        f"{method['face_margin']:.4f}) (the served framing); videos assumed "
        f"{method['frame_long_side']} px on the long side (not in the metadata), seen by the "
        f"detector at {method['detection_max_side']} px (served `detection_max_side`); P-Net "
        f"pixels per {method['detection_max_side']}x{method['detection_short_side']} frame, "
        f"scale factor {method['factor']}. Box side at detection scale, pixels: {quantiles}.",
        "",
        "| minimum face (px at detection) | faces of the data below it | P-Net pixels vs served |",
        "|---|---|---|",
    ]
    for row in result["candidates"]:
        served = " (served)" if row["min_face_px"] == method["served_min_face"] else ""
        lines.append(
            f"| {row['min_face_px']}{served} | {100 * row['faces_below']:.1f} % "
            f"| {row['pnet_pixels_vs_served']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file; exit 2 when the metadata cannot be read."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata", type=Path, default=METADATA)
    parser.add_argument("--frame-long-side", type=int, default=1920)
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    if args.frame_long_side < 1:
        parser.error("--frame-long-side must be positive")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sides = crop_sides(args.metadata)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    params = detector_params(args.repository)
    if params.max_side is None:
        parser.error("the served detector has no detection_max_side: faces keep their size")
    spec, _ = read_classifier_spec(
        served_version_dir(args.repository / contract.CLASSIFIER_MODEL) / "model.onnx"
    )
    # the short side of a 16:9 frame at detection scale, as the benchmark videos are
    short_side = round(params.max_side * 9 / 16)
    method = {
        "metadata": str(args.metadata),
        "face_margin": spec.face_margin,
        "frame_long_side": args.frame_long_side,
        "detection_max_side": params.max_side,
        "detection_short_side": short_side,
        "factor": params.factor,
        "served_min_face": params.min_face_size,
    }
    result = measure(
        sides,
        face_margin=spec.face_margin,
        frame_long_side=args.frame_long_side,
        detection_max_side=params.max_side,
        detection_short_side=short_side,
        factor=params.factor,
        served_min_face=params.min_face_size,
    )
    result["method"] = method
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
