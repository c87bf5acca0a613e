import shutil

import pytest

from fakescope.paths import MODEL_REPOSITORY
from fakescope.serving.repository_check import RepositoryError, check_repository

REPO = MODEL_REPOSITORY


def test_check_repository_lists_models_when_repository_is_complete():
    models = check_repository(REPO)
    assert "deepfake_detector" in models and "face_classifier" in models


def test_check_repository_names_file_when_onnx_model_is_missing(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    (repo / "mtcnn_rnet" / "1" / "model.onnx").unlink()
    with pytest.raises(RepositoryError, match=r"mtcnn_rnet/1/model.onnx"):
        check_repository(repo)


def test_check_repository_names_file_when_config_is_missing(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    (repo / "face_cropper" / "config.pbtxt").unlink()
    with pytest.raises(RepositoryError, match=r"face_cropper/config.pbtxt"):
        check_repository(repo)


def test_check_repository_rejects_path_when_not_a_directory(tmp_path):
    with pytest.raises(RepositoryError, match="not found"):
        check_repository(tmp_path / "nope")


def test_onnx_model_configs_let_idle_threads_sleep_when_served_on_cpu():
    from fakescope.serving.model_config import config_parameters

    onnx_models = [
        config.parent.name
        for config in sorted(REPO.glob("*/config.pbtxt"))
        if 'backend: "onnxruntime"' in config.read_text()
    ]
    assert len(onnx_models) == 4, onnx_models
    for model in onnx_models:
        params = config_parameters(REPO / model / "config.pbtxt")
        assert params.get("session.intra_op.allow_spinning") == "0", model
