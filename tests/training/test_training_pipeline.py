"""End to end on a tiny DFDC-format set the test builds: version → train → evaluate → export.

The set: four real people from installed packages (astronaut, Grace Hopper, the cameraman, an
LFW face), each with a self-blended fake and a face swap from another person (12 videos,
1.5 s, 320x240). Training is Lite0 at 112 px for 3 epochs (the served size is 224; reduced
here only to keep CI short). ClearML runs offline into a temporary cache.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the train extra (torch)")
pytest.importorskip("clearml", reason="tracking needs clearml")
pytest.importorskip("sklearn", reason="metric parity needs scikit-learn")

import sklearn.metrics as sklearn_metrics
import torch

from fakescope import contract
from fakescope.cli import main as fakescope_main
from fakescope.export.versions import export_new_version, list_versions, rollback
from fakescope.pipeline.metadata import read_classifier_spec
from fakescope.training.dataset import assign_splits, load_dataset
from fakescope.training.synthetic_data import SynthConfig, synthesize_dataset
from tests.support.servers import REPOSITORY
from tests.support.training_helpers import run_cli, tiny_video, write_metadata

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLEARML_CACHE_DIR", str(root / "clearml"))
        for name in ("CLEARML_API_HOST", "CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY"):
            mp.delenv(name, raising=False)
        data = root / "data"
        synthesize_dataset(
            data, REPOSITORY, SynthConfig(pool="all", max_identities=4, seconds=1.5, seed=3)
        )
        yield root


def _events(session: Path) -> list[dict]:
    """Every event of a ClearML offline session zip (metrics.jsonl: one JSON list a line)."""
    with zipfile.ZipFile(session) as archive:
        lines = archive.read("metrics.jsonl").decode().splitlines()
    return [event for line in lines if line.strip() for event in json.loads(line)]


@pytest.fixture(scope="module")
def versioned(work):
    registry = work / "registry"
    assert (
        run_cli(
            [
                "dataset",
                "version",
                str(work / "data"),
                "--registry",
                str(registry),
                "--name",
                "tiny",
            ]
        )
        == 0
    )
    return registry


@pytest.fixture(scope="module")
def trained(work, versioned):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = run_cli(
            [
                "train",
                str(work / "data"),
                "--epochs",
                "3",
                "--patience",
                "5",
                "--input-size",
                "112",
                "--frames",
                "6",
                "--val-fraction",
                "0.25",
                "--seed",
                "1",
                "--output",
                str(work / "run"),
                "--cache",
                str(work / "cache"),
                "--registry",
                str(versioned),
                "--json",
                "--quiet",
            ]
        )
    assert code == 0
    return json.loads(buffer.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def evaluated(work, trained):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = run_cli(
            [
                "evaluate",
                str(work / "data"),
                "--model",
                trained["best_checkpoint"],
                "--frames",
                "6",
                "--output",
                str(work / "eval"),
                "--cache",
                str(work / "cache"),
                "--registry",
                str(work / "registry"),
                "--json",
                "--quiet",
            ]
        )
    assert code == 0
    return json.loads(buffer.getvalue())


def test_dataset_version_adds_child_version_when_content_changes(work, versioned, capsys):
    first = json.loads((versioned / "tiny" / "v0.1.json").read_text())
    assert first["parent"] is None and first["counts"] == {"REAL": 4, "FAKE": 8}
    assert len(first["files"]["real_astronaut.mp4"]["sha256"]) == 64
    assert "NOT finalized" in first["clearml"]["status"]
    assert Path(first["clearml"]["offline_session"]).is_file()

    assert (
        run_cli(
            [
                "dataset",
                "version",
                str(work / "data"),
                "--registry",
                str(versioned),
                "--name",
                "tiny",
                "--no-clearml",
            ]
        )
        == 0
    )
    assert "content unchanged, still v0.1" in capsys.readouterr().out

    changed = work / "data-changed"
    shutil.copytree(work / "data", changed)
    metadata = json.loads((changed / "metadata.json").read_text())
    gone = next(name for name, e in metadata.items() if e["label"] == "FAKE")
    del metadata[gone]
    (changed / gone).unlink()
    (changed / "metadata.json").write_text(json.dumps(metadata))
    assert (
        run_cli(
            [
                "dataset",
                "version",
                str(changed),
                "--registry",
                str(versioned),
                "--name",
                "tiny",
                "--no-clearml",
            ]
        )
        == 0
    )
    second = json.loads((versioned / "tiny" / "v0.2.json").read_text())
    assert second["parent"] == "v0.1" and second["content_hash"] != first["content_hash"]
    assert gone not in second["files"]


def test_train_lowers_loss_and_writes_loadable_checkpoint_when_set_is_tiny(trained):
    assert trained["epochs_trained"] == 3
    assert trained["train_loss_last_epoch"] < trained["train_loss_first_epoch"]
    raw = torch.load(trained["best_checkpoint"], map_location="cpu", weights_only=True)
    assert set(raw) == {"metadata", "state_dict", "trained", "provenance"}
    assert raw["trained"] is True
    assert raw["metadata"][contract.META_INPUT_SIZE] == "112"
    provenance = raw["provenance"]
    assert provenance["data_version"] == "tiny@v0.1"
    assert provenance["command"].startswith("fakescope train ")
    assert "ImageNet" in provenance["initial_weights"]
    assert all(isinstance(v, str) for v in provenance.values())
    splits = json.loads(provenance["splits"])
    groups = {}
    for split, names in splits.items():
        for name in names:
            groups.setdefault(name.split("_", 1)[1].split("_from_")[0], set()).add(split)
    assert all(len(s) == 1 for s in groups.values()), f"a person leaks across splits: {groups}"


def test_train_writes_clearml_offline_session_with_scalars_and_model_when_offline(trained):
    session = Path(trained["clearml_offline_session"])
    assert session.is_file()
    with zipfile.ZipFile(session) as archive:
        names = archive.namelist()
    assert any(n.startswith("models/") and n.endswith("best.pt") for n in names)
    scalars = [e for e in _events(session) if e.get("type") == "training_stats_scalar"]
    assert {(e["metric"], e["variant"]) for e in scalars} >= {("loss", "train"), ("logloss", "val")}
    assert len([e for e in scalars if e["metric"] == "loss"]) == 3


def test_evaluate_json_agrees_with_sklearn_when_given_same_predictions(evaluated):
    assert {"recall", "precision", "accuracy", "logloss", "auc"} <= set(evaluated)
    videos = evaluated["videos"]
    assert len(videos) == 12 and all(v["status"] == "ok" for v in videos)
    y = np.array([int(v["label"] == "FAKE") for v in videos])
    p = np.array([v["fake_probability"] for v in videos])
    predicted = (p >= evaluated["threshold"]).astype(int)
    assert evaluated["recall"] == pytest.approx(sklearn_metrics.recall_score(y, predicted))
    assert evaluated["precision"] == pytest.approx(
        sklearn_metrics.precision_score(y, predicted, zero_division=0)
    )
    assert evaluated["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, predicted))
    assert evaluated["logloss"] == pytest.approx(
        sklearn_metrics.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15))
    )
    assert evaluated["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, p))
    matrix = sklearn_metrics.confusion_matrix(y, predicted, labels=[0, 1]).tolist()
    assert evaluated["confusion_matrix"]["matrix"] == matrix
    assert evaluated["threshold_source"] == "the served threshold (model metadata)"


def test_evaluate_writes_plots_and_clearml_session_when_run(evaluated):
    for key in ("roc", "scores", "metrics"):
        path = Path(evaluated["report_files"][key])
        assert path.is_file() and path.stat().st_size > 1000
    assert Path(evaluated["report_files"]["roc"]).read_bytes()[:4] == b"\x89PNG"
    session = Path(evaluated["clearml_offline_session"])
    events = _events(session)
    metrics = {e["variant"] for e in events if e.get("metric") == "video metrics"}
    assert {"recall", "precision", "accuracy", "logloss", "auc"} <= metrics


def test_evaluate_prints_table_when_json_not_requested(work, trained, capsys):
    code = run_cli(
        [
            "evaluate",
            str(work / "data"),
            "--model",
            trained["best_checkpoint"],
            "--frames",
            "6",
            "--output",
            str(work / "eval-table"),
            "--cache",
            str(work / "cache"),
            "--no-clearml",
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "ROC-AUC" in out and "real_astronaut.mp4" in out


def test_evaluate_exits_2_when_the_video_split_is_not_the_one_the_model_was_trained_with(
    work, trained, tmp_path, capsys
):
    dataset = load_dataset(work / "data")
    trained_split = assign_splits(dataset.entries, seed=1, val_fraction=0.25).assignment
    other = next(  # the first seed that splits the videos otherwise
        seed
        for seed in range(2, 100)
        if assign_splits(dataset.entries, seed=seed, val_fraction=0.25).assignment != trained_split
    )
    base = ["evaluate", str(work / "data"), "--model", trained["best_checkpoint"]]
    base += ["--split", "val", "--val-fraction", "0.25", "--frames", "6"]
    base += ["--cache", str(work / "cache"), "--no-clearml", "--quiet"]
    assert run_cli([*base, "--seed", str(other), "--output", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "do not give the split this model was trained with" in err
    assert not (tmp_path / "other").exists()
    # the training's own split: its validation videos are scored
    assert run_cli([*base, "--seed", "1", "--output", str(tmp_path / "same")]) == 0
    report = json.loads((tmp_path / "same" / "metrics.json").read_text())
    assert sorted(v["video"] for v in report["videos"]) == sorted(
        n for n, split in trained_split.items() if split == "val"
    )


def test_train_resume_exits_2_naming_the_option_when_a_video_run_is_resumed_with_another(
    work, trained, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(work / "run", run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    argv = ["train", str(work / "data"), "--epochs", "3", "--patience", "5"]
    argv += ["--input-size", "112", "--frames", "6", "--val-fraction", "0.25", "--seed", "2"]
    argv += ["--output", str(run), "--cache", str(work / "cache"), "--no-clearml", "--quiet"]
    code = run_cli([*argv, "--resume"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fakescope: error: --resume: ") and "\n" not in err, err
    assert "--seed 1 (now 2)" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_export_new_version_then_rollback_restores_served_files_when_versions_exist(
    work, trained, capsys
):
    repo = work / "repo"
    shutil.copytree(REPOSITORY, repo, ignore=shutil.ignore_patterns("__pycache__"))
    folder = repo / contract.CLASSIFIER_MODEL
    config_before = (folder / "config.pbtxt").read_bytes()
    card_before = (folder / "MODEL_CARD.md").read_bytes()
    served_before = list_versions(repo)[-1]

    version = export_new_version(repo, Path(trained["best_checkpoint"]))
    assert version == served_before + 1 == list_versions(repo)[-1]
    config = (folder / "config.pbtxt").read_text()
    assert f"{version}/model.onnx" in config and 'string_value: "true"' in config
    assert "dims: [ 112, 112, 3 ]" in config
    spec, trained_flag = read_classifier_spec(folder / str(version) / "model.onnx")
    assert trained_flag and spec.input_size == 112
    card = (folder / "MODEL_CARD.md").read_text()
    for text in (
        "trained",
        "data version: tiny@v0.1",
        "git commit",
        "fakescope train",
        "synthetic videos from package-shipped faces",
    ):
        assert text in card
    assert (folder / str(version) / "MODEL_CARD.md").read_text() == card
    assert not list(folder.glob(".staging-*"))

    assert (
        fakescope_main(
            ["rollback", "--repository", str(repo), "--retired-dir", str(work / "retired")]
        )
        == 0
    )
    assert f"now serves version {served_before}" in capsys.readouterr().out
    assert list_versions(repo)[-1] == served_before
    assert (folder / "config.pbtxt").read_bytes() == config_before
    assert (folder / "MODEL_CARD.md").read_bytes() == card_before
    assert len(list((work / "retired" / contract.CLASSIFIER_MODEL).iterdir())) == 1


def test_rollback_refuses_when_only_one_version_is_left(tmp_path, capsys):
    (tmp_path / contract.CLASSIFIER_MODEL / "1").mkdir(parents=True)
    with pytest.raises(ValueError, match="cannot roll back"):
        rollback(tmp_path)
    assert fakescope_main(["rollback", "--repository", str(tmp_path)]) == 2
    assert "cannot roll back" in capsys.readouterr().err


# A fresh `fakescope dataset version`, as a user runs it, under the two conditions a busy machine
# produced at random, forced here: ClearML's VCS probe (`git status`, `hg status`) does not return
# until the process ends (Task.init forked its reporting process while the probe was being spawned,
# and the fork kept the probe's pipe open), and a script detection running in a background thread
# is held until the dataset has appended to the script section (it lost that race).
_STUCK_PROBE = """
import sys, threading
import clearml.backend_interface.task.repo.detectors as detectors
from clearml.backend_interface.task.repo.scriptinfo import ScriptInfo
from clearml.datasets.dataset import Dataset

released, script_used = threading.Event(), threading.Event()
probes = []

def stuck_probe(command, **kwargs):
    probes.append(command[0])
    released.wait(600)
    return 1

detect, add_script_call = ScriptInfo.get.__func__, Dataset._add_script_call

def held_detect(cls, *args, **kwargs):
    if threading.current_thread() is not threading.main_thread():
        script_used.wait(600)
    return detect(cls, *args, **kwargs)

def add_script_call_then_release(self, *args, **kwargs):
    try:
        return add_script_call(self, *args, **kwargs)
    finally:
        script_used.set()

detectors.call = stuck_probe
ScriptInfo.get = classmethod(held_detect)
Dataset._add_script_call = add_script_call_then_release
from fakescope.cli import main
try:
    code = main(sys.argv[1:])
finally:
    released.set()
    script_used.set()
print("VCS probes:", probes, file=sys.stderr)
sys.exit(code)
"""


def test_dataset_version_records_offline_clearml_dataset_when_repository_probe_hangs(tmp_path):
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    tiny_video(data / "real.mp4")
    tiny_video(data / "fake.mp4")
    write_metadata(
        data, {"real.mp4": {"label": "REAL"}, "fake.mp4": {"label": "FAKE", "original": "real.mp4"}}
    )
    # none of this process's CLEARML_* variables: after a Task.init here, CLEARML_PROC_MASTER_ID
    # would make the child's Task.init return a stub (it would take itself for a forked worker)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env["CLEARML_CACHE_DIR"] = str(tmp_path / "clearml")
    registry = tmp_path / "registry"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _STUCK_PROBE,
            "dataset",
            "version",
            str(data),
            "--registry",
            str(registry),
            "--name",
            "tiny",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "VCS probes: []" in done.stderr  # no git/hg subprocess for a dataset task
    record = json.loads((registry / "tiny" / "v0.1.json").read_text())
    assert "NOT finalized" in record["clearml"]["status"]
    with zipfile.ZipFile(record["clearml"]["offline_session"]) as archive:
        task = json.loads(archive.read("task.json"))
    assert task["type"] == "data_processing" and "dataset" in task["system_tags"]
    assert task["project_name"] == "FakeScope/datasets/.datasets/tiny"
    script = task["script"]["diff"]  # the SDK appends each add_files() call to it
    for name in ("metadata.json", "real.mp4", "fake.mp4"):
        assert f"ds.add_files(\n    path='{data / name}'" in script
