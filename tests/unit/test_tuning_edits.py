"""The config edits of the tuning benchmark (benchmarks/tuning.py) on the served configs."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from fakescope import contract
from fakescope.benchmarks.tuning import (
    set_instance_count,
    set_max_queue_size,
    set_parameter,
    variants,
    without_priorities,
)
from fakescope.paths import MODEL_REPOSITORY
from fakescope.serving.model_config import config_parameters


def _config(model: str) -> str:
    return (MODEL_REPOSITORY / model / "config.pbtxt").read_text()


def test_set_parameter_replaces_value_when_key_exists(tmp_path):
    text = set_parameter(_config(contract.FACE_DETECTOR_MODEL), "keyframe_stride", "1")
    (tmp_path / "config.pbtxt").write_text(text)
    params = config_parameters(tmp_path / "config.pbtxt")
    assert params["keyframe_stride"] == "1"
    assert params["min_face_size"] == "40"


def test_set_parameter_adds_block_when_config_has_no_parameters(tmp_path):
    text = set_parameter(_config(contract.PNET_MODEL), "intra_op_thread_count", "1")
    (tmp_path / "config.pbtxt").write_text(text)
    assert config_parameters(tmp_path / "config.pbtxt") == {"intra_op_thread_count": "1"}


def test_set_parameter_keeps_classifier_facts_when_adding_a_setting(tmp_path):
    text = set_parameter(_config(contract.CLASSIFIER_MODEL), "intra_op_thread_count", "1")
    (tmp_path / "config.pbtxt").write_text(text)
    params = config_parameters(tmp_path / "config.pbtxt")
    assert params["intra_op_thread_count"] == "1"
    assert contract.THRESHOLD_PARAMETER in params


def test_set_instance_count_and_queue_size_change_one_value_when_applied():
    text = _config(contract.FACE_DETECTOR_MODEL)
    assert "count: 2 kind" in set_instance_count(text, 2)
    edited = text_format.Parse(set_max_queue_size(text, 6), model_config_pb2.ModelConfig())
    served = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert edited.dynamic_batching.default_queue_policy.max_queue_size == 6
    # the per-level policies are the served ones
    assert (
        edited.dynamic_batching.priority_queue_policy
        == served.dynamic_batching.priority_queue_policy
    )
    with pytest.raises(ValueError, match="max_queue_size"):
        set_max_queue_size(_config(contract.PNET_MODEL), 8)


def test_variants_have_unique_names_when_listed():
    names = [v.name for v in variants()]
    assert len(names) == len(set(names)) and names[0] == "served"


def test_without_priorities_leaves_one_arrival_order_queue_when_applied():
    text = without_priorities(_config(contract.FACE_DETECTOR_MODEL))
    batching = text_format.Parse(text, model_config_pb2.ModelConfig()).dynamic_batching
    assert batching.priority_levels == 0 and batching.default_priority_level == 0
    assert batching.default_queue_policy.max_queue_size == 4
    assert not batching.priority_queue_policy
    with pytest.raises(ValueError, match="priority_levels"):
        without_priorities(_config(contract.PNET_MODEL))
