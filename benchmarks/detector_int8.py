"""int8 MTCNN nets in the served detector: detector time and faces against the float nets.

The face classifier gained from ONNX Runtime's static int8 quantization
(:mod:`~fakescope.benchmarks.classifier_int8`); this asks the same of the detector's three
nets. Each net is quantized the way the classifier is (QDQ, int8 weights per channel, uint8
activations, ONNX Runtime's pre-processing first), calibrated on the inputs the served detector
gives that net on the calibration videos: the committed samples and the benchmark videos. Then,
on every video (those and, where present, the real DFDC videos of
``../shared/data/dfdc_sample``), the client's sample goes through the served detector in
process, once with the float nets and once with the int8 ones, interleaved run by run: the
median wall and CPU time of the detector (CPU time of this process, all threads: what a
saturated server pays), and how many of the float detector's faces the int8 one finds (the same
frame, IoU >= 0.5, as :mod:`~fakescope.benchmarks.detector_keyframes` counts them).

Run: ``python -m fakescope.benchmarks.detector_int8`` (writes
``benchmarks/results/detector_int8.json`` and its table, ``detector_int8.md``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fakescope import contract
from fakescope.benchmarks.arguments import (
    default_videos,
    parse_run_arguments,
    synthetic_videos,
)
from fakescope.benchmarks.detector_keyframes import faces_found
from fakescope.benchmarks.machine import describe_cpu, machine_facts
from fakescope.benchmarks.result_files import write_result
from fakescope.client.analyze import DEFAULT_MAX_SIDE, DEFAULT_NUM_FRAMES
from fakescope.client.video import sample_frames
from fakescope.paths import MODEL_REPOSITORY, PROJECT_ROOT
from fakescope.pipeline.mtcnn import (
    FaceDetections,
    MtcnnNets,
    MtcnnParams,
    OnnxRuntimeMtcnnNets,
    detect_faces,
    find_mtcnn_model,
)
from fakescope.serving.model_config import detector_params

logger = logging.getLogger(__name__)

RESULT = PROJECT_ROOT / "benchmarks" / "results" / "detector_int8.json"
#: Each net's input name, the calibration reader's key.
NET_INPUTS = {
    contract.PNET_MODEL: contract.PNET_INPUT,
    contract.RNET_MODEL: contract.RNET_INPUT,
    contract.ONET_MODEL: contract.ONET_INPUT,
}


class RecordingNets:
    """:class:`~fakescope.pipeline.mtcnn.MtcnnNets` that keeps every batch it is given."""

    def __init__(self, nets: MtcnnNets) -> None:
        self._nets = nets
        self.batches: dict[str, list[NDArray[np.float32]]] = {name: [] for name in NET_INPUTS}

    def pnet(self, batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Record the batch, then run P-Net."""
        self.batches[contract.PNET_MODEL].append(batch.copy())
        return self._nets.pnet(batch)

    def rnet(self, batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Record the batch, then run R-Net."""
        self.batches[contract.RNET_MODEL].append(batch.copy())
        return self._nets.rnet(batch)

    def onet(
        self, batch: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
        """Record the batch, then run O-Net."""
        self.batches[contract.ONET_MODEL].append(batch.copy())
        return self._nets.onet(batch)


def quantize_net(source: Path, target: Path, name: str, batches: list[NDArray[Any]]) -> None:
    """Write the int8 (QDQ) version of net ``name`` to ``target``, calibrated on ``batches``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._feeds = iter([{NET_INPUTS[name]: batch} for batch in batches])

        def get_next(self) -> dict[str, NDArray[Any]] | None:
            return next(self._feeds, None)

    prepared = target.with_suffix(".pre.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(target),
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    prepared.unlink()


def _sample(video: Path) -> NDArray[np.uint8]:
    return sample_frames(video, DEFAULT_NUM_FRAMES, max_side=DEFAULT_MAX_SIDE).frames


def _timed(
    frames: NDArray[np.uint8], nets: MtcnnNets, params: MtcnnParams
) -> tuple[FaceDetections, float, float]:
    start, start_cpu = time.perf_counter(), time.process_time()
    found = detect_faces(frames, nets, params)
    return found, time.perf_counter() - start, time.process_time() - start_cpu


def measure(
    calibration: list[Path], videos: list[Path], runs: int, folder: Path
) -> list[dict[str, Any]]:
    """Quantize the nets into ``folder``; per video, both detectors' times and faces."""
    params = detector_params(MODEL_REPOSITORY)
    float_nets = OnnxRuntimeMtcnnNets(MODEL_REPOSITORY)
    recorder = RecordingNets(float_nets)
    for video in calibration:
        detect_faces(_sample(video), recorder, params)
    for name, batches in recorder.batches.items():
        logger.info("quantizing %s on %d batches", name, len(batches))
        quantize_net(
            find_mtcnn_model(MODEL_REPOSITORY, name), folder / f"{name}.onnx", name, batches
        )
    nets = {"float": float_nets, "int8": OnnxRuntimeMtcnnNets(folder)}
    rows = []
    for video in videos:
        frames = _sample(video)
        found: dict[str, FaceDetections] = {}
        wall: dict[str, list[float]] = {kind: [] for kind in nets}
        cpu: dict[str, list[float]] = {kind: [] for kind in nets}
        for kind, kind_nets in nets.items():  # the warm-up, and the faces to compare
            found[kind] = detect_faces(frames, kind_nets, params)
        for _ in range(runs):
            for kind, kind_nets in nets.items():
                _, seconds, cpu_seconds = _timed(frames, kind_nets, params)
                wall[kind].append(seconds)
                cpu[kind].append(cpu_seconds)
        hits, ious = faces_found(found["float"], found["int8"])
        row: dict[str, Any] = {
            "video": video.name,
            "calibration": video in calibration,
            "float_faces": len(found["float"]),
            "int8_faces": len(found["int8"]),
            "found": hits,
            "mean_iou": statistics.fmean(ious) if ious else None,
        }
        for kind in nets:
            row[kind] = {
                "wall_s": statistics.median(wall[kind]),
                "cpu_s": statistics.median(cpu[kind]),
            }
        row["cpu_vs_float"] = row["int8"]["cpu_s"] / row["float"]["cpu_s"]
        row["wall_vs_float"] = row["int8"]["wall_s"] / row["float"]["wall_s"]
        logger.info(
            "%s: %d/%d faces, CPU %.2fx", video.name, hits, len(found["float"]), row["cpu_vs_float"]
        )
        rows.append(row)
    return rows


def render_markdown(result: dict[str, Any]) -> str:
    """Render ``detector_int8.json`` as a table."""
    method, machine = result["method"], result["machine"]
    lines = [
        "# int8 MTCNN nets in the served detector",
        "",
        f"Written by `python -m fakescope.benchmarks.detector_int8`; do not edit. ONNX Runtime "
        f"{method['onnxruntime']} static quantization (QDQ, int8 weights per channel, uint8 "
        f"activations) of P-Net, R-Net and O-Net, calibrated on the inputs the served detector "
        f"gives each net on the calibration videos (marked *). The client's sample "
        f"({method['num_frames']} frames, long side <= {method['max_side']}) through the served "
        f"detector in process, float nets and int8 nets interleaved: median of {method['runs']} "
        f"runs after a warm-up, seconds; CPU is this process's, all threads. A float face is "
        f"found when the int8 detector has a box at IoU >= 0.5 in the same frame. "
        f"{machine['cores']} cores ({describe_cpu(machine)}), load average "
        f"{machine['load_average_at_start'][0]:.2f} at start.",
        "",
        "| video | float faces | found by int8 | int8 faces | mean IoU "
        "| float wall / CPU | int8 wall / CPU | int8 CPU, wall vs float |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["videos"]:
        iou = "—" if row["mean_iou"] is None else f"{row['mean_iou']:.3f}"
        mark = " *" if row["calibration"] else ""
        cells = [f"{row[k]['wall_s']:.3f} / {row[k]['cpu_s']:.3f}" for k in ("float", "int8")]
        lines.append(
            f"| {row['video']}{mark} | {row['float_faces']} | {row['found']} "
            f"| {row['int8_faces']} | {iou} | {' | '.join(cells)} "
            f"| {row['cpu_vs_float']:.2f}x, {row['wall_vs_float']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure and write the result file."""
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args = parse_run_arguments(parser, argv, runs=7, result=RESULT)
    machine = machine_facts()
    calibration = synthetic_videos(args.bench_videos)
    videos = default_videos(args.bench_videos, args.dfdc_sample)
    with tempfile.TemporaryDirectory(prefix="detector-int8-") as folder:
        rows = measure(calibration, videos, args.runs, Path(folder))
    result = {
        "videos": rows,
        "method": {
            "runs": args.runs,
            "num_frames": DEFAULT_NUM_FRAMES,
            "max_side": DEFAULT_MAX_SIDE,
            "onnxruntime": ort.__version__,
        },
        "machine": machine,
    }
    write_result(args.output, result, render_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
