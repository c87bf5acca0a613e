"""Export tests: ONNX vs PyTorch parity, and the committed models are what the code exports."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="export needs the train extra (torch)")
pytest.importorskip("facenet_pytorch", reason="export needs facenet-pytorch")

import onnxruntime as ort

from fakescope import contract
from fakescope.export.classifier import (
    PARITY_TOLERANCE,
    ClassifierCheckpoint,
    default_spec,
    export_classifier,
    untrained_checkpoint,
)
from fakescope.export.repository import build_repository, classifier_config, parity_faces
from fakescope.pipeline.metadata import read_classifier_limitations, read_classifier_spec
from fakescope.serving.model_config import latest_version_dir
from tests.servers import REPOSITORY

GENERATED = [
    "mtcnn_pnet/1/model.onnx",
    "mtcnn_rnet/1/model.onnx",
    "mtcnn_onet/1/model.onnx",
    "face_classifier/1/model.onnx",
    "face_classifier/1/MODEL_CARD.md",
]


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    repo = tmp_path_factory.mktemp("rebuilt")
    build_repository(repo)
    return repo


@pytest.mark.parametrize("name", GENERATED)
def test_build_repository_reproduces_committed_file_when_run_from_wheel_weights(rebuilt, name):
    assert (rebuilt / name).read_bytes() == (REPOSITORY / name).read_bytes(), (
        f"{name} differs from a fresh `fakescope export`: re-run `make export` and commit"
    )


def test_served_classifier_config_and_card_describe_newest_version_when_committed():
    folder = REPOSITORY / contract.CLASSIFIER_MODEL
    newest = latest_version_dir(folder)
    spec, trained = read_classifier_spec(newest / "model.onnx")
    limitations = read_classifier_limitations(newest / "model.onnx")
    assert limitations and limitations.startswith("Trained only on synthetic videos")
    expected = classifier_config(
        spec, trained=trained, version=int(newest.name), limitations=limitations
    )
    assert (folder / "config.pbtxt").read_text() == expected
    assert (folder / "MODEL_CARD.md").read_text() == (newest / "MODEL_CARD.md").read_text()


def test_classifier_export_matches_pytorch_when_lite0_on_real_faces(tmp_path):
    checkpoint = untrained_checkpoint("efficientnet-lite0")
    faces = parity_faces(checkpoint.spec.input_size)
    diff = export_classifier(checkpoint, tmp_path / "c.onnx", faces)
    assert diff <= PARITY_TOLERANCE
    session = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [contract.CLASSIFIER_INPUT]
    assert [o.name for o in session.get_outputs()] == [
        contract.CLASSIFIER_LOGIT,
        contract.CLASSIFIER_OUTPUT,
    ]
    logits = session.run([contract.CLASSIFIER_LOGIT], {contract.CLASSIFIER_INPUT: faces})[0]
    assert np.ptp(logits) > 1e-3, "parity on a constant output would prove nothing"


def test_classifier_export_writes_preprocessing_metadata_when_exported(tmp_path):
    checkpoint = untrained_checkpoint("efficientnet-lite0")
    export_classifier(checkpoint, tmp_path / "c.onnx", parity_faces(224))
    spec, trained = read_classifier_spec(tmp_path / "c.onnx")
    assert spec == checkpoint.spec
    assert trained is False


def test_classifier_export_handles_efficientnet_pytorch_family_when_b0(tmp_path):
    import torch

    torch.manual_seed(0)
    from efficientnet_pytorch import EfficientNet

    backbone = EfficientNet.from_name("efficientnet-b0", num_classes=1)
    spec = default_spec("efficientnet-b0")
    checkpoint = ClassifierCheckpoint("efficientnet-b0", backbone.state_dict(), False, spec)
    diff = export_classifier(checkpoint, tmp_path / "b0.onnx", parity_faces(spec.input_size))
    assert diff <= PARITY_TOLERANCE


def test_classifier_export_rejects_architecture_when_unknown():
    with pytest.raises(ValueError, match="unsupported architecture"):
        default_spec("resnet50")
