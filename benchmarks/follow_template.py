"""The side at which a lost face is matched when it is followed: faces kept, detector CPU.

Detection on keyframes follows a face whose carried box O-Net rejects by template matching
(:mod:`fakescope.pipeline.face_tracking`), on grey frames shrunk so that the face is
``follow_template_side`` pixels wide. The match's cost grows with the square of that side; too
small a face loses what tells it from the background. For each video, the client's sample (its
default frame count and size) goes through the served detector parameters in-process with ONNX
Runtime with each side of :data:`SIDES`, and once with ``keyframe_stride`` 1 (the cascade on
every frame: the reference of
:mod:`~fakescope.benchmarks.detector_keyframes`, whose rule counts a face as found). Time is
the detector's CPU time in this process (all threads), the median of ``--runs`` runs, the sides
interleaved run by run so that a busy neighbour slows them alike. Only a face that moves more
than its width between keyframes is followed at all: in these videos the synthetic ones (the
bench videos, the committed 720p sample); the DFDC samples' faces keep their carried boxes, so
there the side changes nothing.

Run: ``python -m fakescope.benchmarks.follow_template`` (writes
``benchmarks/results/follow_template.json`` and its table, ``follow_template.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fakescope.benchmarks.arguments import parse_run_arguments
from fakescope.benchmarks.detector_keyframes import SAME_FACE_IOU, detector_videos, faces_found
from fakescope.benchmarks.machine import describe_cpu, machine_facts
from fakescope.benchmarks.result_files import code_version, fmt, write_result
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.video import sample_frames
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.pipeline.mtcnn import (
    FaceDetections,
    MtcnnNets,
    MtcnnParams,
    OnnxRuntimeMtcnnNets,
    detect_faces,
)
from fakescope.serving.model_config import detector_params

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "follow_template.json"
#: The sides measured, in pixels.
SIDES = (8, 10, 12, 16, 20)


def _detector_cpu(
    frames: NDArray[np.uint8], nets: MtcnnNets, params: MtcnnParams
) -> tuple[FaceDetections, float]:
    """Detect once; return the faces and this process's CPU seconds."""
    start = time.process_time()
    found = detect_faces(frames, nets, params)
    return found, time.process_time() - start


def measure_video(
    frames: NDArray[np.uint8],
    nets: MtcnnNets,
    served: MtcnnParams,
    sides: tuple[int, ...],
    runs: int,
) -> list[dict[str, Any]]:
    """One row per side: faces found against the every-frame cascade, and detector CPU."""
    reference = detect_faces(frames, nets, dataclasses.replace(served, keyframe_stride=1))
    params = {s: dataclasses.replace(served, follow_template_side=s) for s in sides}
    found = {s: detect_faces(frames, nets, params[s]) for s in sides}  # also the warm-up
    cpu: dict[int, list[float]] = {s: [] for s in sides}
    for _ in range(runs):
        for side in sides:
            again, seconds = _detector_cpu(frames, nets, params[side])
            if not np.array_equal(again.boxes, found[side].boxes):
                raise RuntimeError(f"side {side}: the detector gave other boxes on a rerun")
            cpu[side].append(seconds)
    rows = []
    for side in sides:
        hits, ious = faces_found(reference, found[side])
        rows.append(
            {
                "side": side,
                "reference_faces": len(reference),
                "faces": len(found[side]),
                "found": hits,
                "extra_faces": len(found[side]) - hits,
                "mean_iou": statistics.fmean(ious) if ious else None,
                "min_iou": min(ious) if ious else None,
                "detector_cpu_s": statistics.median(cpu[side]),
            }
        )
    return rows


def measure(videos: list[Path], sides: tuple[int, ...], runs: int) -> dict[str, Any]:
    """Every video's rows (:func:`measure_video`) and the totals per side."""
    nets = OnnxRuntimeMtcnnNets(MODEL_REPOSITORY)
    served = detector_params(MODEL_REPOSITORY)
    per_video = {}
    for video in videos:
        frames = sample_frames(video, DEFAULT_NUM_FRAMES, max_side=DEFAULT_MAX_SIDE).frames
        per_video[video.name] = measure_video(frames, nets, served, sides, runs)
        logger.info(
            "%s: %s",
            video.name,
            ", ".join(f"{r['side']} px {r['detector_cpu_s']:.3f} s" for r in per_video[video.name]),
        )
    totals = []
    for i, side in enumerate(sides):
        rows = [r[i] for r in per_video.values()]
        ious = [r["mean_iou"] for r in rows if r["mean_iou"] is not None]
        totals.append(
            {
                "side": side,
                "reference_faces": sum(r["reference_faces"] for r in rows),
                "found": sum(r["found"] for r in rows),
                "extra_faces": sum(r["extra_faces"] for r in rows),
                "lowest_mean_iou": min(ious, default=None),
                "detector_cpu_s": sum(r["detector_cpu_s"] for r in rows),
            }
        )
    return {"videos": per_video, "totals": totals}


def render_markdown(result: dict[str, Any]) -> str:
    """Render the totals per side, then each video's faces, IoU and CPU per side."""
    method = result["method"]
    served = method["served_side"]
    base = {t["side"]: t["detector_cpu_s"] for t in result["totals"]}[served]
    lines = [
        "# The side at which a lost face is matched when followed",
        "",
        "Written by `python -m fakescope.benchmarks.follow_template`; do not edit. "
        f"Code `{method['code_version']}`; {describe_cpu(result['machine'])}. The client's "
        f"{method['num_frames']} frames per video (long side <= {method['max_side']} px), the "
        "served detector parameters with each template side; a reference face (the cascade on "
        f"every frame) is found when the same frame has a box at IoU >= {method['same_face_iou']}"
        f". Detector CPU seconds: median of {method['runs']} runs, sides interleaved. Served "
        f"side: **{served}** px.",
        "",
        "| side px | faces found / reference | extra faces | lowest mean IoU of a video "
        f"| detector CPU s | CPU vs {served} px |",
        "|---|---|---|---|---|---|",
    ]
    for t in result["totals"]:
        lines.append(
            f"| {t['side']} | {t['found']} / {t['reference_faces']} | {t['extra_faces']} "
            f"| {fmt(t['lowest_mean_iou'])} | {t['detector_cpu_s']:.3f} "
            f"| {t['detector_cpu_s'] / base:.2f}x |"
        )
    sides = [t["side"] for t in result["totals"]]
    lines += [
        "",
        f"Per video: faces found / reference, mean IoU, detector CPU seconds (vs {served} px).",
        "",
        "| video | " + " | ".join(f"{s} px" for s in sides) + " |",
        "|---|" + "---|" * len(sides),
    ]
    for video, rows in result["videos"].items():
        cpu = {r["side"]: r["detector_cpu_s"] for r in rows}
        cells = [
            f"{r['found']} / {r['reference_faces']}, {fmt(r['mean_iou'])}, "
            f"{r['detector_cpu_s']:.3f} ({r['detector_cpu_s'] / cpu[served]:.2f}x)"
            for r in rows
        ]
        lines.append(f"| {video} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args = parse_run_arguments(parser, argv, runs=5, result=RESULT)
    from fakescope.benchmarks.videos import PHONE_LIKE_VIDEO  # needs scikit-image

    videos = detector_videos(args.bench_videos, args.dfdc_sample, (PHONE_LIKE_VIDEO,))
    served_side = detector_params(MODEL_REPOSITORY).follow_template_side
    loadavg_before = os.getloadavg()
    result = measure(videos, tuple(sorted({*SIDES, served_side})), args.runs)
    result["method"] = {
        "runs": args.runs,
        "num_frames": DEFAULT_NUM_FRAMES,
        "max_side": DEFAULT_MAX_SIDE,
        "same_face_iou": SAME_FACE_IOU,
        "served_side": served_side,
        "code_version": code_version(),
        "loadavg_before": loadavg_before,
    }
    result["machine"] = machine_facts()
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
