"""Train → export → evaluate on a tiny face-crop set the test builds (``metadata.csv`` + tar).

Lite0 at 64 px for one short epoch: the served size is 160; reduced here only to keep CI short.
What is checked is the plumbing a real run relies on: the split recorded in the model, the
measured crop geometry and the calibrated threshold travelling into the ONNX metadata and the
served ``config.pbtxt``, and ``fakescope evaluate`` feeding the data's crops to the model.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import onnx
import pytest

pytest.importorskip("torch", reason="training needs the train extra (torch)")

from fakescope import contract
from fakescope.cli import main as fakescope_main
from fakescope.export.crop_geometry import CropDetector, measure_geometry
from fakescope.export.framing import FRAMING_TOLERANCE, load_framing_frames
from fakescope.export.quantize import export_quantized_version
from fakescope.export.versions import export_new_version, served_version
from fakescope.pipeline.crops import crop_faces
from fakescope.pipeline.metadata import read_classifier_spec, read_provenance
from fakescope.serving.model_config import config_parameters
from tests.support.face_crop_sets import rows_for, write_set
from tests.support.media import make_face_video
from tests.support.servers import REPOSITORY
from tests.support.training_helpers import run_cli, snapshot, tiny_video, write_metadata

pytestmark = pytest.mark.slow

SEED, VAL_FRACTION = 2, 0.25


def _train_argv(data, output, cache, **changes: str) -> list[str]:
    """``fakescope train`` as the module's run is trained (``changes``: other option values)."""
    options = {
        "--input-size": "64",
        "--epochs": "1",
        "--batch-size": "8",
        "--samples-per-epoch": "16",
        "--val-fraction": str(VAL_FRACTION),
        "--seed": str(SEED),
        **{f"--{k.replace('_', '-')}": v for k, v in changes.items()},
    }
    argv = ["train", str(data), *(x for item in options.items() for x in item)]
    return [*argv, "--output", str(output), "--cache", str(cache), "--no-clearml", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    data = write_set(root / "data", rows_for(8, 1))
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = run_cli([*_train_argv(data, root / "run", root / "cache"), "--json"])
    assert code == 0
    summary = json.loads(buffer.getvalue().strip().splitlines()[-1])
    repository = root / "repository"
    shutil.copytree(REPOSITORY, repository)
    framing_videos = [
        make_face_video(root / f"framing-{i}.mp4", size=size, seconds=1.0)
        for i, size in enumerate([(640, 360), (480, 360)])
    ]
    version = export_new_version(repository, root / "run" / "best.pt", framing_videos)
    onnx_path = repository / contract.CLASSIFIER_MODEL / str(version) / "model.onnx"
    return {
        "root": root,
        "data": data,
        "summary": summary,
        "repository": repository,
        "onnx": onnx_path,
        "framing_videos": framing_videos,
    }


def test_train_records_split_geometry_and_calibration_in_model_when_face_crops(trained):
    spec, is_trained = read_classifier_spec(trained["onnx"])
    provenance = read_provenance(trained["onnx"])
    geometry = json.loads((trained["root"] / "run" / "crop_geometry.json").read_text())
    assert is_trained
    assert spec.input_size == 64
    framing = json.loads(provenance["framing_calibration"])
    assert framing["data"] == pytest.approx(
        [geometry["face_margin"], *geometry["face_shift"]], abs=1e-4
    )
    assert geometry["faces_found"] >= 6  # MTCNN found the astronaut in the REAL crops
    assert 0.0 < spec.threshold < 1.0
    assert spec.threshold == pytest.approx(trained["summary"]["threshold"])
    assert spec.temperature == pytest.approx(trained["summary"]["temperature"])
    split = json.loads(provenance["split"])
    assert split["seed"] == SEED and split["val_fraction"] == VAL_FRACTION
    assert split["val_originals"] == 2 and split["train_originals"] == 6
    assert len(split["assignment_sha256"]) == 64
    assert provenance["limitations"].startswith("Trained and validated on DFDC face swaps only")
    # the two validation originals fall in two halves: each scored with the temperature and
    # the threshold fitted on the other, so no single threshold is recorded for the figures
    cross_fitted = json.loads(provenance["val_face_metrics_cross_fitted"])
    assert cross_fitted["threshold"] is None
    assert f"AUC {cross_fitted['auc']:.3f}" in provenance["limitations"]
    assert "thresholded as the served model is" in provenance["limitations"]


def test_export_frames_served_crops_like_data_when_framing_videos_given(trained):
    spec, _ = read_classifier_spec(trained["onnx"])
    framing = json.loads(read_provenance(trained["onnx"])["framing_calibration"])
    assert (spec.face_margin, list(spec.face_shift)) == (
        framing["face_margin"],
        framing["face_shift"],
    )
    # Measured again here, from the videos: crops cut with the exported framing.
    detector = CropDetector(trained["repository"])
    crops = np.concatenate(
        [
            crop_faces(
                f.frames,
                f.face_boxes,
                size=spec.input_size,
                margin=spec.face_margin,
                shift=spec.face_shift,
            )
            for f in load_framing_frames(trained["framing_videos"], detector)
        ]
    )
    served = measure_geometry(detector.detect(crops).scaled(1.0 / spec.input_size), 1.0)
    measured = [served.face_margin, *served.face_shift]
    assert measured == pytest.approx(framing["data"], abs=FRAMING_TOLERANCE)


def _refused_export(trained, *extra: str) -> int:
    """Run ``fakescope export`` of the trained checkpoint; check it left the versions alone."""
    versions = trained["root"] / "repository" / contract.CLASSIFIER_MODEL
    before = sorted(p.name for p in versions.iterdir())
    checkpoint = str(trained["root"] / "run" / "best.pt")
    repository = str(trained["root"] / "repository")
    code = fakescope_main(
        ["export", "--repository", repository, "--checkpoint", checkpoint, *extra]
    )
    assert sorted(p.name for p in versions.iterdir()) == before
    return code


def test_export_refuses_face_crop_checkpoint_when_no_framing_videos(trained, capsys):
    assert _refused_export(trained) == 2
    assert "give videos of real faces (--framing-videos)" in capsys.readouterr().err


def test_export_refuses_framing_video_when_it_is_not_a_video(trained, capsys):
    not_a_video = trained["root"] / "notes.mp4"
    not_a_video.write_text("these are notes, not frames")
    assert _refused_export(trained, "--framing-videos", str(not_a_video)) == 2
    assert "notes.mp4" in capsys.readouterr().err


def test_train_keeps_fakes_with_their_originals_when_face_crops_are_split(trained):
    splits = json.loads((trained["root"] / "run" / "splits.json").read_text())["splits"]
    where = {name: split for split, names in splits.items() for name in names}
    # every video of the set (8 originals, one fake each) is in exactly one split
    assert sum(len(names) for names in splits.values()) == len(where) == 16
    assert sum(name.startswith("fake") for name in where) == 8
    for name, split in where.items():
        if name.startswith("fake"):
            original = "real" + name[4:7] + ".mp4"
            assert where[original] == split, name


def test_export_states_threshold_in_served_config_when_model_is_calibrated(trained):
    spec, _ = read_classifier_spec(trained["onnx"])
    config = trained["repository"] / contract.CLASSIFIER_MODEL / "config.pbtxt"
    params = config_parameters(config)
    assert float(params[contract.THRESHOLD_PARAMETER]) == spec.threshold
    assert json.loads(params["face_shift"]) == list(spec.face_shift)


def test_evaluate_writes_metrics_and_roc_when_face_crops_of_the_val_split(trained):
    out = trained["root"] / "eval"
    code = run_cli(
        [
            "evaluate",
            str(trained["data"]),
            "--model",
            str(trained["repository"]),
            "--split",
            "val",
            "--seed",
            str(SEED),
            "--val-fraction",
            str(VAL_FRACTION),
            "--output",
            str(out),
            "--no-clearml",
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())
    spec, _ = read_classifier_spec(trained["onnx"])
    assert report["unit"] == "face" and report["n"] == 4  # 2 originals + their fakes
    for key in ("recall", "precision", "accuracy", "logloss", "auc"):
        assert key in report
    assert report["threshold"] == spec.threshold
    assert report["threshold_source"] == "the served threshold (model metadata)"
    matrix = report["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == 4
    assert report["roc_curve"]["fpr"][0] == 0.0 and report["roc_curve"]["tpr"][-1] == 1.0
    assert (out / "roc.png").stat().st_size > 1000


def test_evaluate_refuses_val_split_when_seed_differs_from_training(trained, capsys):
    code = run_cli(
        [
            "evaluate",
            str(trained["data"]),
            "--model",
            str(trained["repository"]),
            "--split",
            "val",
            "--seed",
            str(SEED + 1),
            "--val-fraction",
            str(VAL_FRACTION),
            "--output",
            str(trained["root"] / "eval-wrong"),
            "--no-clearml",
            "--quiet",
        ]
    )
    assert code == 2
    assert "do not give the split this model was trained with" in capsys.readouterr().err


def test_evaluate_exits_2_before_scoring_when_a_face_crop_checkpoint_meets_videos(
    trained, tmp_path, capsys
):
    # a DFDC video folder: the checkpoint's crops would be cut with the data's raw geometry,
    # not with the framing `fakescope export` calibrates for videos (what is served)
    videos = tmp_path / "videos"
    videos.mkdir()
    tiny_video(videos / "real.mp4")
    tiny_video(videos / "fake.mp4")
    write_metadata(
        videos,
        {"real.mp4": {"label": "REAL"}, "fake.mp4": {"label": "FAKE", "original": "real.mp4"}},
    )
    checkpoint = trained["root"] / "run" / "best.pt"
    code = run_cli(
        [
            "evaluate",
            str(videos),
            "--model",
            str(checkpoint),
            "--output",
            str(tmp_path / "eval"),
            "--cache",
            str(tmp_path / "cache"),
            "--no-clearml",
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fakescope: error: ") and "\n" not in err, err
    assert f"{checkpoint} was trained on face crops" in err and "--framing-videos" in err
    assert not (tmp_path / "eval").exists() and not (tmp_path / "cache").exists()


def test_dataset_version_records_face_crop_content_hash_when_registered(trained, tmp_path):
    import os
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("clearml", reason="dataset versions are recorded with clearml")
    # a clean environment: no CLEARML_* state of this process (see the training pipeline test)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env["CLEARML_CACHE_DIR"] = str(tmp_path / "clearml")
    registry = tmp_path / "registry"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fakescope.cli",
            "dataset",
            "version",
            str(trained["data"]),
            "--registry",
            str(registry),
            "--name",
            "crops",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((registry / "crops" / "v0.1.json").read_text())
    # the training run identified its data by the same hash
    assert record["content_hash"] == read_provenance(trained["onnx"])["data_content_sha256"]
    assert record["counts"] == {"REAL": 8, "FAKE": 8}
    assert len(record["files"]) == 17  # 16 faces + metadata.csv
    with zipfile.ZipFile(record["clearml"]["offline_session"]) as archive:
        script = json.loads(archive.read("task.json"))["script"]["diff"]
    for name in ("metadata.csv", "faces-00.tar"):
        assert f"path='{trained['data'] / name}'" in script


def _run_copy(trained, tmp_path):
    """A copy of the module's run folder (a resume may change it)."""
    run = tmp_path / "run"
    shutil.copytree(trained["root"] / "run", run)
    return run


def test_train_resume_trains_no_epoch_again_when_the_run_is_finished_and_options_match(
    trained, tmp_path
):
    run = _run_copy(trained, tmp_path)
    history = (run / "history.json").read_text()
    splits = (run / "splits.json").read_text()
    argv = _train_argv(trained["data"], run, trained["root"] / "cache")
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_cli([*argv, "--resume"]) == 0
    assert (run / "history.json").read_text() == history  # no epoch trained again
    assert (run / "splits.json").read_text() == splits


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"seed": "3"}, ["--seed 2 (now 3)", "the train/val/test split"]),
        ({"val_fraction": "0.5"}, ["--val-fraction 0.25 (now 0.5)", "the train/val/test split"]),
        # a longer run would continue a learning-rate schedule made for one epoch
        ({"epochs": "3"}, ["--epochs 1 (now 3)"]),
        ({"arch": "efficientnet-b0"}, ["--arch efficientnet-lite0 (now efficientnet-b0)"]),
        ({"batch_size": "4", "samples_per_epoch": "8"}, ["--batch-size 8 (now 4)"]),
    ],
    ids=["seed", "val-fraction", "epochs", "arch", "batch-and-samples"],
)
def test_train_resume_exits_2_naming_the_options_when_they_differ_from_the_run(
    trained, tmp_path, capsys, changes, named
):
    run = _run_copy(trained, tmp_path)
    before = snapshot(run)
    argv = _train_argv(trained["data"], run, trained["root"] / "cache", **changes)
    assert run_cli([*argv, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fakescope: error: --resume: ") and "\n" not in err, err
    for text in named:
        assert text in err
    if "samples_per_epoch" in changes:
        assert "--samples-per-epoch 16 (now 8)" in err
    assert snapshot(run) == before  # the run's split, state and checkpoints untouched


def _repository_copy(trained, tmp_path):
    repository = tmp_path / "repository"
    shutil.copytree(trained["repository"], repository)
    return repository, repository / contract.CLASSIFIER_MODEL


def _int8_initializers(path) -> int:
    model = onnx.load(str(path))
    return sum(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)


def test_export_quantize_publishes_the_int8_model_as_the_next_version_when_quality_holds(
    trained, tmp_path
):
    repository, folder = _repository_copy(trained, tmp_path)
    source = served_version(repository)
    version = export_quantized_version(
        repository, trained["data"], calibration_faces=4, float_block_count=0, tolerance=1.0
    )
    assert version == source + 1 and served_version(repository) == version
    published = folder / str(version) / "model.onnx"
    assert _int8_initializers(published) > 0
    assert _int8_initializers(folder / str(source) / "model.onnx") == 0
    assert read_classifier_spec(published) == read_classifier_spec(trained["onnx"])
    record = json.loads(read_provenance(published)["quantization"])
    assert record["source_version"] == source and record["validation_faces"] > 0
    assert record["calibration"]["faces"] == 4 and record["float_blocks"] == []
    # the scope statement it carries gives its own validation figures, not the float model's
    limitations = read_provenance(published)["limitations"]
    assert f"AUC {record['int8_this_cpu']['auc']:.3f}" in limitations
    assert f"LogLoss {record['int8_this_cpu']['logloss']:.3f}" in limitations
    config = (folder / "config.pbtxt").read_text()
    assert f"versions: [ {version} ]" in config
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"int8 model of version {source}" in card
    assert "fakescope export --quantize" in card
    assert (folder / str(source) / "MODEL_CARD.md").is_file()  # kept for a rollback
    assert _normalisation_constant_shapes(published) == [[], []]  # scalars, not [1, 3, 1, 1]
    assert len(record["scalar_normalisation"]) == 2
    assert "input normalisation with scalar constants" in card


def test_export_quantize_starts_from_the_float_version_when_the_served_one_is_int8(
    trained, tmp_path
):
    repository, folder = _repository_copy(trained, tmp_path)
    source = served_version(repository)
    arguments = {"float_block_count": 0, "tolerance": 1.0}
    first = export_quantized_version(repository, trained["data"], calibration_faces=4, **arguments)
    # another recipe (more calibration faces): another int8 model of the float version
    again = export_quantized_version(repository, trained["data"], calibration_faces=6, **arguments)
    assert again == first + 1 and served_version(repository) == again
    record = json.loads(read_provenance(folder / str(again) / "model.onnx")["quantization"])
    assert record["source_version"] == source  # the float version, not the int8 one
    assert _int8_initializers(folder / str(again) / "model.onnx") > 0


def test_export_quantize_publishes_nothing_when_the_served_version_is_its_int8_model_already(
    trained, tmp_path
):
    repository, folder = _repository_copy(trained, tmp_path)
    arguments = {"calibration_faces": 4, "float_block_count": 0, "tolerance": 1.0}
    first = export_quantized_version(repository, trained["data"], **arguments)
    listing = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ValueError, match=f"version {first} is this recipe's int8 model"):
        export_quantized_version(repository, trained["data"], **arguments)
    assert sorted(p.name for p in folder.iterdir()) == listing  # no version, no staging left
    assert served_version(repository) == first


def _normalisation_constant_shapes(path) -> list[list[int]]:
    """The shapes of the constants the model's ``Sub`` and ``Div`` nodes read from initializers."""
    model = onnx.load(str(path))
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    return [
        shapes[node.input[1]]
        for node in model.graph.node
        if node.op_type in ("Sub", "Div") and node.input[1] in shapes
    ][:2]


def test_export_quantize_leaves_the_repository_as_it_was_when_quality_drops(trained, tmp_path):
    repository, folder = _repository_copy(trained, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    listing = sorted(p.name for p in folder.iterdir())
    with pytest.raises(RuntimeError, match="does not keep the float model's quality"):
        # a negative tolerance no model can meet: the verdict is what refuses it
        export_quantized_version(
            repository, trained["data"], calibration_faces=4, float_block_count=0, tolerance=-1.0
        )
    assert sorted(p.name for p in folder.iterdir()) == listing  # no version, no staging left
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_export_quantize_exits_2_when_the_set_has_fewer_training_faces_than_it_calibrates_on(
    trained, tmp_path, capsys
):
    repository, folder = _repository_copy(trained, tmp_path)
    listing = sorted(p.name for p in folder.iterdir())
    code = fakescope_main(
        ["export", "--repository", str(repository), "--quantize", str(trained["data"])]
    )
    assert code == 2
    assert "calibration faces must be 1.." in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == listing


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--checkpoint", "CHECKPOINT", "--quantize", "FACES"], "not both"),
        (["--quantize", "NO_SUCH_FOLDER"], "face-crop set not found"),
        # a later --repository wins: an S3 URL, never contacted
        (
            ["--repository", "s3://127.0.0.1:9/bucket/repo", "--quantize", "FACES"],
            "on a repository folder",
        ),
    ],
)
def test_export_quantize_exits_2_when_arguments_are_wrong(
    trained, tmp_path, capsys, extra, message
):
    repository, folder = _repository_copy(trained, tmp_path)
    listing = sorted(p.name for p in folder.iterdir())
    checkpoint = tmp_path / "best.pt"  # a file, never read: the options are refused first
    checkpoint.write_bytes(b"")
    paths = {
        "FACES": str(trained["data"]),
        "NO_SUCH_FOLDER": str(tmp_path / "no-such-folder"),
        "CHECKPOINT": str(checkpoint),
    }
    argv = ["export", "--repository", str(repository), *(paths.get(a, a) for a in extra)]
    assert fakescope_main(argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == listing
