"""MTCNN: ONNX export (export/mtcnn_onnx.py) and the numpy cascade (fakescope/pipeline/mtcnn.py).

The cascade is compared with facenet-pytorch's ``MTCNN(keep_all=True).detect`` on real faces
shipped by scikit-image. Tests that need torch / facenet-pytorch / scikit-image skip (with the
reason shown by ``-ra``) through the fixtures below when those are not installed, so the pure
numpy tests still run in a client-only install.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fakescope.contract import (
    ONET_INPUT,
    ONET_LANDMARKS,
    ONET_MODEL,
    ONET_PROBABILITY,
    ONET_REGRESSION,
    PNET_INPUT,
    PNET_MODEL,
    PNET_PROBABILITY,
    PNET_REGRESSION,
    RNET_INPUT,
    RNET_MODEL,
    RNET_PROBABILITY,
    RNET_REGRESSION,
)
from fakescope.pipeline.mtcnn import (
    ONET_CANDIDATES_PER_FACE,
    FaceDetections,
    MtcnnParams,
    detect_faces,
)

CONTRACT_NAMES = {
    PNET_MODEL: ([PNET_INPUT], [PNET_REGRESSION, PNET_PROBABILITY]),
    RNET_MODEL: ([RNET_INPUT], [RNET_REGRESSION, RNET_PROBABILITY]),
    ONET_MODEL: ([ONET_INPUT], [ONET_REGRESSION, ONET_LANDMARKS, ONET_PROBABILITY]),
}
IOU_MIN = 0.95
SCORE_TOL = 1e-4
LANDMARK_TOL_PX = 1.0


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def skdata():
    return pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the faces")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("torch", reason="the export needs the train extra (torch)")
    pytest.importorskip("facenet_pytorch", reason="the export needs facenet-pytorch's weights")
    pytest.importorskip("onnxruntime", reason="the export check needs onnxruntime")
    pytest.importorskip("skimage.data", reason="the export check uses skimage's astronaut")
    from fakescope.export.mtcnn_onnx import export_mtcnn

    return export_mtcnn(tmp_path_factory.mktemp("mtcnn"))


@pytest.fixture(scope="module")
def nets(exported):
    from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets

    return OnnxRuntimeMtcnnNets(next(iter(exported.values())).parent)


@pytest.fixture(scope="module")
def facenet():
    pytest.importorskip("torch", reason="the reference needs the train extra (torch)")
    facenet_pytorch = pytest.importorskip("facenet_pytorch", reason="reference implementation")
    return facenet_pytorch.MTCNN(keep_all=True, device="cpu")


@pytest.fixture(scope="module")
def astronaut(skdata) -> np.ndarray:
    return skdata.astronaut()


def lfw_grid(skdata, rows: int, cols: int, first: int = 0, shape=None) -> np.ndarray:
    """LFW faces (grey, 25 px) upscaled to 110 px, tiled with margins on a grey canvas."""
    faces = skdata.lfw_subset()[:100]  # the first 100 images of lfw_subset are faces
    size, pad = 110, 40
    height, width = shape or (rows * (size + pad) + pad, cols * (size + pad) + pad)
    canvas = np.full((height, width, 3), 128, np.uint8)
    for k in range(rows * cols):
        face = cv2.resize(
            (faces[first + k] * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
        )
        y, x = pad + (k // cols) * (size + pad), pad + (k % cols) * (size + pad)
        canvas[y : y + size, x : x + size] = face[..., None]
    return canvas


@pytest.fixture(scope="module")
def lfw_canvas(skdata) -> np.ndarray:
    """Eight LFW faces on one 340 x 640 canvas."""
    return lfw_grid(skdata, rows=2, cols=4)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def facenet_detect(facenet, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame (boxes [k,4], scores [k], landmarks [k,5,2]) from facenet, empty when none."""
    boxes, probs, points = facenet.detect(frames, landmarks=True)
    out = []
    for b, p, lm in zip(boxes, probs, points, strict=True):
        if b is None:
            out.append((np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))))
        else:
            out.append((np.asarray(b, np.float32), np.asarray(p, np.float32), np.asarray(lm)))
    return out


def assert_matches_facenet(ours: FaceDetections, reference, n_frames: int) -> list[str]:
    """Same count per frame, IoU >= 0.95 per matched face, scores and landmarks close."""
    report = []
    for i in range(n_frames):
        mine = ours.for_frame(i)
        ref_boxes, ref_scores, ref_landmarks = reference[i]
        assert len(mine) == len(ref_boxes), (
            f"frame {i}: {len(mine)} faces, facenet {len(ref_boxes)}"
        )
        if len(ref_boxes) == 0:
            continue
        iou = iou_matrix(ref_boxes, mine.boxes)
        match = iou.argmax(axis=1)
        assert len(set(match.tolist())) == len(match), f"frame {i}: ambiguous matching {iou}"
        best = iou.max(axis=1)
        score_diff = np.abs(mine.scores[match] - ref_scores)
        landmark_diff = np.abs(mine.landmarks[match] - ref_landmarks)
        assert best.min() >= IOU_MIN, f"frame {i}: IoU {best}"
        assert score_diff.max() <= SCORE_TOL, f"frame {i}: score diff {score_diff}"
        assert landmark_diff.max() <= LANDMARK_TOL_PX, f"frame {i}: landmark diff {landmark_diff}"
        report.append(
            f"frame {i}: {len(mine)} faces, min IoU {best.min():.4f}, "
            f"max |dscore| {score_diff.max():.1e}, max |dlandmark| {landmark_diff.max():.2e} px"
        )
    return report


def assert_empty(det: FaceDetections) -> None:
    assert len(det) == 0
    assert det.frame_index.shape == (0,) and det.frame_index.dtype == np.int32
    assert det.boxes.shape == (0, 4) and det.boxes.dtype == np.float32
    assert det.scores.shape == (0,) and det.scores.dtype == np.float32
    assert det.landmarks.shape == (0, 5, 2) and det.landmarks.dtype == np.float32


class _FailingNets:
    """Nets that must not be called (input validation happens before any network call)."""

    def pnet(self, batch):
        raise AssertionError("pnet called")

    rnet = onet = pnet


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------
@pytest.mark.torch
def test_export_mtcnn_writes_checked_models_when_exported(exported):
    import onnx

    assert set(exported) == {PNET_MODEL, RNET_MODEL, ONET_MODEL}
    for name, path in exported.items():
        assert path.name == f"{name}.onnx"
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)


@pytest.mark.torch
def test_export_mtcnn_uses_contract_tensor_names_when_exported(exported):
    import onnx

    for name, path in exported.items():
        model = onnx.load(str(path))
        inputs = [i.name for i in model.graph.input]
        outputs = [o.name for o in model.graph.output]
        assert (inputs, outputs) == CONTRACT_NAMES[name]
        assert not any(n.startswith(("input.", "onnx::")) for n in inputs + outputs)
        batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param and not batch_dim.HasField("dim_value")
    pnet_dims = onnx.load(str(exported[PNET_MODEL])).graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in pnet_dims] == [True, False, True, True]


@pytest.mark.torch
def test_export_mtcnn_writes_prelu_as_clip_mul_add_when_exported(exported):
    # ONNX Runtime's CPU PRelu kernel was the nets' largest single cost (export/mtcnn_onnx.py)
    import onnx

    for name, path in exported.items():
        ops = [node.op_type for node in onnx.load(str(path)).graph.node]
        assert "PRelu" not in ops, name
        assert ops.count("Clip") == ops.count("Mul") == ops.count("Add") >= 3, (name, ops)


@pytest.mark.torch
def test_export_mtcnn_writes_metadata_when_exported(exported):
    import onnx

    for name, path in exported.items():
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        short = name.removeprefix("mtcnn_")
        assert meta["fakescope.source"] == f"facenet-pytorch 2.6.0 {short}"
        assert meta["fakescope.normalisation"] == "(x - 127.5) * 0.0078125"
        assert len(meta["fakescope.weights_sha256"]) == 64


@pytest.mark.torch
def test_export_mtcnn_matches_torch_within_1e4_when_run_on_real_face(exported, facenet, astronaut):
    import onnxruntime as ort
    import torch
    import torch.nn.functional as functional

    img = torch.as_tensor(astronaut.copy()).permute(2, 0, 1)[None].float()
    face = img[:, :, 62:172, 169:279]  # the astronaut's face, squared like the cascade does
    pyramid = [functional.interpolate(img, size=(s, s), mode="area") for s in (308, 109, 25)]
    cases = {
        PNET_MODEL: (facenet.pnet, pyramid),
        RNET_MODEL: (facenet.rnet, [functional.interpolate(face, size=(24, 24), mode="area")]),
        ONET_MODEL: (facenet.onet, [functional.interpolate(face, size=(48, 48), mode="area")]),
    }
    for name, (net, batches) in cases.items():
        session = ort.InferenceSession(str(exported[name]), providers=["CPUExecutionProvider"])
        for batch in batches:
            x = (batch - 127.5) * 0.0078125
            with torch.no_grad():
                expected = [t.numpy() for t in net(x)]
            got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
            for want, have in zip(expected, got, strict=True):
                assert want.shape == have.shape
                np.testing.assert_allclose(have, want, rtol=0, atol=1e-4)
    # the face crop really is a face for R-Net and O-Net (the check is not on noise)
    assert got[-1][0, 1] > 0.99


@pytest.mark.torch
def test_export_mtcnn_is_byte_identical_when_exported_twice(exported, tmp_path):
    from fakescope.export.mtcnn_onnx import export_mtcnn

    again = export_mtcnn(tmp_path)
    for name, path in exported.items():
        assert again[name].read_bytes() == path.read_bytes(), name


@pytest.mark.torch
def test_export_mtcnn_raises_export_error_when_ort_differs_beyond_tolerance(exported, tmp_path):
    from fakescope.export.mtcnn_onnx import MtcnnExportError, export_mtcnn

    with pytest.raises(MtcnnExportError, match=r"mtcnn_pnet.onnx: ONNX Runtime and PyTorch differ"):
        export_mtcnn(tmp_path, tolerance=1e-12)


@pytest.mark.torch
def test_export_mtcnn_raises_export_error_when_reference_image_is_not_rgb_uint8(exported, tmp_path):
    from fakescope.export.mtcnn_onnx import MtcnnExportError, export_mtcnn

    with pytest.raises(MtcnnExportError, match="reference_image must be UINT8"):
        export_mtcnn(tmp_path, reference_image=np.zeros((64, 64), np.float32))


# --------------------------------------------------------------------------------------------
# Cascade vs facenet-pytorch
# --------------------------------------------------------------------------------------------
@pytest.mark.torch
def test_detect_faces_matches_facenet_when_given_astronaut(nets, facenet, astronaut):
    frames = astronaut[None]
    ours = detect_faces(frames, nets, MtcnnParams())
    assert len(ours) == 1
    assert_matches_facenet(ours, facenet_detect(facenet, frames), 1)
    x1, y1, x2, y2 = ours.boxes[0]
    assert 150 < x1 < x2 < 300 and 50 < y1 < y2 < 250  # the face, not the flag or the suit
    assert ours.scores[0] > 0.99


@pytest.mark.torch
def test_detect_faces_matches_facenet_when_given_several_faces(nets, facenet, lfw_canvas):
    frames = lfw_canvas[None]
    reference = facenet_detect(facenet, frames)
    assert len(reference[0][0]) >= 6  # the composite really has many detectable faces
    ours = detect_faces(frames, nets, MtcnnParams())
    assert_matches_facenet(ours, reference, 1)


@pytest.mark.torch
@pytest.mark.parametrize("stride", [1, 4])
def test_detect_faces_keeps_the_largest_faces_of_each_frame_when_capped(nets, lfw_canvas, stride):
    # the canvas's eight faces at three sizes: the largest eight are those at 1.3
    scaled = [cv2.resize(lfw_canvas, None, fx=f, fy=f) for f in (1.3, 1.0, 0.8)]
    wide = np.full((scaled[0].shape[0], sum(p.shape[1] for p in scaled), 3), 128, np.uint8)
    x = 0
    for part in scaled:
        wide[: part.shape[0], x : x + part.shape[1]] = part
        x += part.shape[1]
    frames = np.stack([wide] * 6)
    params = MtcnnParams(keyframe_stride=stride)
    every = detect_faces(frames, nets, params)
    capped = detect_faces(frames, nets, dataclasses.replace(params, max_faces_per_frame=8))
    area = (every.boxes[:, 2] - every.boxes[:, 0]) * (every.boxes[:, 3] - every.boxes[:, 1])
    for frame in range(len(frames)):
        mine = every.frame_index == frame
        assert mine.sum() > 8  # more faces than the cap on every frame
        largest = every.boxes[mine][np.argsort(-area[mine])[:8]]
        kept = capped.for_frame(frame).boxes
        np.testing.assert_allclose(
            kept[np.lexsort(kept.T)], largest[np.lexsort(largest.T)], atol=1e-3
        )


@pytest.mark.torch
def test_detect_faces_matches_facenet_when_given_batch_of_different_frames(
    nets, facenet, astronaut, skdata
):
    size = astronaut.shape[1::-1]
    frames = np.stack(
        [
            astronaut,
            lfw_grid(skdata, rows=3, cols=3, first=20, shape=astronaut.shape[:2]),
            cv2.resize(skdata.coffee(), size, interpolation=cv2.INTER_AREA),
            np.ascontiguousarray(astronaut[:, ::-1]),
            np.zeros_like(astronaut),
            cv2.resize(astronaut[40:300, 100:380], size, interpolation=cv2.INTER_LINEAR),
        ]
    )
    ours = detect_faces(frames, nets, MtcnnParams())
    assert_matches_facenet(ours, facenet_detect(facenet, frames), len(frames))
    counts = np.bincount(ours.frame_index, minlength=len(frames))
    assert counts[0] == 1 and counts[1] >= 4 and counts[2] == 0 and counts[4] == 0
    assert np.all(np.diff(ours.frame_index) >= 0)  # grouped by frame


@pytest.mark.torch
def test_detect_faces_gives_same_faces_when_pnet_batches_are_split(nets, astronaut, lfw_canvas):
    frames = np.stack([astronaut, cv2.resize(lfw_canvas, (512, 512)), astronaut[::-1, ::-1]])
    whole = detect_faces(frames, nets, MtcnnParams())
    split = detect_faces(frames, nets, MtcnnParams(pnet_batch_frames=2))
    for field in ("frame_index", "boxes", "scores", "landmarks"):
        np.testing.assert_array_equal(getattr(split, field), getattr(whole, field))


@pytest.mark.torch
def test_detect_faces_calls_pnet_once_per_scale_with_all_frames_when_nets_are_plugged(
    nets, astronaut
):
    calls: list[tuple[str, tuple[int, ...]]] = []

    class Recording:
        def pnet(self, batch):
            calls.append(("pnet", batch.shape))
            return nets.pnet(batch)

        def rnet(self, batch):
            calls.append(("rnet", batch.shape))
            return nets.rnet(batch)

        def onet(self, batch):
            calls.append(("onet", batch.shape))
            return nets.onet(batch)

    frames = np.stack([astronaut, astronaut[:, ::-1]])
    det = detect_faces(frames, Recording(), MtcnnParams())
    assert len(det) == 2
    pnet_calls = [shape for net, shape in calls if net == "pnet"]
    assert len(pnet_calls) == 10  # pyramid levels of a 512 px frame at min_face_size 20
    assert all(s[:2] == (2, 3) for s in pnet_calls)
    assert pnet_calls[0][2:] == (308, 308)  # int(512 * 0.6 + 1), facenet's first level
    assert [net for net, _ in calls[-2:]] == ["rnet", "onet"]
    assert calls[-2][1][1:] == (3, 24, 24) and calls[-1][1][1:] == (3, 48, 48)


@pytest.mark.torch
def test_detect_faces_gives_onet_four_candidates_per_face_kept_when_capped(nets, lfw_canvas):
    scored: list[int] = []

    class Recording:
        pnet, rnet = nets.pnet, nets.rnet

        def onet(self, batch):
            scored.append(len(batch))
            return nets.onet(batch)

    frames = lfw_canvas[None]
    every = detect_faces(frames, Recording(), MtcnnParams())
    assert scored[0] > ONET_CANDIDATES_PER_FACE * 2  # more candidates than the cap lets through
    scored.clear()
    capped = detect_faces(frames, Recording(), MtcnnParams(max_faces_per_frame=2))
    assert scored == [ONET_CANDIDATES_PER_FACE * 2]
    assert len(capped) == 2 < len(every)


@pytest.mark.torch
def test_onnxruntime_nets_chunk_batches_when_larger_than_max_batch_size(exported, astronaut):
    from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets

    model_dir = exported[PNET_MODEL].parent
    small = OnnxRuntimeMtcnnNets(model_dir, max_batch_size=3)
    big = OnnxRuntimeMtcnnNets(model_dir)
    crops = np.random.default_rng(0).uniform(-1, 1, (7, 3, 48, 48)).astype(np.float32)
    for a, b in zip(small.onet(crops), big.onet(crops), strict=True):
        assert a.shape[0] == 7
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    frames = np.stack([astronaut] * 4)
    det_small = detect_faces(frames, small, MtcnnParams())
    assert len(det_small) == 4
    np.testing.assert_allclose(det_small.boxes, detect_faces(frames, big, MtcnnParams()).boxes)


# --------------------------------------------------------------------------------------------
# No face, max_side, validation
# --------------------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("image", ["coffee", "black"])
def test_detect_faces_returns_empty_arrays_when_no_face(nets, skdata, image):
    frame = skdata.coffee() if image == "coffee" else np.zeros((240, 320, 3), np.uint8)
    assert_empty(detect_faces(frame[None], nets, MtcnnParams()))


def test_detect_faces_returns_empty_arrays_when_batch_is_empty():
    assert_empty(detect_faces(np.zeros((0, 64, 64, 3), np.uint8), _FailingNets(), MtcnnParams()))


def test_detect_faces_returns_empty_arrays_when_frame_is_smaller_than_min_face():
    frames = np.zeros((2, 15, 300, 3), np.uint8)  # no pyramid level: nothing to run
    assert_empty(detect_faces(frames, _FailingNets(), MtcnnParams()))


@pytest.mark.torch
def test_detect_faces_maps_boxes_to_input_pixels_when_max_side_downscales(nets, astronaut):
    original = detect_faces(astronaut[None], nets, MtcnnParams())
    upscaled = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    small = detect_faces(upscaled[None], nets, MtcnnParams(max_side=512))
    assert len(original) == len(small) == 1
    iou = iou_matrix(original.boxes * 2, small.boxes)[0, 0]
    assert iou >= 0.9, iou
    assert np.abs(small.landmarks - original.landmarks * 2).max() <= 6.0
    assert abs(float(small.scores[0] - original.scores[0])) < 1e-3


@pytest.mark.torch
def test_detect_faces_maps_boxes_per_axis_when_max_side_downscales_wide_frame(nets, astronaut):
    wide = np.zeros((512, 910, 3), np.uint8)
    wide[:, 200:712] = astronaut
    full = detect_faces(wide[None], nets, MtcnnParams())
    small = detect_faces(wide[None], nets, MtcnnParams(max_side=455))
    assert len(full) == len(small) == 1
    assert iou_matrix(full.boxes, small.boxes)[0, 0] >= 0.9


@pytest.mark.torch
def test_detect_faces_ignores_max_side_when_frames_are_already_small(nets, astronaut):
    a = detect_faces(astronaut[None], nets, MtcnnParams())
    b = detect_faces(astronaut[None], nets, MtcnnParams(max_side=2000))
    np.testing.assert_array_equal(a.boxes, b.boxes)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((1, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32, 3), np.uint8), "rank 4"),
        (np.zeros((1, 1, 32, 32, 3), np.uint8), "rank 4"),
        (np.zeros((1, 32, 32, 4), np.uint8), "3 channels"),
        (np.zeros((1, 3, 32, 32), np.uint8), "3 channels"),
        ([[[[0, 0, 0]]]], "numpy array"),
    ],
    ids=["float", "rank3", "rank5", "rgba", "nchw", "list"],
)
def test_detect_faces_raises_value_error_when_frames_are_malformed(frames, message):
    with pytest.raises(ValueError, match=message):
        detect_faces(frames, _FailingNets(), MtcnnParams())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_face_size": 0},
        {"thresholds": (0.6, 0.7)},
        {"thresholds": (0.6, 0.7, 1.5)},
        {"factor": 1.0},
        {"max_side": 8},
        {"pnet_batch_frames": 0},
        {"max_faces_per_frame": 0},
    ],
)
def test_mtcnn_params_raise_value_error_when_invalid(kwargs):
    with pytest.raises(ValueError):
        MtcnnParams(**kwargs)


def test_pipeline_mtcnn_does_not_import_torch_when_imported():
    code = (
        "import sys, fakescope.pipeline.mtcnn as m; "
        "bad = [k for k in ('torch', 'onnxruntime', 'facenet_pytorch') if k in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
