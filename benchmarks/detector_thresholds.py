"""A stricter P-Net threshold: detector CPU it saves, faces it loses (issue #14, item 2).

P-Net's threshold decides how many candidate windows go on to R-Net; the served one is
facenet-pytorch's default. For each candidate threshold (the served one and those of
:data:`CANDIDATES`; R-Net's and O-Net's stay as served), two checks against the served detector:

* **Videos** (the committed samples, the benchmark videos and, where present, the real DFDC
  videos of ``dfdc_sample``): the client's sample, detected as served (keyframes included) in
  this process with ONNX Runtime; a served face counts as found when the same frame has a box at
  IoU >= 0.5 with it. Detector CPU seconds of this process, median of ``--runs``.
* **Real faces at small sizes**: ``--faces`` face crops drawn (seeded) from
  ``../shared/data/dfdc_faces``, pasted onto a textured photo (scikit-image's coffee, which
  gives P-Net many false candidates) at the detector's own scale (640 x 360: nothing is
  downscaled), each at a box side of :data:`BOX_SIDES` pixels: the served minimum face and a
  little above, where P-Net's scores are lowest. A crop of side ``c`` holds a box of side
  ``c / (1 + 2 * face_margin)`` (the served framing), so it is pasted at ``box * (1 + 2 *
  face_margin)``. A pasted face counts as found when a detected box's centre lies inside it.

A candidate is taken only if it loses no face the served threshold finds, in either check.

Run: ``python -m fakescope.benchmarks.detector_thresholds`` (writes
``benchmarks/results/detector_thresholds.json`` and its table, ``detector_thresholds.md``).
Exit 2 when the face-crop set is absent.
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

import cv2
import numpy as np
from numpy.typing import NDArray

from fakescope import contract
from fakescope.benchmarks.arguments import DFDC_FACES, default_videos, parse_run_arguments
from fakescope.benchmarks.detector_keyframes import faces_found
from fakescope.benchmarks.result_files import write_result
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.video import sample_frames
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.pipeline.metadata import read_classifier_spec
from fakescope.pipeline.mtcnn import (
    FaceDetections,
    MtcnnNets,
    MtcnnParams,
    OnnxRuntimeMtcnnNets,
    detect_faces,
)
from fakescope.serving.model_config import detector_params, served_version_dir

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "detector_thresholds.json"
DEFAULT_DATA = DFDC_FACES
#: P-Net thresholds compared with the served one.
CANDIDATES = (0.7, 0.8)
#: Box sides (pixels at detection scale) of the pasted faces.
BOX_SIDES = (40, 48, 64, 96)
#: The frame the faces are pasted on: the detector's own size for 16:9 video.
FRAME_SIZE = (640, 360)
#: Faces per pasted frame, side by side.
FACES_PER_FRAME = 4
FACE_SEED = 0
EXIT_NO_DATA = 2


def with_pnet_threshold(params: MtcnnParams, threshold: float) -> MtcnnParams:
    """Return ``params`` with P-Net's threshold replaced (R-Net's and O-Net's kept)."""
    return dataclasses.replace(params, thresholds=(threshold, *params.thresholds[1:]))


def pasted_frames(
    faces: NDArray[np.uint8], side: int, background: NDArray[np.uint8], per_frame: int, seed: int
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Paste every face, resized to ``side``, onto copies of ``background``, ``per_frame`` each.

    Faces sit side by side in equal columns (never overlapping), at a seeded height. Returns the
    frames ``[F, H, W, 3]`` and each face's place ``[K, 3]`` (frame, x, y of its top-left).

    Raises:
        ValueError: when ``per_frame`` faces of ``side`` pixels do not fit side by side.

    """
    height, width = background.shape[:2]
    column = width // max(per_frame, 1)
    if per_frame < 1 or side >= column or side >= height:
        raise ValueError(f"{per_frame} faces of {side} px do not fit in a {width}x{height} frame")
    rng = np.random.default_rng(seed)
    frames = np.repeat(background[None], -(-len(faces) // per_frame), axis=0)
    places = np.zeros((len(faces), 3), np.int64)
    for k, face in enumerate(faces):
        frame, slot = divmod(k, per_frame)
        x = slot * column + (column - side) // 2
        y = int(rng.integers(0, height - side + 1))
        frames[frame, y : y + side, x : x + side] = cv2.resize(
            face, (side, side), interpolation=cv2.INTER_AREA
        )
        places[k] = (frame, x, y)
    return frames, places


def pasted_found(found: FaceDetections, places: NDArray[np.int64], side: int) -> NDArray[np.bool_]:
    """Whether each pasted face has a detected box whose centre lies inside it."""
    centre_x = (found.boxes[:, 0] + found.boxes[:, 2]) / 2
    centre_y = (found.boxes[:, 1] + found.boxes[:, 3]) / 2
    hits = np.zeros(len(places), bool)
    for k, (frame, x, y) in enumerate(places):
        mine = found.frame_index == frame
        inside = (centre_x >= x) & (centre_x < x + side) & (centre_y >= y) & (centre_y < y + side)
        hits[k] = bool((mine & inside).any())
    return hits


def _timed(
    frames: NDArray[np.uint8], nets: MtcnnNets, params: MtcnnParams, runs: int
) -> tuple[FaceDetections, float]:
    """Detect ``runs`` times; return the faces and the median CPU seconds of this process."""
    cpu, found = [], None
    for _ in range(runs):
        started = time.process_time()
        found = detect_faces(frames, nets, params)
        cpu.append(time.process_time() - started)
    assert found is not None  # runs >= 1
    return found, statistics.median(cpu)


def measure_videos(
    videos: list[Path], nets: MtcnnNets, served: MtcnnParams, thresholds: list[float], runs: int
) -> list[dict[str, Any]]:
    """Faces kept and detector CPU per video and threshold, against the served threshold."""
    rows = []
    for video in videos:
        frames = sample_frames(video, DEFAULT_NUM_FRAMES, max_side=DEFAULT_MAX_SIDE).frames
        detect_faces(frames[:1], nets, served)  # warm-up
        results = {
            t: _timed(frames, nets, with_pnet_threshold(served, t), runs) for t in thresholds
        }
        reference, reference_cpu = results[served.thresholds[0]]
        for threshold, (found, cpu) in results.items():
            hits, _ = faces_found(reference, found)
            rows.append(
                {
                    "video": video.name,
                    "pnet_threshold": threshold,
                    "served_faces": len(reference),
                    "found": hits,
                    "extra_faces": len(found) - hits,
                    "detector_cpu_s": cpu,
                    "cpu_vs_served": cpu / reference_cpu,
                }
            )
            logger.info(
                "%s P-Net %.2f: %d/%d faces, %.3f s CPU",
                video.name,
                threshold,
                hits,
                len(reference),
                cpu,
            )
    return rows


def measure_pasted(
    faces: NDArray[np.uint8],
    nets: MtcnnNets,
    served: MtcnnParams,
    thresholds: list[float],
    face_margin: float,
) -> list[dict[str, Any]]:
    """Pasted real faces found per box side and threshold, against the served threshold."""
    from skimage import data

    background = cv2.resize(data.coffee(), FRAME_SIZE, interpolation=cv2.INTER_AREA)
    rows = []
    for box in BOX_SIDES:
        side = round(box * (1 + 2 * face_margin))
        frames, places = pasted_frames(faces, side, background, FACES_PER_FRAME, FACE_SEED + box)
        found = {}
        for threshold in thresholds:
            started = time.process_time()
            detections = detect_faces(frames, nets, with_pnet_threshold(served, threshold))
            cpu = time.process_time() - started
            found[threshold] = (pasted_found(detections, places, side), cpu)
        reference, reference_cpu = found[served.thresholds[0]]
        for threshold, (hits, cpu) in found.items():
            rows.append(
                {
                    "box_px": box,
                    "pasted_px": side,
                    "pnet_threshold": threshold,
                    "faces": len(faces),
                    "found": int(hits.sum()),
                    "lost_vs_served": int((reference & ~hits).sum()),
                    "gained_vs_served": int((hits & ~reference).sum()),
                    "detector_cpu_s": cpu,
                    "cpu_vs_served": cpu / reference_cpu,
                }
            )
        logger.info("box %d px: %s", box, {t: int(h.sum()) for t, (h, _) in found.items()})
    return rows


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per threshold: faces lost against the served threshold, CPU over the videos, taken or not."""
    served = result["method"]["served_pnet_threshold"]
    out = []
    for threshold in result["method"]["pnet_thresholds"]:
        videos = [r for r in result["videos"] if r["pnet_threshold"] == threshold]
        pasted = [r for r in result["pasted"] if r["pnet_threshold"] == threshold]
        video_cpu = sum(r["detector_cpu_s"] for r in videos)
        served_cpu = sum(
            r["detector_cpu_s"] for r in result["videos"] if r["pnet_threshold"] == served
        )
        lost_videos = sum(r["served_faces"] - r["found"] for r in videos)
        lost_pasted = sum(r["lost_vs_served"] for r in pasted)
        out.append(
            {
                "pnet_threshold": threshold,
                "served": threshold == served,
                "video_faces_lost": lost_videos,
                "pasted_faces_lost": lost_pasted,
                "pasted_faces": sum(r["faces"] for r in pasted),
                "video_cpu_vs_served": video_cpu / served_cpu,
                "taken": threshold == served or (lost_videos == 0 and lost_pasted == 0),
            }
        )
    return out


def render_markdown(result: dict[str, Any]) -> str:
    """Render the result: the verdict per threshold, then the pasted faces per size."""
    method = result["method"]
    lines = [
        "# A stricter P-Net threshold: detector CPU saved, faces lost",
        "",
        "Written by `python -m fakescope.benchmarks.detector_thresholds` from "
        "`detector_thresholds.json`; do not edit. Served thresholds "
        f"{method['served_thresholds']}; R-Net's and O-Net's kept. Videos: "
        f"{len({r['video'] for r in result['videos']})}, the client's {method['num_frames']} "
        f"frames each, detected as served; CPU: median of {method['runs']} runs. Pasted faces: "
        f"{method['faces']} DFDC face crops per size (seed {method['face_seed']}) on a "
        f"{method['frame_size'][0]}x{method['frame_size'][1]} photo. Load average at start "
        f"{method['loadavg_before'][0]:.2f}.",
        "",
        "| P-Net threshold | video faces lost | pasted faces lost | detector CPU on the videos "
        "| taken |",
        "|---|---|---|---|---|",
    ]
    for v in result["verdicts"]:
        name = f"{v['pnet_threshold']}" + (" (served)" if v["served"] else "")
        lines.append(
            f"| {name} | {v['video_faces_lost']} | {v['pasted_faces_lost']} of "
            f"{v['pasted_faces']} | {v['video_cpu_vs_served']:.2f}x | "
            f"{'yes' if v['taken'] else 'no'} |"
        )
    lines += [
        "",
        "Pasted faces found, per box side at detection scale:",
        "",
        "| box px | " + " | ".join(f"P-Net {t}" for t in method["pnet_thresholds"]) + " |",
        "|---|" + "---|" * len(method["pnet_thresholds"]),
    ]
    for box in BOX_SIDES:
        cells = [
            f"{r['found']} / {r['faces']} ({r['detector_cpu_s']:.2f} s CPU)"
            for t in method["pnet_thresholds"]
            for r in result["pasted"]
            if r["box_px"] == box and r["pnet_threshold"] == t
        ]
        lines.append(f"| {box} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _faces(data: Path, count: int, size: int) -> NDArray[np.uint8]:
    from fakescope.training.face_crops import load_face_crop_set, read_face_crops

    dataset = load_face_crop_set(data)
    names = sorted(e.name for e in dataset.entries)
    picked = np.random.default_rng(FACE_SEED).choice(len(names), size=count, replace=False)
    crops: NDArray[np.uint8] = read_face_crops(
        dataset, [names[i] for i in sorted(picked)], size
    ).crops
    return crops


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file; exit 2 when the face-crop set is absent."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the face-crop set")
    parser.add_argument("--faces", type=int, default=384, help="pasted faces per size")
    args = parse_run_arguments(parser, argv, runs=3, result=RESULT)
    if args.faces < 1:
        parser.error("--faces must be at least 1")
    if not args.data.is_dir():
        logger.error("%s not found: the pasted-face check needs the DFDC face crops", args.data)
        return EXIT_NO_DATA
    loadavg_before = os.getloadavg()
    nets = OnnxRuntimeMtcnnNets(MODEL_REPOSITORY)
    served = detector_params(MODEL_REPOSITORY)
    spec, _ = read_classifier_spec(
        served_version_dir(MODEL_REPOSITORY / contract.CLASSIFIER_MODEL) / "model.onnx"
    )
    thresholds = sorted({served.thresholds[0], *CANDIDATES})
    videos = default_videos(args.bench_videos, args.dfdc_sample)
    # decoded at the largest pasted size, so each paste only shrinks
    faces = _faces(args.data, args.faces, round(max(BOX_SIDES) * (1 + 2 * spec.face_margin)))
    result: dict[str, Any] = {
        "videos": measure_videos(videos, nets, served, thresholds, args.runs),
        "pasted": measure_pasted(faces, nets, served, thresholds, spec.face_margin),
    }
    result["method"] = {
        "served_thresholds": list(served.thresholds),
        "served_pnet_threshold": served.thresholds[0],
        "pnet_thresholds": thresholds,
        "runs": args.runs,
        "num_frames": DEFAULT_NUM_FRAMES,
        "max_side": DEFAULT_MAX_SIDE,
        "faces": args.faces,
        "face_seed": FACE_SEED,
        "face_margin": spec.face_margin,
        "frame_size": list(FRAME_SIZE),
        "data": str(args.data),
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
    }
    result["verdicts"] = verdicts(result)
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
