"""Where face_detector runs the MTCNN nets, and how a net's ONNX settings are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope import contract
from fakescope.pipeline.mtcnn import OnnxRuntimeMtcnnNets, warm_up
from fakescope.serving.detector_nets import (
    BLS,
    IN_PROCESS,
    NETS_ENV,
    WARMUP_FRAMES,
    WARMUP_PARAMETER,
    in_process_nets,
    nets_placement,
    warm_up_wanted,
)
from fakescope.serving.embedded import EmbeddedTriton
from fakescope.serving.model_config import (
    config_parameters,
    detector_params,
    onnx_model_settings,
    read_model_config,
)
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


@pytest.mark.parametrize(("value", "wanted"), [("true", True), ("false", False)])
def test_warm_up_wanted_reads_the_parameter_when_true_or_false(value: str, wanted: bool):
    assert warm_up_wanted({WARMUP_PARAMETER: value}) is wanted


@pytest.mark.parametrize("params", [{}, {WARMUP_PARAMETER: "yes"}, {WARMUP_PARAMETER: "True"}])
def test_warm_up_wanted_names_the_parameter_when_missing_or_not_a_boolean(params):
    with pytest.raises(ValueError, match=f'{WARMUP_PARAMETER} must be "true" or "false"'):
        warm_up_wanted(params)


def test_warm_up_frames_are_a_valid_default_request_when_sent_by_the_client():
    """The blank request is what the client sends by default for a 16:9 video, and allowed."""
    count, height, width = WARMUP_FRAMES
    assert (count, width, height / width) == (
        contract.DEFAULT_NUM_FRAMES,
        contract.DEFAULT_MAX_SIDE,
        9 / 16,
    )
    params = config_parameters(REPOSITORY / contract.FACE_DETECTOR_MODEL / "config.pbtxt")
    assert count <= contract.MAX_FRAMES_PER_REQUEST
    assert count * height * width <= int(params["max_request_pixels"])
    assert warm_up_wanted(params)  # as committed


class _CountingNets:
    """The served nets, opened in this process, counting the calls to each."""

    def __init__(self) -> None:
        self.nets = OnnxRuntimeMtcnnNets(REPOSITORY)
        self.calls = {"pnet": 0, "rnet": 0, "onet": 0}

    def pnet(self, batch):
        self.calls["pnet"] += 1
        return self.nets.pnet(batch)

    def rnet(self, batch):
        self.calls["rnet"] += 1
        return self.nets.rnet(batch)

    def onet(self, batch):
        self.calls["onet"] += 1
        return self.nets.onet(batch)


def test_warm_up_runs_every_net_when_frames_are_blank():
    """Blank frames give R-Net and O-Net nothing to look at: they are run on their own."""
    nets = _CountingNets()
    warm_up(nets, detector_params(REPOSITORY), (2, 72, 128))
    assert min(nets.calls.values()) >= 1, nets.calls
