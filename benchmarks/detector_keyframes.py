"""Detection on keyframes vs on every frame: faces kept, and detector time, per stride.

For each video, the client's sample (its default frame count and size) goes through the served
detector parameters in-process with ONNX Runtime, once with ``keyframe_stride`` 1 (the cascade
on every frame: the reference) and once per larger stride. A face of the reference counts as
found when the same frame has a box at IoU >= 0.5 with it. Time is the detector only, median of
``--runs`` runs, as wall time and as CPU time of this process (all threads): CPU time is the
work a saturated server pays per video, and a busy neighbour disturbs it far less than wall
time, so the speed-ups are computed from it. Videos: the committed samples, the benchmark
videos, one whose face comes and goes (:data:`~fakescope.benchmarks.videos.FACE_COMES_AND_GOES`:
on screen only between keyframes), one whose second face does so beside a face on screen
throughout (:data:`~fakescope.benchmarks.videos.SECOND_FACE_COMES_AND_GOES`) and, where present,
``../shared/data/dfdc_sample`` (real DFDC videos).

Run: ``python -m fakescope.benchmarks.detector_keyframes`` (writes
``benchmarks/results/detector_keyframes.json`` and its table, ``detector_keyframes.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fakescope.benchmarks.arguments import default_videos, parse_run_arguments
from fakescope.benchmarks.result_files import write_result
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.video import sample_frames
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.pipeline.keyframes import box_iou
from fakescope.pipeline.mtcnn import FaceDetections, MtcnnParams, OnnxRuntimeMtcnnNets, detect_faces
from fakescope.serving.model_config import detector_params

if TYPE_CHECKING:
    from fakescope.benchmarks.videos import BenchVideo

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "detector_keyframes.json"
SAME_FACE_IOU = 0.5
STRIDES = (1, 2, 3, 4, 5)


def faces_found(reference: FaceDetections, other: FaceDetections) -> tuple[int, list[float]]:
    """How many reference faces ``other`` finds (IoU >= 0.5 in the same frame), and their IoUs."""
    hits, ious = 0, []
    for frame in np.unique(reference.frame_index):
        ref = reference.for_frame(int(frame)).boxes
        got = other.for_frame(int(frame)).boxes
        if len(got) == 0:
            continue
        best = box_iou(ref, got).max(axis=1)
        hits += int((best >= SAME_FACE_IOU).sum())
        ious.extend(float(v) for v in best[best >= SAME_FACE_IOU])
    return hits, ious


def detector_videos(
    bench_dir: Path, dfdc_sample: Path, more: tuple[BenchVideo, ...] = ()
) -> list[Path]:
    """Return the videos a detector benchmark measures (the module docstring names them) + ``more``.

    Made in ``bench_dir`` where missing; the DFDC samples where ``dfdc_sample`` exists.
    """
    from fakescope.benchmarks import videos as bench  # needs scikit-image

    videos = default_videos(bench_dir, dfdc_sample)
    return videos + bench.ensure_videos(
        bench_dir, (bench.FACE_COMES_AND_GOES, bench.SECOND_FACE_COMES_AND_GOES, *more)
    )


def _timed(
    frames: np.ndarray, nets: Any, params: MtcnnParams, runs: int
) -> tuple[Any, float, float]:
    """Detect ``runs`` times; return the faces and the median wall and CPU seconds."""
    wall, cpu, found = [], [], None
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        found = detect_faces(frames, nets, params)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return found, statistics.median(wall), statistics.median(cpu)


def measure(videos: list[Path], strides: tuple[int, ...], runs: int) -> dict[str, Any]:
    """Faces found and detector time for every video and stride."""
    nets = OnnxRuntimeMtcnnNets(MODEL_REPOSITORY)
    served = detector_params(MODEL_REPOSITORY)
    rows = []
    for video in videos:
        frames = sample_frames(video, DEFAULT_NUM_FRAMES, max_side=DEFAULT_MAX_SIDE).frames
        detect_faces(frames[:1], nets, served)  # warm-up
        results = {
            s: _timed(frames, nets, dataclasses.replace(served, keyframe_stride=s), runs)
            for s in strides
        }
        reference, _, ref_cpu = results[1]
        for stride in strides:
            found, seconds, cpu = results[stride]
            hits, ious = faces_found(reference, found)
            rows.append(
                {
                    "video": video.name,
                    "frames": len(frames),
                    "frame_size": [int(frames.shape[2]), int(frames.shape[1])],
                    "stride": stride,
                    "reference_faces": len(reference),
                    "faces": len(found),
                    "found": hits,
                    "recall": hits / len(reference) if len(reference) else None,
                    "extra_faces": len(found) - hits,
                    "mean_iou": statistics.fmean(ious) if ious else None,
                    "detector_s": seconds,
                    "detector_cpu_s": cpu,
                    "speedup": ref_cpu / cpu,
                }
            )
            logger.info(
                "%s stride %d: %d/%d faces, %.3f s CPU",
                video.name,
                stride,
                hits,
                len(reference),
                cpu,
            )
    return {"rows": rows, "totals": _totals(rows, strides)}


def _totals(rows: list[dict[str, Any]], strides: tuple[int, ...]) -> list[dict[str, Any]]:
    totals = []
    for stride in strides:
        mine = [r for r in rows if r["stride"] == stride]
        reference = sum(r["reference_faces"] for r in mine)
        found = sum(r["found"] for r in mine)
        cpu = sum(r["detector_cpu_s"] for r in mine)
        ref_cpu = sum(r["detector_cpu_s"] for r in rows if r["stride"] == 1)
        totals.append(
            {
                "stride": stride,
                "reference_faces": reference,
                "found": found,
                "recall": found / reference if reference else None,
                "extra_faces": sum(r["extra_faces"] for r in mine),
                "worst_video_recall": min(
                    (r["recall"] for r in mine if r["recall"] is not None), default=None
                ),
                "detector_cpu_s": cpu,
                "speedup": ref_cpu / cpu,
            }
        )
    return totals


def _cell(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_markdown(result: dict[str, Any]) -> str:
    """Render the result: totals per stride, then every video at stride 1 and as served."""
    served = result["method"]["detector"]["keyframe_stride"]
    lines = [
        "# Detection on keyframes vs every frame",
        "",
        "Written by `python -m fakescope.benchmarks.detector_keyframes` from "
        "`detector_keyframes.json`; do not edit. A reference face (found with the cascade on "
        f"every frame) is found when the same frame has a box at IoU >= {SAME_FACE_IOU}. "
        f"Detector CPU seconds are the median of {result['method']['runs']} runs "
        f"({result['method']['num_frames']} frames per video, client max side "
        f"{result['method']['max_side']} px). Served stride: **{served}**.",
        "",
        "| stride | faces found / reference | recall | worst video | extra faces "
        "| detector CPU s | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in result["totals"]:
        lines.append(
            f"| {t['stride']} | {t['found']} / {t['reference_faces']} | {_cell(t['recall'])} "
            f"| {_cell(t['worst_video_recall'])} | {t['extra_faces']} "
            f"| {t['detector_cpu_s']:.2f} | {t['speedup']:.2f}x |"
        )
    lines += [
        "",
        f"Per video, stride 1 vs {served}:",
        "",
        "| video | faces (stride 1) | found | mean IoU | CPU s, stride 1 | CPU s, served "
        "| speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["video"], r["stride"]): r for r in result["rows"]}
    for video in dict.fromkeys(r["video"] for r in result["rows"]):
        one, ours = by_key[(video, 1)], by_key[(video, served)]
        lines.append(
            f"| {video} | {one['reference_faces']} | {ours['found']} | {_cell(ours['mean_iou'])} "
            f"| {one['detector_cpu_s']:.3f} | {ours['detector_cpu_s']:.3f} "
            f"| {ours['speedup']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args = parse_run_arguments(parser, argv, runs=3, result=RESULT)
    result = measure(detector_videos(args.bench_videos, args.dfdc_sample), STRIDES, args.runs)
    result["method"] = {
        "runs": args.runs,
        "num_frames": DEFAULT_NUM_FRAMES,
        "max_side": DEFAULT_MAX_SIDE,
        "same_face_iou": SAME_FACE_IOU,
        "detector": dataclasses.asdict(detector_params(MODEL_REPOSITORY)),
        "loadavg_before": os.getloadavg(),
    }
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
