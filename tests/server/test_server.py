"""Integration tests: the real embedded tritonserver, the committed model repository."""

from __future__ import annotations

import json
import math
import shutil
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from skimage import data
from tritonclient.utils import InferenceServerException

from fakescope import contract
from fakescope.pipeline.crops import crop_faces
from fakescope.pipeline.metadata import read_classifier_limitations, read_classifier_spec
from fakescope.pipeline.mtcnn import MtcnnParams, OnnxRuntimeMtcnnNets, detect_faces
from fakescope.serving.detector_nets import BLS, IN_PROCESS
from fakescope.serving.embedded import (
    EmbeddedTriton,
    ServerAddress,
    ServerStartError,
    shm_regions,
)
from fakescope.serving.model_config import detector_params, read_model_config, served_version_dir
from fakescope.serving.repository_check import RepositoryError
from tests.support.detector_queue import model_counts
from tests.support.servers import REPOSITORY, free_ports, wait_until

OUTPUTS = [
    contract.FAKE_PROBABILITY,
    contract.FRAME_SCORES,
    contract.FACE_BOXES,
    contract.FACE_SCORES,
    contract.STATUS,
]


def face_frames(n: int = 4, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """Frames with the astronaut's (real) face at a few positions."""
    width, height = size
    face = cv2.resize(data.astronaut(), (320, 320))
    frames = np.full((n, height, width, 3), 40, np.uint8)
    for i in range(n):
        x, y = 100 + 60 * i, 80 + 20 * i
        frames[i, y : y + 320, x : x + 320] = face
    return frames


def crowd_frame(rows: int = 4, cols: int = 6) -> np.ndarray:
    """One 1280x720 frame with rows*cols copies of the astronaut's face."""
    face = cv2.resize(data.astronaut()[0:260, 120:380], (200, 170))
    frame = np.full((720, 1280, 3), 30, np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = 10 + r * 178, 10 + c * 210
            frame[y : y + 170, x : x + 200] = face
    return frame[None]


def _infer(protocol: str, triton: EmbeddedTriton, frames: np.ndarray):
    module = grpcclient if protocol == "grpc" else httpclient
    url = triton.address.grpc_url if protocol == "grpc" else triton.address.http_url
    client = module.InferenceServerClient(url)
    inputs = [module.InferInput(contract.FRAMES, list(frames.shape), "UINT8")]
    inputs[0].set_data_from_numpy(frames)
    outputs = [module.InferRequestedOutput(name) for name in OUTPUTS]
    result = client.infer(contract.ENSEMBLE_MODEL, inputs, outputs=outputs)
    return {name: result.as_numpy(name) for name in OUTPUTS}


def _detector_params() -> MtcnnParams:
    return detector_params(REPOSITORY)


def _healthy(triton: EmbeddedTriton) -> bool:
    return httpclient.InferenceServerClient(triton.address.http_url).is_model_ready(
        contract.ENSEMBLE_MODEL
    )


def test_ensemble_config_is_an_ensemble_when_queried_over_http(triton):
    url = f"http://{triton.address.http_url}/v2/models/{contract.ENSEMBLE_MODEL}/config"
    with urllib.request.urlopen(url) as response:
        config = json.load(response)
    assert config["platform"] == "ensemble"
    steps = [s["model_name"] for s in config["ensemble_scheduling"]["step"]]
    assert steps == [
        contract.FACE_DETECTOR_MODEL,
        contract.FACE_SCORER_MODEL,
        contract.VIDEO_AGGREGATOR_MODEL,
    ]
    assert {o["name"] for o in config["output"]} == set(OUTPUTS)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_returns_documented_outputs_when_frames_have_a_face(triton, protocol):
    frames = face_frames(4)
    out = _infer(protocol, triton, frames)
    assert out[contract.STATUS].tolist() == [b"ok"]
    boxes = out[contract.FACE_BOXES]
    assert boxes.shape == (4, 6)
    assert sorted(boxes[:, 0].astype(int).tolist()) == [0, 1, 2, 3]
    for row in boxes:  # the face lies inside the pasted astronaut of its frame
        i = int(row[0])
        x, y = 100 + 60 * i, 80 + 20 * i
        assert x <= row[1] < row[3] <= x + 320 and y <= row[2] < row[4] <= y + 320
        assert row[5] > 0.95
    scores = out[contract.FACE_SCORES]
    assert scores.shape == (4,) and np.all((scores > 0) & (scores < 1))
    assert out[contract.FRAME_SCORES].shape == (4,)
    assert 0.0 < float(out[contract.FAKE_PROBABILITY][0]) < 1.0


def _net_requests(server: EmbeddedTriton) -> dict[str, int]:
    client = grpcclient.InferenceServerClient(server.address.grpc_url)
    counts = {}
    for name in contract.MTCNN_MODELS:
        stats = client.get_inference_statistics(name, as_json=True)["model_stats"]
        counts[name] = sum(int(s.get("inference_count", 0)) for s in stats)
    return counts


def test_face_detector_finds_same_faces_when_nets_run_in_process_or_through_bls(triton, tmp_path):
    """The embedded server's placement (nets in face_detector) equals the NGC image's (BLS)."""
    assert triton.detector_nets == IN_PROCESS
    http, grpc, metrics = free_ports(3)
    with EmbeddedTriton(
        REPOSITORY,
        ServerAddress("127.0.0.1", http, grpc, metrics),
        runtime_dir=tmp_path / "rt",
        detector_nets=BLS,
    ) as bls:
        # moving faces (carried between keyframes and verified by O-Net), and a crowd
        for frames in (face_frames(8), crowd_frame()):
            in_process_before, bls_before = _net_requests(triton), _net_requests(bls)
            here = _infer("grpc", triton, frames)[contract.FACE_BOXES]
            there = _infer("grpc", bls, frames)[contract.FACE_BOXES]
            assert len(here) >= len(frames)
            np.testing.assert_array_equal(here[:, 0], there[:, 0])
            np.testing.assert_allclose(here[:, 1:], there[:, 1:], atol=1e-3)
            # each placement really ran where it says: only BLS calls the mtcnn_* models
            assert _net_requests(triton) == in_process_before
            assert all(_net_requests(bls)[n] > bls_before[n] for n in contract.MTCNN_MODELS)


def test_ensemble_scores_match_in_process_onnx_runtime_when_same_frames(triton):
    """The served pipeline equals the same ONNX models run in-process (no hidden transform)."""
    frames = face_frames(3)
    out = _infer("grpc", triton, frames)
    nets = OnnxRuntimeMtcnnNets(REPOSITORY)
    found = detect_faces(frames, nets, _detector_params())
    np.testing.assert_allclose(out[contract.FACE_BOXES][:, 1:5], found.boxes, atol=1e-3)
    classifier = served_version_dir(REPOSITORY / contract.CLASSIFIER_MODEL) / "model.onnx"
    spec, _ = read_classifier_spec(classifier)
    crops = crop_faces(
        frames,
        out[contract.FACE_BOXES],
        size=spec.input_size,
        margin=spec.face_margin,
        shift=spec.face_shift,
    )
    session = ort.InferenceSession(str(classifier), providers=["CPUExecutionProvider"])
    expected = session.run([contract.CLASSIFIER_OUTPUT], {contract.CLASSIFIER_INPUT: crops})[0]
    np.testing.assert_allclose(out[contract.FACE_SCORES], expected.ravel(), atol=1e-5)


def test_ensemble_reports_no_face_status_when_frames_have_no_face(triton):
    coffee = cv2.resize(data.coffee(), (640, 360))
    frames = np.stack([coffee, np.zeros_like(coffee)])
    out = _infer("http", triton, frames)
    assert out[contract.STATUS].tolist() == [b"no_face"]
    assert math.isnan(float(out[contract.FAKE_PROBABILITY][0]))
    assert out[contract.FACE_BOXES].shape == (0, 6)
    assert out[contract.FACE_SCORES].shape == (0,)
    assert np.isnan(out[contract.FRAME_SCORES]).all()


def test_ensemble_scores_every_face_kept_when_faces_exceed_classifier_chunk(triton):
    frames = np.concatenate([crowd_frame(), crowd_frame()[:, :, ::-1]])  # 24 faces each
    out = _infer("grpc", triton, frames)
    boxes = out[contract.FACE_BOXES]
    kept = _detector_params().max_faces_per_frame
    # the frame's largest faces, up to the cap; more than one chunk (16) goes to the classifier
    assert np.bincount(boxes[:, 0].astype(np.int64)).tolist() == [kept, kept]
    assert out[contract.FACE_SCORES].shape == (len(boxes),)
    for frame in range(len(frames)):
        mine = out[contract.FACE_SCORES][boxes[:, 0] == frame]
        assert float(out[contract.FRAME_SCORES][frame]) == pytest.approx(mine.max())


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((0, 64, 64, 3), np.uint8), "zero frames"),
        (np.zeros((65, 16, 16, 3), np.uint8), "maximum"),
        (np.zeros((1, 8, 64, 3), np.uint8), "outside"),
    ],
)
def test_ensemble_rejects_request_with_message_when_tensors_break_contract(triton, frames, message):
    with pytest.raises(InferenceServerException, match=message) as info:
        _infer("grpc", triton, frames)
    assert "INVALID_ARGUMENT" in str(info.value.status())
    assert _healthy(triton)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_rejects_wrong_dtype_when_frames_are_float(triton, protocol):
    module = grpcclient if protocol == "grpc" else httpclient
    url = triton.address.grpc_url if protocol == "grpc" else triton.address.http_url
    client = module.InferenceServerClient(url)
    frames = np.zeros((1, 64, 64, 3), np.float32)
    inputs = [module.InferInput(contract.FRAMES, list(frames.shape), "FP32")]
    inputs[0].set_data_from_numpy(frames)
    with pytest.raises(InferenceServerException, match=contract.FRAMES):
        client.infer(contract.ENSEMBLE_MODEL, inputs)
    assert _healthy(triton)


def test_ensemble_rejects_wrong_rank_when_frames_are_3d(triton):
    client = httpclient.InferenceServerClient(triton.address.http_url)
    inputs = [httpclient.InferInput(contract.FRAMES, [64, 64, 3], "UINT8")]
    inputs[0].set_data_from_numpy(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InferenceServerException, match=contract.FRAMES):
        client.infer(contract.ENSEMBLE_MODEL, inputs)
    assert _healthy(triton)


def test_classifier_config_states_its_onnx_trained_flag_when_queried(triton):
    client = grpcclient.InferenceServerClient(triton.address.grpc_url)
    config = client.get_model_config(contract.CLASSIFIER_MODEL, as_json=True)["config"]
    _, trained = read_classifier_spec(
        served_version_dir(REPOSITORY / contract.CLASSIFIER_MODEL) / "model.onnx"
    )
    assert config["parameters"]["trained"]["string_value"] == str(trained).lower()
    assert config["dynamic_batching"]


def test_metrics_endpoint_counts_inferences_when_requests_were_served(triton):
    url = f"http://{triton.address.host}:{triton.address.metrics_port}/metrics"
    before = model_counts(url, contract.ENSEMBLE_MODEL)[1]
    _infer("http", triton, face_frames(1))
    # Triton counts the ensemble's request when it releases it, just after the response
    assert wait_until(lambda: model_counts(url, contract.ENSEMBLE_MODEL)[1] > before, 10)
    assert model_counts(url, contract.ENSEMBLE_MODEL)[1] == before + 1


def _server(repository: Path, tmp_path: Path, ports: list[int] | None = None) -> EmbeddedTriton:
    http, grpc, metrics = ports or free_ports(3)
    return EmbeddedTriton(
        repository,
        ServerAddress("127.0.0.1", http, grpc, metrics),
        runtime_dir=tmp_path / "runtime",
        ready_timeout_s=60,
    )


def test_embedded_triton_runs_every_warmup_sample_when_started(tmp_path):
    """Before any request, each model has served exactly the requests its warm-up samples send."""
    with _server(REPOSITORY, tmp_path) as server:
        client = grpcclient.InferenceServerClient(server.address.grpc_url)
        for config_path in sorted(REPOSITORY.glob("*/config.pbtxt")):
            config = read_model_config(config_path)
            samples = config.get("model_warmup", [])
            stats = client.get_inference_statistics(config["name"], as_json=True)["model_stats"]
            served = sum(int(s.get("inference_count", 0)) for s in stats)
            assert served >= len(samples), f"{config['name']}: a warm-up sample was skipped"
            assert served == sum(int(s.get("batch_size", 0)) for s in samples), config["name"]


def test_embedded_triton_refuses_to_start_when_port_is_taken(triton, tmp_path):
    ports = [triton.address.http_port, *free_ports(2)]
    with pytest.raises(ServerStartError, match=f"port {ports[0]}"):
        _server(REPOSITORY, tmp_path, ports).start()


def test_embedded_triton_names_file_when_model_file_is_missing(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPOSITORY, repo)
    (repo / contract.ONET_MODEL / "1" / "model.onnx").unlink()
    with pytest.raises(RepositoryError, match=r"mtcnn_onet/1/model\.onnx"):
        _server(repo, tmp_path).start()


def test_embedded_triton_names_model_and_cleans_up_when_onnx_file_is_corrupt(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPOSITORY, repo)
    (repo / contract.RNET_MODEL / "1" / "model.onnx").write_bytes(b"not an onnx file")
    server = _server(repo, tmp_path)
    with pytest.raises(ServerStartError, match=contract.RNET_MODEL):
        server.start()
    assert shm_regions(server.address.http_port) == []


def _killing_tritonserver_at_load(repo: Path, starts: int, count: Path) -> None:
    """Make video_aggregator's stub kill tritonserver while it loads, in its first ``starts``.

    ``count`` is a file the stub appends to at each load, so the test can count the starts.
    """
    model = repo / contract.VIDEO_AGGREGATOR_MODEL / "1" / "model.py"
    model.write_text(
        model.read_text()
        + "\n\nimport os as _os, signal as _signal\n"
        + f"with open({str(count)!r}, 'a') as _count:\n"
        + "    _count.write('x')\n"
        + f"if len(open({str(count)!r}).read()) <= {starts}:\n"
        + "    _os.kill(_os.getppid(), _signal.SIGKILL)  # tritonserver, which started this stub\n"
    )


def test_embedded_triton_starts_again_once_when_killed_by_a_signal_during_start_up(
    tmp_path, caplog
):
    repo, count = tmp_path / "repo", tmp_path / "loads"
    shutil.copytree(REPOSITORY, repo)
    _killing_tritonserver_at_load(repo, starts=1, count=count)
    server = _server(repo, tmp_path)
    with caplog.at_level("WARNING", logger="fakescope.serving.embedded"):
        server.start()
    try:
        assert server.is_ready()
        assert count.read_text() == "xx"  # killed in the first start, loaded in the second
        assert "killed by signal 9 during start-up" in caplog.text
    finally:
        server.stop()
    assert shm_regions(server.address.http_port) == []


def test_embedded_triton_gives_up_and_cleans_up_when_killed_at_every_start(tmp_path):
    repo, count = tmp_path / "repo", tmp_path / "loads"
    shutil.copytree(REPOSITORY, repo)
    _killing_tritonserver_at_load(repo, starts=99, count=count)
    server = _server(repo, tmp_path)
    with pytest.raises(ServerStartError, match=r"\(killed by signal 9, start 2\)"):
        server.start()
    assert count.read_text() == "xx"
    assert shm_regions(server.address.http_port) == []


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (area - inter))


def test_served_face_detector_matches_facenet_mtcnn_when_given_real_faces(triton):
    """Triton's detector vs facenet-pytorch's MTCNN.detect at the served parameters."""
    mtcnn_module = pytest.importorskip("facenet_pytorch", reason="needs the train extra")
    frames = np.concatenate([face_frames(2), crowd_frame(2, 3)])
    out = _infer("grpc", triton, frames)
    params = _detector_params()
    reference = mtcnn_module.MTCNN(
        keep_all=True,
        device="cpu",
        min_face_size=params.min_face_size,
        thresholds=list(params.thresholds),
        factor=params.factor,
    )
    served = out[contract.FACE_BOXES]
    for index, frame in enumerate(frames):
        scale = params.max_side / max(frame.shape[:2])
        small = cv2.resize(
            frame,
            (round(frame.shape[1] * scale), round(frame.shape[0] * scale)),
            interpolation=cv2.INTER_AREA,
        )
        boxes, _ = reference.detect(small)
        expected = np.asarray(boxes, np.float32).reshape(-1, 4) / scale
        ours = served[served[:, 0] == index][:, 1:5]
        assert len(ours) == len(expected) > 0
        for box in expected:
            assert max(_iou(box, mine) for mine in ours) >= 0.95


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_reads_the_served_classifier_limitations_when_its_onnx_states_them(triton, protocol):
    from fakescope.client.triton import DetectorClient

    served = served_version_dir(REPOSITORY / contract.CLASSIFIER_MODEL) / "model.onnx"
    stated = read_classifier_limitations(served)
    assert stated  # the committed classifier says what it cannot be trusted for
    url = triton.address.grpc_url if protocol == "grpc" else triton.address.http_url
    with DetectorClient(url, protocol) as client:
        facts = client.model_facts()
        assert facts.trained is True
        assert facts.limitations == stated
