"""The int8 detector benchmark (benchmarks/detector_int8.py): its recorder and its table."""

from __future__ import annotations

import numpy as np

from fakescope import contract
from fakescope.benchmarks.detector_int8 import RecordingNets, render_markdown
from fakescope.paths import MODEL_REPOSITORY
from fakescope.pipeline.mtcnn import MtcnnParams, OnnxRuntimeMtcnnNets, detect_faces


def test_recording_nets_keeps_every_batch_and_answers_as_the_nets_when_detecting() -> None:
    nets = OnnxRuntimeMtcnnNets(MODEL_REPOSITORY)
    recorder = RecordingNets(nets)
    frames = np.random.default_rng(0).integers(0, 256, (2, 120, 160, 3), dtype=np.uint8)
    params = MtcnnParams(min_face_size=20, thresholds=(0.0, 0.0, 0.0))  # every window passes
    found = detect_faces(frames, recorder, params)
    assert [len(recorder.batches[name]) > 0 for name in contract.MTCNN_MODELS] == [True] * 3
    first = recorder.batches[contract.PNET_MODEL][0]
    assert first.shape[:2] == (2, 3)  # both frames, one pyramid level, NCHW
    again = detect_faces(frames, nets, params)
    np.testing.assert_array_equal(found.boxes, again.boxes)


def test_detector_int8_table_marks_the_calibration_videos_when_rendered() -> None:
    row = {
        "video": "v.mp4",
        "calibration": True,
        "float_faces": 16,
        "int8_faces": 17,
        "found": 16,
        "mean_iou": 0.9,
        "float": {"wall_s": 0.1, "cpu_s": 0.14},
        "int8": {"wall_s": 0.12, "cpu_s": 0.168},
        "cpu_vs_float": 1.2,
        "wall_vs_float": 1.2,
    }
    held_out = {**row, "video": "real.mp4", "calibration": False, "mean_iou": None}
    method = {"runs": 7, "num_frames": 16, "max_side": 1280, "onnxruntime": "1.0"}
    machine = {"cores": 2, "cpu_model": "CPU", "load_average_at_start": [0.5, 0.5, 0.5]}
    table = render_markdown({"videos": [row, held_out], "method": method, "machine": machine})
    assert "| v.mp4 * | 16 | 16 | 17 | 0.900 | 0.100 / 0.140 | 0.120 / 0.168 | 1.20x, 1.20x |" in (
        table
    )
    assert "| real.mp4 | 16 | 16 | 17 | — |" in table
