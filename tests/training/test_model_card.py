"""The served classifier's model card is what code writes from its metadata and result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakescope import contract
from fakescope.export.model_card import load_results, model_card
from fakescope.pipeline.metadata import read_classifier_spec, read_provenance
from fakescope.serving.model_config import served_version_dir
from tests.support.servers import REPOSITORY

PROJECT = REPOSITORY.parent
SERVED = served_version_dir(REPOSITORY / contract.CLASSIFIER_MODEL)
RESULTS = PROJECT / "docs" / "results" / contract.CLASSIFIER_MODEL / f"v{SERVED.name}"


def _rendered() -> str:
    spec, trained = read_classifier_spec(SERVED / "model.onnx")
    provenance = read_provenance(SERVED / "model.onnx")
    return model_card(spec, trained, provenance, int(SERVED.name), load_results(RESULTS, PROJECT))


def test_served_model_card_matches_rendering_when_results_are_committed():
    assert RESULTS.is_dir(), f"the served version's evaluation reports belong in {RESULTS}"
    committed = (SERVED / "MODEL_CARD.md").read_text()
    assert committed == _rendered(), (
        f"re-run `fakescope model-card {SERVED.name} --results {RESULTS.relative_to(PROJECT)}`"
    )
    assert (REPOSITORY / contract.CLASSIFIER_MODEL / "MODEL_CARD.md").read_text() == committed


def test_served_model_card_reports_each_result_file_when_rendered():
    card = _rendered()
    for path, report in load_results(RESULTS, PROJECT).items():
        assert f"]({path})" in card
        assert f"{report['auc']:.4f}" in card and f"{report['logloss']:.4f}" in card


def test_model_card_rendering_changes_when_a_result_figure_changes(tmp_path):
    results = tmp_path / "results" / "set"
    results.mkdir(parents=True)
    report = {
        "unit": "face",
        "n": 4,
        "auc": 0.75,
        "logloss": 0.5,
        "recall": 0.5,
        "precision": 1.0,
        "accuracy": 0.75,
        "threshold": 0.4,
        "confusion_matrix": {"matrix": [[2, 0], [1, 1]]},
    }
    (results / "metrics.json").write_text(json.dumps(report))
    spec, trained = read_classifier_spec(SERVED / "model.onnx")
    first = model_card(spec, trained, {}, 9, load_results(tmp_path / "results", tmp_path))
    assert "| 0.7500 | 0.5000 |" in first
    (results / "metrics.json").write_text(json.dumps({**report, "auc": 0.8}))
    second = model_card(spec, trained, {}, 9, load_results(tmp_path / "results", tmp_path))
    assert first != second and "| 0.8000 | 0.5000 |" in second


def test_load_results_fails_when_folder_has_no_report(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no \*/metrics\.json"):
        load_results(tmp_path, tmp_path)


def test_model_card_cli_exits_2_when_version_does_not_exist(capsys):
    from fakescope.cli import main

    assert main(["model-card", "999"]) == 2
    assert "no face_classifier version 999" in capsys.readouterr().err


def test_model_card_cli_rewrites_card_when_results_given(tmp_path):
    import shutil

    from fakescope.cli import main

    repository = tmp_path / "repository"
    shutil.copytree(REPOSITORY, repository)
    served = repository / contract.CLASSIFIER_MODEL / SERVED.name / "MODEL_CARD.md"
    served.write_text("stale\n")
    assert (
        main(
            ["model-card", SERVED.name, "--repository", str(repository), "--results", str(RESULTS)]
        )
        == 0
    )
    assert served.read_text() == (SERVED / "MODEL_CARD.md").read_text()
    assert Path(repository / contract.CLASSIFIER_MODEL / "MODEL_CARD.md").read_text() == (
        served.read_text()
    )


def test_model_card_states_the_int8_verdict_instead_of_pytorch_parity_when_quantized():
    spec, trained = read_classifier_spec(SERVED / "model.onnx")
    provenance = dict(read_provenance(SERVED / "model.onnx"))
    provenance.pop("quantization", None)
    assert "PyTorch" in model_card(spec, trained, provenance, 9)  # a float version's card
    record = {
        "source_version": 8,
        "format": "QDQ",
        "weights": "int8 per channel, 7 bits",
        "activations": "uint8, asymmetric",
        "calibration": {"method": "MinMax", "faces": 512, "split": "train", "seed": 0},
        "float_nodes": "the head and blocks 3, 8",
        "validation_faces": 4892,
        "tolerance": 0.005,
        "float": {"auc": 0.9398, "logloss": 0.3255},
        "int8_this_cpu": {"auc": 0.9375, "logloss": 0.3248},
        "int8_own_arithmetic": {"auc": 0.9373, "logloss": 0.3251},
    }
    quantized = {
        **provenance,
        "quantization": json.dumps(record),
        "quantize_command": "fakescope export --quantize faces/",
        "quantize_git_commit": "abc123",
    }
    card = model_card(spec, trained, quantized, 9)
    assert "PyTorch" not in card
    assert "int8 model of version 8" in card and "blocks 3, 8" in card
    for figure in ("0.9398", "0.3255", "0.9375", "0.3248", "0.9373", "0.3251"):
        assert figure in card
    assert "abc123 (quantization)" in card
    assert "fakescope export --quantize faces/" in card.split("## Reproduce")[1]
