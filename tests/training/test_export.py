"""Export tests: ONNX vs PyTorch parity, and the committed models are what the code exports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="export needs the train extra (torch)")
pytest.importorskip("facenet_pytorch", reason="export needs facenet-pytorch")

import onnx
import onnxruntime as ort
from onnx import numpy_helper

from fakescope import contract
from fakescope.export.classifier import (
    PARITY_TOLERANCE,
    ClassifierCheckpoint,
    default_spec,
    export_classifier,
    untrained_checkpoint,
)
from fakescope.export.mtcnn_onnx import META_MAX_ABS_DIFF
from fakescope.export.repository import (
    WEIGHT_ATOL,
    WEIGHT_RTOL,
    build_repository,
    classifier_config,
    onnx_differences,
    parity_faces,
)
from fakescope.export.versions import list_versions
from fakescope.pipeline.metadata import (
    read_classifier_limitations,
    read_classifier_spec,
    read_provenance,
)
from fakescope.serving.model_config import latest_version_dir
from tests.support.servers import REPOSITORY

GENERATED_MODELS = [
    "mtcnn_pnet/1/model.onnx",
    "mtcnn_rnet/1/model.onnx",
    "mtcnn_onet/1/model.onnx",
    "face_classifier/1/model.onnx",
]
GENERATED_TEXT = ["face_classifier/1/MODEL_CARD.md"]
CLASSIFIER_V1 = REPOSITORY / "face_classifier/1/model.onnx"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    repo = tmp_path_factory.mktemp("rebuilt")
    build_repository(repo)
    return repo


def _edited_copy(source: Path, target: Path, edit) -> Path:
    """Write ``source`` with ``edit(model)`` applied to ``target``."""
    model = onnx.load(str(source))
    edit(model)
    onnx.save(model, str(target))
    return target


def _add_to_initializer(model, name: str, delta, index: int | None = None) -> None:
    """Add ``delta`` to initializer ``name`` (to its flat element ``index``, or to all)."""
    tensor = next(t for t in model.graph.initializer if t.name == name)
    values = numpy_helper.to_array(tensor).copy()
    flat = values.reshape(-1)
    if index is None:
        flat += np.asarray(delta, dtype=values.dtype).reshape(-1)
    else:
        flat[index] += values.dtype.type(delta)
    tensor.CopyFrom(numpy_helper.from_array(values, name))


def _set_metadata(model, key: str, value: str) -> None:
    entry = next(p for p in model.metadata_props if p.key == key)
    entry.value = value


def _largest_folded_weight(model) -> tuple[str, int, float]:
    """The BatchNorm-folded weight of largest magnitude (loosest tolerance): name, index, value."""
    folded = [numpy_helper.to_array(t) for t in model.graph.initializer]
    names = [t.name for t in model.graph.initializer]
    _, i = max((float(np.abs(v).max()), i) for i, v in enumerate(folded) if "onnx::" in names[i])
    index = int(np.argmax(np.abs(folded[i])))
    return names[i], index, float(folded[i].reshape(-1)[index])


@pytest.mark.parametrize("name", GENERATED_MODELS)
def test_build_repository_reproduces_committed_model_when_run_from_wheel_weights(rebuilt, name):
    problems = onnx_differences(REPOSITORY / name, rebuilt / name)
    assert not problems, (
        f"{name} differs from a fresh `fakescope export`: re-run `make export` and commit\n"
        + "\n".join(problems)
    )


@pytest.mark.parametrize("name", GENERATED_TEXT)
def test_build_repository_reproduces_committed_text_when_run_from_wheel_weights(rebuilt, name):
    assert (rebuilt / name).read_text() == (REPOSITORY / name).read_text(), (
        f"{name} differs from a fresh `fakescope export`: re-run `make export` and commit"
    )


@pytest.mark.parametrize("version", [str(v) for v in list_versions(REPOSITORY)])
def test_model_card_states_parity_bound_or_int8_verdict_when_committed(version):
    folder = REPOSITORY / "face_classifier" / version
    card = (folder / "MODEL_CARD.md").read_text()
    quantized = read_provenance(folder / "model.onnx").get("quantization")
    if quantized is None:  # exported from PyTorch: checked against it
        line = next(x for x in card.splitlines() if "ONNX Runtime vs PyTorch" in x)
        assert line == (
            f"- ONNX Runtime vs PyTorch: max |logit difference| ≤ {PARITY_TOLERANCE:.0e} "
            "(PARITY_TOLERANCE), checked at export on real face crops"
        )
    else:  # quantized from a float version: judged against it on validation faces
        record = json.loads(quantized)
        assert "PyTorch" not in card
        line = next(x for x in card.splitlines() if x.startswith("- int8 model of version"))
        assert line.startswith(f"- int8 model of version {record['source_version']}:")
        assert f"AUC {record['int8_this_cpu']['auc']:.4f}" in line


def test_onnx_differences_accepts_classifier_when_exported_with_other_cpu_kernels(
    rebuilt, tmp_path
):
    """A genuinely different rounding: PyTorch's scalar kernels instead of its AVX ones."""
    script = (
        "import sys; from pathlib import Path; "
        "from fakescope.export.classifier import untrained_checkpoint; "
        "from fakescope.export.repository import export_classifier_version; "
        "export_classifier_version(Path(sys.argv[1]), untrained_checkpoint())"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=True)
    name = "face_classifier/1/model.onnx"
    if (tmp_path / name).read_bytes() == (rebuilt / name).read_bytes():
        pytest.skip("PyTorch's scalar kernels are this CPU's own: no second rounding to compare")
    assert onnx_differences(REPOSITORY / name, tmp_path / name) == []
    assert onnx_differences(rebuilt / name, tmp_path / name) == []


def test_onnx_differences_accepts_classifier_when_weights_drift_like_another_cpu(tmp_path):
    """Every folded weight moved by up to 2e-6 (the drift measured on another CPU) passes."""
    rng = np.random.default_rng(0)

    def drift(model) -> None:
        for tensor in list(model.graph.initializer):
            if tensor.name.startswith("onnx::"):
                size = int(np.prod(tensor.dims))
                _add_to_initializer(model, tensor.name, rng.uniform(-2e-6, 2e-6, size))

    drifted = _edited_copy(CLASSIFIER_V1, tmp_path / "drifted.onnx", drift)
    assert drifted.read_bytes() != CLASSIFIER_V1.read_bytes()
    assert onnx_differences(CLASSIFIER_V1, drifted) == []


def test_onnx_differences_accepts_classifier_when_one_weight_moves_by_half_its_tolerance(
    tmp_path,
):
    name, index, value = _largest_folded_weight(onnx.load(str(CLASSIFIER_V1)))
    half = 0.5 * (WEIGHT_ATOL + WEIGHT_RTOL * abs(value))
    nudged = _edited_copy(
        CLASSIFIER_V1,
        tmp_path / "nudged.onnx",
        lambda m: _add_to_initializer(m, name, half, index),
    )
    assert nudged.read_bytes() != CLASSIFIER_V1.read_bytes()
    assert onnx_differences(CLASSIFIER_V1, nudged) == []


def test_onnx_differences_reports_weight_when_largest_folded_weight_moves_by_1e3(tmp_path):
    name, index, value = _largest_folded_weight(onnx.load(str(CLASSIFIER_V1)))
    assert 2 * (WEIGHT_ATOL + WEIGHT_RTOL * abs(value)) < 1e-3, "1e-3 must be beyond tolerance"
    moved = _edited_copy(
        CLASSIFIER_V1,
        tmp_path / "moved.onnx",
        lambda m: _add_to_initializer(m, name, 1e-3, index),
    )
    problems = onnx_differences(CLASSIFIER_V1, moved)
    assert any(p.startswith(f"initializer {name}: 1 of ") for p in problems), problems


def test_onnx_differences_reports_weight_and_outputs_when_head_bias_moves_by_1e3(tmp_path):
    moved = _edited_copy(
        CLASSIFIER_V1,
        tmp_path / "moved.onnx",
        lambda m: _add_to_initializer(m, "backbone._fc.bias", 1e-3),
    )
    problems = onnx_differences(CLASSIFIER_V1, moved)
    assert any(p.startswith("initializer backbone._fc.bias:") for p in problems), problems
    logit = f"output {contract.CLASSIFIER_LOGIT} on real faces"
    assert any(p.startswith(logit) for p in problems), problems


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (contract.META_MEAN, "[0.485, 0.456, 0.406]"),
        (contract.META_STD, "[0.5, 0.5, 0.50001]"),
        (contract.META_FACE_MARGIN, "0.25"),
        (contract.META_INPUT_SIZE, "240"),
    ],
)
def test_onnx_differences_reports_preprocessing_when_metadata_value_changes(tmp_path, key, value):
    changed = _edited_copy(
        CLASSIFIER_V1, tmp_path / "changed.onnx", lambda m: _set_metadata(m, key, value)
    )
    problems = onnx_differences(CLASSIFIER_V1, changed)
    assert any(p.startswith(f"metadata {key}:") for p in problems), problems


def test_onnx_differences_reports_preprocessing_when_graph_mean_moves_below_weight_tolerance(
    tmp_path,
):
    """The in-graph pixel mean (127.5) is compared exactly, not with the weights' tolerance."""
    moved = _edited_copy(
        CLASSIFIER_V1, tmp_path / "moved.onnx", lambda m: _add_to_initializer(m, "mean", 1e-4, 0)
    )
    problems = onnx_differences(CLASSIFIER_V1, moved)
    assert problems == ["initializer mean: 1 of 3 values differ (compared exactly)"]


def test_onnx_differences_reports_metadata_key_when_one_is_added(tmp_path):
    def add(model) -> None:
        model.metadata_props.add(key="fakescope.parity", value="1.01e-06")

    added = _edited_copy(CLASSIFIER_V1, tmp_path / "added.onnx", add)
    problems = onnx_differences(CLASSIFIER_V1, added)
    assert any(p.startswith("metadata keys:") for p in problems), problems


def test_onnx_differences_reports_graph_when_a_node_attribute_changes(tmp_path):
    def change(model) -> None:
        node = next(n for n in model.graph.node if n.op_type == "Transpose")
        next(a for a in node.attribute if a.name == "perm").ints[:] = [0, 3, 2, 1]

    changed = _edited_copy(CLASSIFIER_V1, tmp_path / "changed.onnx", change)
    problems = onnx_differences(CLASSIFIER_V1, changed)
    assert problems == [
        "node /Transpose (Transpose): attributes {'perm': [0, 3, 2, 1]} "
        "!= committed {'perm': [0, 3, 1, 2]}"
    ]


def test_onnx_differences_reports_model_fields_when_opset_changes(tmp_path):
    def change(model) -> None:
        model.opset_import[0].version += 1

    changed = _edited_copy(CLASSIFIER_V1, tmp_path / "changed.onnx", change)
    problems = onnx_differences(CLASSIFIER_V1, changed)
    assert len(problems) == 1 and problems[0].startswith("model fields differ"), problems


def test_onnx_differences_reports_weight_when_pnet_weight_moves_by_1e3(tmp_path):
    pnet = REPOSITORY / "mtcnn_pnet/1/model.onnx"
    moved = _edited_copy(
        pnet, tmp_path / "moved.onnx", lambda m: _add_to_initializer(m, "conv1.weight", 1e-3, 0)
    )
    problems = onnx_differences(pnet, moved)
    assert any(p.startswith("initializer conv1.weight: 1 of ") for p in problems), problems


@pytest.mark.parametrize(("value", "accepted"), [("1e-06", True), ("1e-03", False)])
def test_onnx_differences_bounds_measured_mtcnn_parity_when_its_value_changes(
    tmp_path, value, accepted
):
    onet = REPOSITORY / "mtcnn_onet/1/model.onnx"
    copy = tmp_path / "onet.onnx"
    shutil.copyfile(onet, copy)
    changed = _edited_copy(copy, copy, lambda m: _set_metadata(m, META_MAX_ABS_DIFF, value))
    problems = onnx_differences(onet, changed)
    assert (problems == []) is accepted, problems


def test_served_classifier_config_and_card_describe_newest_version_when_committed():
    folder = REPOSITORY / contract.CLASSIFIER_MODEL
    newest = latest_version_dir(folder)
    spec, trained = read_classifier_spec(newest / "model.onnx")
    limitations = read_classifier_limitations(newest / "model.onnx")
    assert limitations and limitations.startswith("Trained and validated on DFDC face swaps only")
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
