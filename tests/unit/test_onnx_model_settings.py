"""How an ONNX model's ``config.pbtxt`` parameters become ONNX Runtime settings."""

from __future__ import annotations

import pytest

from fakescope.serving.model_config import onnx_model_settings


def _config(**params: str) -> dict:
    return {
        "name": "mtcnn_pnet",
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }


@pytest.mark.parametrize(
    ("value", "option"), [("0", "EXHAUSTIVE"), ("1", "HEURISTIC"), ("2", "DEFAULT")]
)
def test_onnx_model_settings_maps_cudnn_search_to_the_cuda_option_when_the_backend_value_is_set(
    value: str, option: str
) -> None:
    settings = onnx_model_settings(_config(cudnn_conv_algo_search=value))
    assert settings.cudnn_conv_algo_search == option


def test_onnx_model_settings_leaves_cudnn_search_to_onnx_runtime_when_the_parameter_is_absent():
    settings = onnx_model_settings(_config(intra_op_thread_count="2"))
    assert settings.cudnn_conv_algo_search is None
    assert settings.intra_op_threads == 2
    assert settings.filename == "model.onnx"


@pytest.mark.parametrize("value", ["HEURISTIC", "3", ""])
def test_onnx_model_settings_names_the_choices_when_cudnn_search_is_not_a_backend_value(
    value: str,
) -> None:
    with pytest.raises(ValueError, match=r"mtcnn_pnet: cudnn_conv_algo_search must be one of 0"):
        onnx_model_settings(_config(cudnn_conv_algo_search=value))
