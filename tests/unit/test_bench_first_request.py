"""The first-request benchmark's repository edit and table (benchmarks/first_request.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope import contract
from fakescope.benchmarks.first_request import STEPS, render_markdown, without_warmup
from fakescope.serving.model_config import read_model_config
from tests.support.bench_summaries import TWO_CORE_MACHINE
from tests.support.servers import REPOSITORY


def test_without_warmup_removes_only_that_models_warmup_when_copying(tmp_path: Path) -> None:
    copy = without_warmup(REPOSITORY, contract.VIDEO_AGGREGATOR_MODEL, tmp_path / "repo")
    aggregator = read_model_config(copy / contract.VIDEO_AGGREGATOR_MODEL / "config.pbtxt")
    assert "model_warmup" not in aggregator
    assert (
        aggregator["parameters"]
        == read_model_config(REPOSITORY / contract.VIDEO_AGGREGATOR_MODEL / "config.pbtxt")[
            "parameters"
        ]
    )
    assert read_model_config(copy / contract.PNET_MODEL / "config.pbtxt")["model_warmup"]


def test_without_warmup_raises_when_the_model_has_none(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no model_warmup block"):
        without_warmup(REPOSITORY, contract.FACE_SCORER_MODEL, tmp_path / "repo")


def _cell(ratio: float, late: int) -> dict[str, object]:
    spread = {"median": ratio, "worst": 2 * ratio}
    return {
        "ratio": spread,
        "decode_s": {"median": 0.1, "worst": 0.2},
        "infer_s": {"median": 0.3, "worst": 0.4},
        "client_system_cpu_s": {"median": 0.05, "worst": 0.06},
        "server_system_cpu_s": {"median": 0.7, "worst": 0.8},
        "late": late,
        "steps_s": dict.fromkeys(STEPS, ratio),
    }


def test_first_request_table_gives_each_video_after_a_start_when_rendered() -> None:
    result = {
        "what": "the clip",
        "machine": TWO_CORE_MACHINE,
        "rounds": 5,
        "settings": {
            "numpy huge pages": {
                "ready_s": 1.234,
                "starts": 5,
                "videos": [_cell(1.1, 5), _cell(0.5, 0), _cell(0.3, 0)],
            },
        },
    }
    table = render_markdown(result)
    assert "5 starts per setting, the settings interleaved; 2 cores (Some CPU" in table
    assert (
        "| numpy huge pages | 1 | 1.100 / 2.200 | 0.100 / 0.200 | 0.300 / 0.400 "
        "| 0.050 / 0.060 | 0.700 / 0.800 | 5 of 5 |" in table
    )
    assert "| numpy huge pages | 3 | 0.300 / 0.600 |" in table
    assert "| numpy huge pages | 1 | 1.100 | 1.100 | 1.100 | 1.100 | 1.23 |" in table
    assert "| numpy huge pages | 3 | 0.300 | 0.300 | 0.300 | 0.300 | 1.23 |" in table
