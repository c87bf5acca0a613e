"""Where face_detector runs the MTCNN nets, and how a net's ONNX settings are read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakescope import contract
from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets
from fakescope.serving.detector_nets import (
    BLS,
    IN_PROCESS,
    NETS_ENV,
    in_process_nets,
    nets_placement,
)
from fakescope.serving.embedded import EmbeddedTriton
from fakescope.serving.model_config import max_batch_size, onnx_model_settings, read_model_config
from tests.support.servers import REPOSITORY


def test_nets_placement_is_bls_when_variable_unset():
    assert nets_placement({}) == BLS


@pytest.mark.parametrize("value", [BLS, IN_PROCESS])
def test_nets_placement_reads_variable_when_set_to_a_placement(value):
    assert nets_placement({NETS_ENV: value}) == value


@pytest.mark.parametrize("value", ["", "gpu", "IN_PROCESS"])
def test_nets_placement_names_choices_when_value_is_unknown(value):
    with pytest.raises(ValueError, match=f"{NETS_ENV} must be one of bls, in_process"):
        nets_placement({NETS_ENV: value})


def test_embedded_triton_refuses_placement_when_unknown():
    with pytest.raises(ValueError, match=NETS_ENV):
        EmbeddedTriton(REPOSITORY, detector_nets="gpu")  # type: ignore[arg-type]


def test_onnx_model_settings_reads_file_and_threads_when_config_states_them(tmp_path: Path):
    config = tmp_path / "config.pbtxt"
    config.write_text(
        'name: "m"\nbackend: "onnxruntime"\ndefault_model_filename: "net.onnx"\n'
        'parameters [ { key: "intra_op_thread_count" value: { string_value: "1" } } ]\n'
    )
    settings = onnx_model_settings(read_model_config(config))
    assert (settings.filename, settings.intra_op_threads, settings.inter_op_threads) == (
        "net.onnx",
        1,
        None,
    )


def test_onnx_model_settings_gives_backend_defaults_when_config_is_silent():
    config = read_model_config(REPOSITORY / contract.PNET_MODEL / "config.pbtxt")
    settings = onnx_model_settings(config)
    assert (settings.filename, settings.intra_op_threads, settings.inter_op_threads) == (
        "model.onnx",
        None,
        None,
    )


def test_in_process_nets_names_net_when_its_model_file_is_corrupt(tmp_path: Path):
    repository = tmp_path / "repo"
    for name in (contract.FACE_DETECTOR_MODEL, *contract.MTCNN_MODELS):
        (repository / name).mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(
            (REPOSITORY / name / "config.pbtxt").read_text()
        )
    for name in contract.MTCNN_MODELS:
        (repository / name / "1").mkdir()
        source = REPOSITORY / name / "1" / "model.onnx"
        (repository / name / "1" / "model.onnx").write_bytes(source.read_bytes())
    (repository / contract.RNET_MODEL / "1" / "model.onnx").write_bytes(b"not an onnx file")
    args = {"model_repository": str(repository / contract.FACE_DETECTOR_MODEL)}
    with pytest.raises(RuntimeError, match=f"{contract.RNET_MODEL}: cannot load .*model.onnx"):
        in_process_nets(args)


def test_mtcnn_nets_from_sessions_refuses_when_a_net_is_missing():
    with pytest.raises(ValueError, match="need one session each"):
        OnnxRuntimeMtcnnNets.from_sessions({contract.PNET_MODEL: object()})


def test_in_process_nets_batch_each_net_as_its_config_says_when_opened_from_the_repository():
    nets = in_process_nets({"model_repository": str(REPOSITORY / contract.FACE_DETECTOR_MODEL)})
    assert nets.max_batch_sizes == {
        name: max_batch_size(REPOSITORY / name / "config.pbtxt") for name in contract.MTCNN_MODELS
    }
    # the served O-Net batches fewer crops than R-Net: one chunk size for all would hide that
    assert nets.max_batch_sizes[contract.ONET_MODEL] < nets.max_batch_sizes[contract.RNET_MODEL]


def test_mtcnn_nets_run_a_batch_in_chunks_of_the_nets_own_size_when_it_is_larger():
    sizes = {contract.PNET_MODEL: 0, contract.RNET_MODEL: 512, contract.ONET_MODEL: 2}
    chunked = OnnxRuntimeMtcnnNets(REPOSITORY, max_batch_size=sizes)
    crops = np.random.default_rng(0).uniform(-1, 1, (5, 3, 48, 48)).astype(np.float32)
    whole = OnnxRuntimeMtcnnNets(REPOSITORY).onet(crops)
    in_chunks = chunked.onet(crops)  # 2 + 2 + 1
    for a, b in zip(whole, in_chunks, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max_batch_size >= 0 for each"):
        OnnxRuntimeMtcnnNets(REPOSITORY, max_batch_size={contract.ONET_MODEL: 2})
