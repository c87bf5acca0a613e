import re
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
    (repo / "face_scorer" / "config.pbtxt").unlink()
    with pytest.raises(RepositoryError, match=r"face_scorer/config.pbtxt"):
        check_repository(repo)


def test_check_repository_rejects_path_when_not_a_directory(tmp_path):
    with pytest.raises(RepositoryError, match="not found"):
        check_repository(tmp_path / "nope")


def test_check_repository_rejects_parameter_when_real_onnxruntime_backend_ignores_it(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    config = repo / "mtcnn_pnet" / "config.pbtxt"
    # A session entry only the embedded stand-in would apply: the NGC image's backend ignores it.
    config.write_text(
        config.read_text()
        + 'parameters [ { key: "session.intra_op.allow_spinning" value: { string_value: "0" } } ]\n'
    )
    with pytest.raises(RepositoryError, match=r"mtcnn_pnet.*session\.intra_op\.allow_spinning"):
        check_repository(repo)


def test_check_repository_accepts_parameter_when_real_onnxruntime_backend_documents_it(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    config = repo / "mtcnn_pnet" / "config.pbtxt"
    config.write_text(
        config.read_text()
        + 'parameters [ { key: "intra_op_thread_count" value: { string_value: "2" } } ]\n'
    )
    assert "mtcnn_pnet" in check_repository(repo)


def test_check_repository_names_the_version_when_the_config_pins_one_without_a_folder(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    config = repo / "face_classifier" / "config.pbtxt"
    config.write_text(re.sub(r"versions: \[ \d+ \]", "versions: [ 7 ]", config.read_text()))
    with pytest.raises(RepositoryError, match=r"face_classifier/config.pbtxt pins version 7"):
        check_repository(repo)


def test_check_repository_checks_an_onnx_model_when_its_config_names_the_platform(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    config = repo / "mtcnn_rnet" / "config.pbtxt"
    config.write_text(
        config.read_text().replace('backend: "onnxruntime"', 'platform: "onnxruntime_onnx"')
    )
    (repo / "mtcnn_rnet" / "1" / "model.onnx").unlink()
    with pytest.raises(RepositoryError, match=r"mtcnn_rnet/1/model.onnx"):
        check_repository(repo)
