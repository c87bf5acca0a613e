"""The int8 classifier benchmark (benchmarks/classifier_int8.py) on small models, no real faces."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fakescope import contract
from fakescope.benchmarks.classifier_int8 import (
    float_source,
    main,
    render_markdown,
    with_extra_temperature,
)
from fakescope.export.quantize import (
    QUANTIZATION_KEY,
    Quality,
    accepted,
    backbone_blocks,
    calibration_names,
    choose_float_blocks,
    head_nodes,
    own_arithmetic_options,
    quantize,
)
from fakescope.pipeline.metadata import ClassifierSpec, spec_to_metadata

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


def test_accepted_is_false_when_one_of_several_candidates_fails():
    on_this_cpu = Quality(auc=0.9313, logloss=0.3521)  # saturating int8 kernels
    own_arithmetic = Quality(auc=0.9396, logloss=0.3260)
    assert accepted(FLOAT, own_arithmetic)
    assert not accepted(FLOAT, own_arithmetic, on_this_cpu)
    assert accepted(FLOAT, own_arithmetic, own_arithmetic)


def test_accepted_is_false_when_there_is_no_candidate():
    assert not accepted(FLOAT)


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
    with pytest.raises(ValueError, match=r"selection faces must be 1\.\.100"):
        calibration_names([f"face{i}" for i in range(100)], count, 0, "selection faces")


@pytest.mark.parametrize(
    ("option", "value"),
    [("--float-blocks", "0"), ("--selection-faces", "0"), ("--calibration-faces", "0")],
)
def test_main_exits_2_when_a_count_option_is_below_1(tmp_path, option, value, capsys):
    output = tmp_path / "classifier_int8.json"
    with pytest.raises(SystemExit) as exit_info:
        main([option, value, "--data", str(tmp_path), "--output", str(output)])
    assert exit_info.value.code == 2
    assert f"error: {option} must be at least 1" in capsys.readouterr().err
    assert not output.exists()


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


def test_head_nodes_are_the_fc_layer_and_output_writers_when_model_has_a_head():
    assert head_nodes(_tiny_classifier(1.0)) == ["fc", "divide", "sig"]


def test_main_skips_with_exit_2_when_the_face_crop_set_is_absent(tmp_path):
    output = tmp_path / "classifier_int8.json"
    code = main(["--data", str(tmp_path / "no-faces"), "--output", str(output)])
    assert code == 2
    assert not output.exists()


def _two_block_convnet(path) -> None:
    """``[N, 3, 6, 6]`` -> two conv blocks named as the exported backbone's -> Gemm head."""
    rng = np.random.default_rng(2)
    first = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w0")
    second = numpy_helper.from_array(rng.normal(size=(4, 4, 1, 1)).astype(np.float32), "w1")
    fc = numpy_helper.from_array(rng.normal(size=(1, 4)).astype(np.float32), "fw")
    bias = numpy_helper.from_array(np.zeros((1,), np.float32), "fb")
    nodes = [
        helper.make_node(
            "Conv", [contract.CLASSIFIER_INPUT, "w0"], ["c0"], name="/backbone/_blocks.0/conv/Conv"
        ),
        helper.make_node("Relu", ["c0"], ["r0"], name="/backbone/_blocks.0/relu/Relu"),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], name="/backbone/_blocks.1/conv/Conv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="/backbone/_blocks.1/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["r1"], ["g"], name="/backbone/pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="/backbone/flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], [contract.CLASSIFIER_LOGIT], transB=1),
        helper.make_node(
            "Sigmoid", [contract.CLASSIFIER_LOGIT], [contract.CLASSIFIER_OUTPUT], name="sig"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "two_blocks",
        [
            helper.make_tensor_value_info(
                contract.CLASSIFIER_INPUT, TensorProto.FLOAT, ["n", 3, 6, 6]
            )
        ],
        [
            helper.make_tensor_value_info(contract.CLASSIFIER_LOGIT, TensorProto.FLOAT, ["n", 1]),
            helper.make_tensor_value_info(contract.CLASSIFIER_OUTPUT, TensorProto.FLOAT, ["n", 1]),
        ],
        [first, second, fc, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    spec = ClassifierSpec("tiny", 6, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 0.0)
    helper.set_model_props(model, spec_to_metadata(spec, trained=True))  # a classifier's facts
    onnx.save(model, str(path))


def _int8_weights(path) -> np.ndarray:
    model = onnx.load(str(path))
    weights = [
        numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT8
    ]
    assert weights, "no int8 weights: nothing was quantized"
    return np.concatenate([w.ravel() for w in weights]).astype(np.int64)


@pytest.mark.parametrize(("seven_bit", "largest"), [(False, 127), (True, 64)])
def test_quantize_bounds_the_weights_when_seven_bit_weights_are_asked(tmp_path, seven_bit, largest):
    source, target = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    _two_block_convnet(source)
    calibration = np.random.default_rng(1).normal(size=(8, 3, 6, 6)).astype(np.float32)
    quantize(
        source,
        target,
        calibration,
        float_head=True,
        method="MinMax",
        seven_bit_weights=seven_bit,
    )
    weights = _int8_weights(target)
    # per channel and symmetric, each channel's largest weight maps to the range's end
    assert int(np.abs(weights).max()) == largest
    x = calibration[:2]
    session = ort.InferenceSession(
        str(target), own_arithmetic_options(), providers=["CPUExecutionProvider"]
    )
    reference = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    logit = session.run([contract.CLASSIFIER_LOGIT], {contract.CLASSIFIER_INPUT: x})[0]
    expected = reference.run([contract.CLASSIFIER_LOGIT], {contract.CLASSIFIER_INPUT: x})[0]
    np.testing.assert_allclose(logit, expected, atol=0.1)  # int8 rounding, not another model


def test_own_arithmetic_options_turn_graph_optimisations_off_when_built():
    options = own_arithmetic_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def _row(name: str, reference: str | None, **extra) -> dict:
    timing = {
        f"{kind}{size}": 1.0
        for size in (16, 32)
        for kind in ("ms_per_", "cpu_ms_per_", "speedup_", "cpu_speedup_")
    }
    timing = {k + ("_faces" if "ms_per" in k else ""): v for k, v in timing.items()}
    return {
        "variant": name,
        "description": name,
        "reference": reference,
        "refit_temperature": None,
        "metrics": {"auc": 0.94, "logloss": 0.33},
        **timing,
        **extra,
    }


def test_render_markdown_shows_own_arithmetic_figures_when_a_variant_has_them():
    result = {
        "model_version": "4",
        "machine": {
            "onnxruntime": "1.32.0",
            "cores": 2,
            "cpu_model": "AMD EPYC",
            "cpu_vector_extensions": ["avx2", "fma"],
            "loadavg_before": [0.5],
            "loadavg_after": [0.6],
        },
        "quantization": {"format": "QDQ", "weights": "w", "activations": "a"}
        | {"calibration_method": "MinMax"},
        "data": {"calibration_faces": 512, "val_faces": 4892}
        | {"split": {"seed": 0, "val_fraction": 0.12}},
        "timing": {"rounds": 40, "intra_op_threads": 2},
        "acceptance": {"tolerance": 0.005},
        "served_temperature": 1.05,
        "variants": [
            _row("float", None),
            _row(
                "int8",
                "float",
                delta_auc=-0.0085,
                delta_logloss=0.0268,
                accepted=False,
                metrics_own_arithmetic={"auc": 0.9381, "logloss": 0.3443},
            ),
        ],
    }
    table = render_markdown(result)
    assert "AMD EPYC, avx2 fma" in table
    float_row = next(line for line in table.splitlines() if line.startswith("| float |"))
    int8_row = next(line for line in table.splitlines() if line.startswith("| int8 |"))
    assert "| 0.9381 / 0.3443 |" in int8_row and "| no |" in int8_row
    cells = [cell.strip() for cell in float_row.split("|")]
    assert cells.count("–") == 4  # reference, both deltas and the own-arithmetic figures


def test_backbone_blocks_group_nodes_by_block_number_when_named_as_exported(tmp_path):
    _two_block_convnet(tmp_path / "model.onnx")
    blocks = backbone_blocks(onnx.load(str(tmp_path / "model.onnx")))
    assert blocks == {
        "0": ["/backbone/_blocks.0/conv/Conv", "/backbone/_blocks.0/relu/Relu"],
        "1": ["/backbone/_blocks.1/conv/Conv", "/backbone/_blocks.1/relu/Relu"],
    }


def _float_conv_weights(path) -> set[str]:
    model = onnx.load(str(path))
    float_inits = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    return {n.input[1] for n in model.graph.node if n.op_type == "Conv"} & float_inits


def test_quantize_keeps_a_block_in_float_when_asked(tmp_path):
    source = tmp_path / "float.onnx"
    _two_block_convnet(source)
    calibration = np.random.default_rng(3).normal(size=(8, 3, 6, 6)).astype(np.float32)
    quantize(source, tmp_path / "all.onnx", calibration, float_head=True, method="MinMax")
    quantize(
        source,
        tmp_path / "mixed.onnx",
        calibration,
        float_head=True,
        method="MinMax",
        float_blocks=["1"],
    )
    assert _float_conv_weights(tmp_path / "all.onnx") == set()  # both convs read int8 weights
    assert _float_conv_weights(tmp_path / "mixed.onnx") == {"w1"}


def test_quantize_raises_when_a_float_block_does_not_exist(tmp_path):
    source = tmp_path / "float.onnx"
    _two_block_convnet(source)
    calibration = np.zeros((2, 3, 6, 6), np.float32)
    with pytest.raises(ValueError, match="no backbone block 7"):
        quantize(
            source,
            tmp_path / "x.onnx",
            calibration,
            float_head=True,
            method="MinMax",
            float_blocks=["7"],
        )


def test_choose_float_blocks_returns_the_lowest_logloss_blocks_when_ranked(tmp_path):
    source = tmp_path / "float.onnx"
    _two_block_convnet(source)
    rng = np.random.default_rng(4)
    calibration = rng.normal(size=(16, 3, 6, 6)).astype(np.float32)
    faces = rng.normal(size=(64, 3, 6, 6)).astype(np.float32)
    labels = (rng.random(64) < 0.5).astype(np.float64)
    chosen, losses = choose_float_blocks(
        source, tmp_path, calibration, faces, labels, count=1, method="MinMax"
    )
    assert set(losses) == {"0", "1"} and len(chosen) == 1
    (other,) = set(losses) - set(chosen)
    assert losses[chosen[0]] <= losses[other]
    assert not list(tmp_path.glob("float-block-*.onnx"))  # the per-block models are removed


def _versions_with_int8(root, *, keep_float: bool):
    """A repository folder with float version 4 and version 5 recorded as its int8 model."""
    folder = root / contract.CLASSIFIER_MODEL
    for version in (4, 5):
        (folder / str(version)).mkdir(parents=True)
        model = _tiny_classifier(1.0)
        if version == 5:
            record = json.dumps({"source_version": 4})
            helper.set_model_props(
                model, {contract.META_PROVENANCE_PREFIX + QUANTIZATION_KEY: record}
            )
        onnx.save(model, str(folder / str(version) / "model.onnx"))
    if not keep_float:
        (folder / "4" / "model.onnx").unlink()
    return folder


def test_float_source_is_the_version_an_int8_model_was_made_from_when_served_is_int8(tmp_path):
    folder = _versions_with_int8(tmp_path, keep_float=True)
    assert float_source(folder / "5" / "model.onnx") == folder / "4" / "model.onnx"
    assert float_source(folder / "4" / "model.onnx") == folder / "4" / "model.onnx"


def test_float_source_raises_when_the_float_version_is_gone(tmp_path):
    folder = _versions_with_int8(tmp_path, keep_float=False)
    with pytest.raises(FileNotFoundError, match="float version"):
        float_source(folder / "5" / "model.onnx")
