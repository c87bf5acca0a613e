"""The repository's warm-up samples: Triton runs every one of them when it loads a model.

Triton skips a sample whose ``batch_size`` (the number of requests it sends) is 0, the field's
default, without an error; ``mtcnn_pnet``'s was skipped that way until it was found.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope.paths import MODEL_REPOSITORY
from fakescope.serving.model_config import read_model_config

CONFIGS = sorted(MODEL_REPOSITORY.glob("*/config.pbtxt"))
WARMED = [c for c in CONFIGS if read_model_config(c).get("model_warmup")]


def test_model_warmup_is_configured_when_the_repository_is_read():
    # the two found at fault or added with it, besides the classifier's and the other nets'
    assert {c.parent.name for c in WARMED} >= {"mtcnn_pnet", "video_aggregator"}


@pytest.mark.parametrize("config_path", WARMED, ids=lambda p: p.parent.name)
def test_model_warmup_sends_requests_triton_runs_when_a_sample_is_configured(config_path: Path):
    config = read_model_config(config_path)
    inputs = {i["name"] for i in config["input"]}
    batching = int(config.get("max_batch_size", 0)) > 0
    for sample in config["model_warmup"]:
        where = f"{config['name']} warm-up sample {sample['name']!r}"
        requests = int(sample.get("batch_size", 0))
        assert requests >= 1, f"{where}: batch_size {requests}, which Triton skips"
        # a model that does not batch takes the sample's dims as the whole shape, one request
        assert batching or requests == 1, f"{where}: {requests} requests to a non-batching model"
        assert set(sample["inputs"]) == inputs, where
        for name, tensor in sample["inputs"].items():
            dims = [int(d) for d in tensor["dims"]]
            assert all(d >= 0 for d in dims), f"{where}: {name} has a variable dim {dims}"
