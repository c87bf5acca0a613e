"""Face-crop datasets: the format, every bad-set case, leakage-safe splits, the CLI's exits."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from fakescope.extras import TRAINING_INSTALL_HINT
from fakescope.training.dataset import DatasetError, assign_splits
from fakescope.training.face_crops import load_face_crop_set, read_face_crops
from tests.support.face_crop_sets import add_member, face_crop, jpeg, rows_for, write_set
from tests.support.training_helpers import run_cli, snapshot


def _problems(excinfo: pytest.ExceptionInfo[DatasetError]) -> str:
    return "\n".join(str(p) for p in excinfo.value.problems)


@pytest.mark.parametrize("shard", [True, False], ids=["tar-shard", "image-files"])
def test_face_crop_set_loads_entries_and_decodes_images_when_valid(tmp_path, shard):
    root = write_set(tmp_path / "set", rows_for(3, 2), shard=shard)
    dataset = load_face_crop_set(root)
    assert dataset.counts() == {"REAL": 3, "FAKE": 6}
    fake = dataset.by_name()["fake001_0.mp4"]
    assert fake.group == "real001.mp4"
    names = [e.name for e in dataset.entries]
    crops = read_face_crops(dataset, names, 160)
    assert crops.crops.shape == (9, 160, 160, 3) and crops.crops.dtype == np.uint8
    assert set(crops.image_sha256) == set(names)
    assert crops.crops[0].std() > 10  # a real picture, not zeros


def _bad_label(root):
    rows = rows_for(2)
    rows[1]["label"] = "DEEPFAKE"
    write_set(root, rows)


def _duplicate(root):
    rows = rows_for(2)
    rows.append(dict(rows[0]))
    write_set(root, rows)


def _missing_image(root):
    rows = rows_for(2)
    write_set(root, rows)
    with tarfile.open(root / "faces-00.tar", "w") as tar:  # shard without fake001_0
        for i, row in enumerate(rows):
            if row["videoname"] != "fake001_0.mp4":
                add_member(tar, row["videoname"][:-4] + ".jpg", jpeg(face_crop(i)))


def _tar_member(name: str, kind: str = "file"):
    def make(root):
        write_set(root, rows_for(2))
        with tarfile.open(root / "faces-01.tar", "w") as tar:
            if kind == "file":
                add_member(tar, name, jpeg(face_crop(9)))
            else:
                info = tarfile.TarInfo(name)
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                tar.addfile(info, io.BytesIO(b""))

    return make


def _empty(root):
    write_set(root, [])


def _one_class(root):
    write_set(root, [r for r in rows_for(3) if r["label"] == "REAL"])


def _unlisted(root):
    write_set(root, rows_for(2), images={"stranger.jpg": jpeg(face_crop(5))})


def _fake_of_fake(root):
    rows = rows_for(2)
    rows.append({"videoname": "fake2.mp4", "label": "FAKE", "original": "fake000_0.mp4"})
    write_set(root, rows)


BAD_SETS = {
    "unknown-label": (_bad_label, "line 3 (fake000_0.mp4): unknown label 'DEEPFAKE'"),
    "duplicate-name": (_duplicate, "duplicate videoname (first on line 2)"),
    "missing-image": (_missing_image, "fake001_0.mp4: image fake001_0.jpg not found"),
    "absolute-member": (_tar_member("/tmp/evil.jpg"), "faces-01.tar:/tmp/evil.jpg: absolute"),
    "dotdot-member": (_tar_member("../evil.jpg"), "faces-01.tar:../evil.jpg: '..' in its path"),
    "link-member": (_tar_member("evil.jpg", "symlink"), "faces-01.tar:evil.jpg: a link"),
    "empty-set": (_empty, "metadata.csv: lists no face"),
    "one-class": (_one_class, "one class only (REAL)"),
    "unlisted-image": (_unlisted, "stranger.jpg: image not listed in metadata.csv"),
    "fake-of-a-fake": (_fake_of_fake, "its original fake000_0.mp4 is labelled FAKE"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETS))
def test_face_crop_set_names_the_offender_when_set_is_bad(tmp_path, case):
    make, expected = BAD_SETS[case]
    root = tmp_path / "set"
    make(root)
    with pytest.raises(DatasetError) as excinfo:
        load_face_crop_set(root)
    assert expected in _problems(excinfo)


def test_face_crop_set_names_the_member_when_a_jpeg_is_corrupt(tmp_path):
    rows = rows_for(2)
    good = jpeg(face_crop(1))
    root = write_set(tmp_path / "set", rows, images={"fake000_0.jpg": good[: len(good) // 3]})
    dataset = load_face_crop_set(root)  # the table and the files are fine
    with pytest.raises(DatasetError) as excinfo:
        read_face_crops(dataset, [e.name for e in dataset.entries], 64)
    assert "faces-00.tar:fake000_0.jpg: image of fake000_0.mp4 does not decode" in _problems(
        excinfo
    )


@pytest.mark.parametrize("case", ["unknown-label", "link-member", "one-class"])
def test_dataset_check_exits_3_and_writes_nothing_when_face_crop_set_is_bad(tmp_path, capsys, case):
    root = tmp_path / "set"
    BAD_SETS[case][0](root)
    before = snapshot(tmp_path)
    assert run_cli(["dataset", "check", str(root)]) == 3
    assert BAD_SETS[case][1] in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_dataset_check_exits_3_when_face_crop_jpeg_is_corrupt(tmp_path, capsys):
    good = jpeg(face_crop(1))
    root = write_set(tmp_path / "set", rows_for(2), images={"real001.jpg": good[:200]})
    assert run_cli(["dataset", "check", str(root)]) == 3
    assert "real001.jpg: image of real001.mp4 does not decode" in capsys.readouterr().err


def test_dataset_check_reports_counts_when_face_crop_set_is_valid(tmp_path, capsys):
    root = write_set(tmp_path / "set", rows_for(4, 2), shard=False)
    assert run_cli(["dataset", "check", str(root)]) == 0
    assert "12 faces (4 REAL, 8 FAKE) from 4 originals" in capsys.readouterr().out


def test_assign_splits_keeps_each_fake_with_its_original_when_face_crops_are_split(tmp_path):
    rows = rows_for(60, 2)
    # fakes whose original is kept back (not in the set) still travel together
    rows += [
        {"videoname": f"orphan{j}.mp4", "label": "FAKE", "original": "kept_back.mp4"}
        for j in range(2)
    ]
    dataset = load_face_crop_set(write_set(tmp_path / "set", rows))
    splits = assign_splits(dataset.entries, seed=3, val_fraction=0.12)
    for entry in dataset.entries:
        if entry.original:
            assert splits.assignment[entry.name] == splits.assignment.get(
                entry.original, splits.assignment["orphan0.mp4"]
            ), entry.name
    assert splits.assignment["orphan0.mp4"] == splits.assignment["orphan1.mp4"]
    originals = [e for e in dataset.entries if e.label == "REAL"]
    in_val = sum(splits.assignment[e.name] == "val" for e in originals)
    assert in_val >= 0.10 * len(originals)
    again = assign_splits(dataset.entries, seed=3, val_fraction=0.12)
    assert again.assignment == splits.assignment


def test_fakescope_train_prints_one_install_line_when_training_extra_is_missing(tmp_path):
    import subprocess
    import sys

    root = write_set(tmp_path / "set", rows_for(2))
    # a Python where `import clearml` fails, as in a venv made by `make demo` only
    code = (
        "import sys; sys.modules['clearml'] = None; from fakescope.cli import main; "
        f"sys.exit(main(['train', {str(root)!r}, '--output', {str(tmp_path / 'run')!r}]))"
    )
    before = snapshot(tmp_path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"fakescope: error: `fakescope train` needs module 'clearml': {TRAINING_INSTALL_HINT}"
    ]
    assert snapshot(tmp_path) == before
