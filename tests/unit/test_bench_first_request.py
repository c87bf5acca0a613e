"""The first-request benchmark's repository edits and table (benchmarks/first_request.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from fakescope import contract
from fakescope.benchmarks.first_request import (
    SETTINGS,
    STEPS,
    main,
    render_markdown,
    repository_for,
    without_detector_warmup,
    without_warmup,
)
from fakescope.serving.detector_nets import WARMUP_PARAMETER, warm_up_wanted
from fakescope.serving.model_config import parameters, read_model_config
from tests.support.bench_summaries import TWO_CORE_MACHINE
from tests.support.servers import REPOSITORY


def _config(repository: Path, model: str) -> dict[str, Any]:
    return read_model_config(repository / model / "config.pbtxt")


def test_repository_for_removes_the_warm_ups_a_setting_leaves_out_when_copying(tmp_path: Path):
    copy = repository_for(SETTINGS["small pages"], REPOSITORY, tmp_path / "repo")
    aggregator = _config(copy, contract.VIDEO_AGGREGATOR_MODEL)
    assert "model_warmup" not in aggregator
    assert (
        aggregator["parameters"]
        == (_config(REPOSITORY, contract.VIDEO_AGGREGATOR_MODEL)["parameters"])
    )
    assert not warm_up_wanted(parameters(_config(copy, contract.FACE_DETECTOR_MODEL)))
    assert _config(copy, contract.PNET_MODEL)["model_warmup"]


def test_repository_for_keeps_the_aggregator_warm_up_when_setting_has_only_that(tmp_path: Path):
    setting = SETTINGS["small pages + aggregator warm-up"]
    copy = repository_for(setting, REPOSITORY, tmp_path / "repo")
    assert _config(copy, contract.VIDEO_AGGREGATOR_MODEL)["model_warmup"]
    assert not warm_up_wanted(parameters(_config(copy, contract.FACE_DETECTOR_MODEL)))


def test_repository_for_gives_the_repository_itself_when_setting_keeps_every_warm_up(
    tmp_path: Path,
):
    folder = tmp_path / "repo"
    assert repository_for(SETTINGS["small pages + warm-ups"], REPOSITORY, folder) == REPOSITORY
    assert not folder.exists()


def test_without_warmup_raises_when_the_model_has_none(tmp_path: Path) -> None:
    config = tmp_path / "config.pbtxt"
    shutil.copy(REPOSITORY / contract.FACE_SCORER_MODEL / "config.pbtxt", config)
    with pytest.raises(ValueError, match="no model_warmup block"):
        without_warmup(config)


def test_without_detector_warmup_raises_when_it_is_not_on(tmp_path: Path) -> None:
    config = tmp_path / "config.pbtxt"
    shutil.copy(REPOSITORY / contract.FACE_DETECTOR_MODEL / "config.pbtxt", config)
    without_detector_warmup(config)
    with pytest.raises(ValueError, match=f"{WARMUP_PARAMETER} is not set to true"):
        without_detector_warmup(config)


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


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--output", "table.md"]])
def test_first_request_main_exits_2_when_arguments_are_invalid(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
