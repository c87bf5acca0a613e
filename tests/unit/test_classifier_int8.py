"""The pure parts of the int8 classifier benchmark (benchmarks/classifier_int8.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fakescope import contract
from fakescope.benchmarks.classifier_int8 import (
    Quality,
    accepted,
    calibration_names,
    head_nodes,
    main,
    with_extra_temperature,
)

FLOAT = Quality(auc=0.9398, logloss=0.3255)


def test_accepted_is_true_when_both_figures_are_within_the_tolerance():
    assert accepted(FLOAT, Quality(auc=0.9381, logloss=0.3290))


def test_accepted_is_true_when_the_deltas_equal_the_tolerance():
    assert accepted(FLOAT, Quality(auc=FLOAT.auc - 0.005, logloss=FLOAT.logloss + 0.005))


def test_accepted_is_false_when_logloss_rises_past_the_tolerance():
    assert not accepted(FLOAT, Quality(auc=0.9398, logloss=0.3496))


def test_accepted_is_false_when_auc_drops_past_the_tolerance():
    assert not accepted(FLOAT, Quality(auc=0.9340, logloss=0.3200))


def test_accepted_is_true_when_the_candidate_is_better():
    assert accepted(FLOAT, Quality(auc=0.96, logloss=0.30))


def test_calibration_names_are_a_seeded_sorted_subset_when_drawn_twice():
    train = [f"face{i:03d}.mp4" for i in range(100)]
    first = calibration_names(list(reversed(train)), 10, seed=0)
    assert first == calibration_names(train, 10, seed=0)  # order of the input does not matter
    assert first == sorted(set(first)) and set(first) <= set(train) and len(first) == 10
    assert first != calibration_names(train, 10, seed=1)


@pytest.mark.parametrize("count", [0, 101])
def test_calibration_names_raise_when_count_is_out_of_range(count):
    with pytest.raises(ValueError, match="calibration faces"):
        calibration_names([f"face{i}" for i in range(100)], count, seed=0)


def _tiny_classifier(temperature: float) -> onnx.ModelProto:
    """``[N, 4]`` features -> Gemm -> Div(temperature) = logit -> Sigmoid = probability."""
    weights = numpy_helper.from_array(np.array([[1.0, -2.0, 0.5, 3.0]], np.float32), "w")
    bias = numpy_helper.from_array(np.array([0.25], np.float32), "b")
    t = numpy_helper.from_array(np.array(temperature, np.float32), "t")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["raw"], name="fc", transB=1),
            helper.make_node("Div", ["raw", "t"], [contract.CLASSIFIER_LOGIT], name="divide"),
            helper.make_node(
                "Sigmoid", [contract.CLASSIFIER_LOGIT], [contract.CLASSIFIER_OUTPUT], name="sig"
            ),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [
            helper.make_tensor_value_info(contract.CLASSIFIER_LOGIT, TensorProto.FLOAT, ["n", 1]),
            helper.make_tensor_value_info(contract.CLASSIFIER_OUTPUT, TensorProto.FLOAT, ["n", 1]),
        ],
        [weights, bias, t],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {contract.META_TEMPERATURE: repr(temperature)})
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logit, probability = session.run(
        [contract.CLASSIFIER_LOGIT, contract.CLASSIFIER_OUTPUT], {"x": x}
    )
    return logit, probability


def test_with_extra_temperature_divides_logit_and_probability_when_appended():
    model = _tiny_classifier(1.5)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    logit, _ = _run(model, x)
    refit = with_extra_temperature(model, 2.0)
    onnx.checker.check_model(refit)
    new_logit, new_probability = _run(refit, x)
    np.testing.assert_allclose(new_logit, logit / 2.0, rtol=1e-6)
    np.testing.assert_allclose(new_probability, 1.0 / (1.0 + np.exp(-logit / 2.0)), rtol=1e-5)
    props = {p.key: p.value for p in refit.metadata_props}
    assert float(props[contract.META_TEMPERATURE]) == pytest.approx(3.0)
    assert _run(model, x)[0] == pytest.approx(logit)  # the original is left unchanged


def test_with_extra_temperature_raises_when_temperature_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        with_extra_temperature(_tiny_classifier(1.0), 0.0)


def test_head_nodes_are_the_fc_layer_and_the_writers_of_both_outputs():
    assert head_nodes(_tiny_classifier(1.0)) == ["fc", "divide", "sig"]


def test_main_skips_with_exit_2_when_the_face_crop_set_is_absent(tmp_path):
    output = tmp_path / "classifier_int8.json"
    code = main(["--data", str(tmp_path / "no-faces"), "--output", str(output)])
    assert code == 2
    assert not output.exists()
