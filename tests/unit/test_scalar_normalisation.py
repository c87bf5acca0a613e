"""The classifier's input normalisation with scalar constants (export/normalisation.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fakescope.export.normalisation import scalar_normalisation
from fakescope.paths import MODEL_REPOSITORY

SIZE = 8


def _normalising_model(mean: list[float], std: list[float], *, shared: bool) -> onnx.ModelProto:
    """uint8 NHWC in -> Transpose, Cast, Sub mean, Div std -> Conv: the exported classifier's head.

    ``shared``: the ``Div`` reads the mean's initializer through ``Identity``, as PyTorch's
    export writes it when mean and std are equal tensors.
    """
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(np.array(mean, np.float32).reshape(1, 3, 1, 1), "mean"),
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["nchw"], ["floats"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["floats", "mean"], ["centred"], name="sub"),
    ]
    if shared:
        nodes.insert(0, helper.make_node("Identity", ["mean"], ["std"]))
    else:
        initializers.append(
            numpy_helper.from_array(np.array(std, np.float32).reshape(1, 3, 1, 1), "std")
        )
    nodes += [
        helper.make_node("Div", ["centred", "std"], ["normalised"], name="div"),
        helper.make_node("Conv", ["normalised", "w"], ["features"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "normalising",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["n", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 4, SIZE, SIZE])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _outputs(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


def _constant_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    return {n.name: shapes[n.input[1]] for n in model.graph.node if n.op_type in ("Sub", "Div")}


@pytest.mark.parametrize("shared", [True, False])
def test_scalar_normalisation_gives_the_same_outputs_when_every_channel_is_equal(shared):
    model = _normalising_model([127.5] * 3, [127.5] * 3, shared=shared)
    images = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    before = _outputs(model, images)
    assert scalar_normalisation(model) == ["sub", "div"]
    onnx.checker.check_model(model, full_check=True)
    assert _constant_shapes(model) == {"sub": [], "div": []}
    np.testing.assert_array_equal(_outputs(model, images), before)
    # the per-channel constants and the Identity that shared them are gone
    names = {t.name for t in model.graph.initializer}
    assert names == {"w", "centred_scalar", "normalised_scalar"}
    assert not [n for n in model.graph.node if n.op_type == "Identity"]


def test_scalar_normalisation_keeps_a_constant_when_its_channels_differ():
    model = _normalising_model([123.7, 116.3, 103.5], [127.5] * 3, shared=False)
    images = np.random.default_rng(2).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    before = _outputs(model, images)
    assert scalar_normalisation(model) == ["div"]
    assert _constant_shapes(model) == {"sub": [1, 3, 1, 1], "div": []}
    np.testing.assert_allclose(_outputs(model, images), before, rtol=0, atol=1e-6)


def test_scalar_normalisation_keeps_a_constant_when_it_has_more_dimensions_than_the_input():
    # a [1, 1, 3, 1, 1] constant broadcasts the 4-D input to 5-D; a scalar would not
    model = _normalising_model([127.5] * 3, [127.5] * 3, shared=False)
    std = next(t for t in model.graph.initializer if t.name == "std")
    std.CopyFrom(numpy_helper.from_array(np.full((1, 1, 3, 1, 1), 127.5, np.float32), "std"))
    assert scalar_normalisation(model) == ["sub"]
    assert _constant_shapes(model) == {"sub": [], "div": [1, 1, 3, 1, 1]}


def test_scalar_normalisation_changes_nothing_when_another_operator_comes_first():
    model = _normalising_model([127.5] * 3, [127.5] * 3, shared=False)
    sub = next(n for n in model.graph.node if n.op_type == "Sub")
    sub.input[0] = "absolute"
    model.graph.node.insert(2, helper.make_node("Abs", ["floats"], ["absolute"]))
    onnx.checker.check_model(model, full_check=True)
    before = model.SerializeToString()
    assert scalar_normalisation(model) == []
    assert model.SerializeToString() == before


def test_scalar_normalisation_finds_the_served_classifiers_normalisation_when_loaded():
    """The exported classifier's graph has the shape the walk expects (both served formats)."""
    for version in ("4", "5"):
        path = MODEL_REPOSITORY / "face_classifier" / version / "model.onnx"
        model = onnx.load(str(path))
        assert len(scalar_normalisation(model)) == 2, version
