"""DFDC-format dataset validation and splits: every bad case is named, and nothing is written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fakescope.training.dataset import (
    DatasetError,
    VideoEntry,
    assign_splits,
    load_dataset,
)
from tests.support.training_helpers import run_cli, snapshot, tiny_video, write_metadata


def _good(root: Path) -> None:
    tiny_video(root / "real.mp4")
    tiny_video(root / "fake.mp4")
    write_metadata(
        root,
        {"real.mp4": {"label": "REAL"}, "fake.mp4": {"label": "FAKE", "original": "real.mp4"}},
    )


def _unknown_label(root: Path) -> None:
    tiny_video(root / "a.mp4")
    write_metadata(root, {"a.mp4": {"label": "MAYBE"}})


def _missing_file(root: Path) -> None:
    tiny_video(root / "a.mp4")
    write_metadata(root, {"a.mp4": {"label": "REAL"}, "gone.mp4": {"label": "FAKE"}})


def _unlisted_video(root: Path) -> None:
    tiny_video(root / "a.mp4")
    (root / "sub").mkdir()
    tiny_video(root / "sub" / "stray.mp4")
    write_metadata(root, {"a.mp4": {"label": "REAL"}})


def _duplicate_key(root: Path) -> None:
    tiny_video(root / "a.mp4")
    write_metadata(root, '{"a.mp4": {"label": "REAL"}, "a.mp4": {"label": "FAKE"}}')


def _dotdot(root: Path) -> None:
    tiny_video(root / "a.mp4")
    tiny_video(root.parent / "outside.mp4")
    write_metadata(root, {"a.mp4": {"label": "REAL"}, "../outside.mp4": {"label": "FAKE"}})


def _absolute(root: Path) -> None:
    outside = tiny_video(root.parent / "abs.mp4")
    tiny_video(root / "a.mp4")
    write_metadata(root, {"a.mp4": {"label": "REAL"}, str(outside): {"label": "FAKE"}})


def _symlink_out(root: Path) -> None:
    outside = tiny_video(root.parent / "target.mp4")
    tiny_video(root / "a.mp4")
    os.symlink(outside, root / "link.mp4")
    write_metadata(root, {"a.mp4": {"label": "REAL"}, "link.mp4": {"label": "FAKE"}})


def _unreadable(root: Path) -> None:
    tiny_video(root / "a.mp4")
    (root / "broken.mp4").write_bytes(b"this is not a video" * 50)
    (root / "empty.mp4").write_bytes(b"")
    write_metadata(
        root,
        {
            "a.mp4": {"label": "REAL"},
            "broken.mp4": {"label": "FAKE"},
            "empty.mp4": {"label": "FAKE"},
        },
    )


def _real_with_original(root: Path) -> None:
    tiny_video(root / "a.mp4")
    tiny_video(root / "b.mp4")
    write_metadata(
        root, {"a.mp4": {"label": "REAL", "original": "b.mp4"}, "b.mp4": {"label": "REAL"}}
    )


def _split_leak(root: Path) -> None:
    tiny_video(root / "a.mp4")
    tiny_video(root / "b.mp4")
    write_metadata(
        root,
        {
            "a.mp4": {"label": "REAL", "split": "train"},
            "b.mp4": {"label": "FAKE", "original": "a.mp4", "split": "test"},
        },
    )


def _bad_json(root: Path) -> None:
    tiny_video(root / "a.mp4")
    write_metadata(root, '{"a.mp4": {"label": "REAL"')


def _no_metadata(root: Path) -> None:
    tiny_video(root / "a.mp4")


BAD_CASES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("unknown_label", _unknown_label, ["a.mp4: unknown label 'MAYBE'"]),
    ("missing_file", _missing_file, ["gone.mp4: listed in metadata.json but the file is missing"]),
    ("unlisted_video", _unlisted_video, ["sub/stray.mp4: video file not listed in metadata.json"]),
    ("duplicate_key", _duplicate_key, ["a.mp4: duplicate key in metadata.json"]),
    ("dotdot", _dotdot, ["../outside.mp4: path escapes the dataset folder"]),
    ("absolute", _absolute, ["absolute path"]),
    ("symlink_out", _symlink_out, ["link.mp4: symlink points outside the dataset folder"]),
    (
        "unreadable",
        _unreadable,
        ["broken.mp4: unreadable video", "empty.mp4: unreadable video: empty file"],
    ),
    ("real_with_original", _real_with_original, ["a.mp4: REAL video names an original"]),
    ("split_leak", _split_leak, ["b.mp4: split leak"]),
    ("bad_json", _bad_json, ["metadata.json: not valid JSON"]),
    ("no_metadata", _no_metadata, ["metadata.json: missing"]),
]


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.mark.parametrize(("case", "build", "expected"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_dataset_check_names_offender_and_writes_nothing_when_dataset_is_bad(
    dataset_dir, tmp_path, capsys, case, build, expected
):
    build(dataset_dir)
    before = snapshot(tmp_path)
    assert run_cli(["dataset", "check", str(dataset_dir)]) == 3
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, f"{case}: {text!r} not in {err!r}"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("case", "build", "expected"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_train_refuses_before_any_work_when_dataset_is_bad(
    dataset_dir, tmp_path, capsys, case, build, expected
):
    build(dataset_dir)
    before = snapshot(tmp_path)
    out, cache = tmp_path / "run", tmp_path / "cache"
    code = run_cli(
        [
            "train",
            str(dataset_dir),
            "--output",
            str(out),
            "--cache",
            str(cache),
            "--no-clearml",
            "--registry",
            str(tmp_path / "registry"),
        ]
    )
    assert code == 3
    assert expected[0] in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    assert not out.exists() and not cache.exists()


def test_evaluate_refuses_before_any_work_when_dataset_is_bad(dataset_dir, tmp_path, capsys):
    _unknown_label(dataset_dir)
    before = snapshot(tmp_path)
    code = run_cli(
        [
            "evaluate",
            str(dataset_dir),
            "--output",
            str(tmp_path / "eval"),
            "--cache",
            str(tmp_path / "cache"),
            "--no-clearml",
            "--json",
        ]
    )
    assert code == 3
    captured = capsys.readouterr()
    assert "unknown label 'MAYBE'" in captured.err and captured.out == ""
    assert snapshot(tmp_path) == before


def test_dataset_check_lists_every_offender_in_one_report_when_several_are_bad(dataset_dir, capsys):
    tiny_video(dataset_dir / "ok.mp4")
    tiny_video(dataset_dir / "stray.mp4")
    (dataset_dir / "broken.mp4").write_bytes(b"junk" * 100)
    write_metadata(
        dataset_dir,
        {
            "ok.mp4": {"label": "REAL"},
            "odd.mp4": {"label": "fake"},
            "gone.mp4": {"label": "FAKE"},
            "broken.mp4": {"label": "FAKE"},
            "../x.mp4": {"label": "REAL"},
        },
    )
    with pytest.raises(DatasetError) as info:
        load_dataset(dataset_dir)
    names = sorted(p.name for p in info.value.problems)
    assert names == ["../x.mp4", "broken.mp4", "gone.mp4", "odd.mp4", "stray.mp4"]
    assert run_cli(["dataset", "check", str(dataset_dir)]) == 3
    assert "5 problems" in capsys.readouterr().err


def test_dataset_check_accepts_dataset_when_original_is_outside_the_folder(dataset_dir, capsys):
    tiny_video(dataset_dir / "real.mp4")
    tiny_video(dataset_dir / "fake.mp4")
    write_metadata(
        dataset_dir,
        {
            "real.mp4": {"label": "REAL", "split": "train"},
            "fake.mp4": {"label": "FAKE", "original": "elsewhere.mp4", "split": "train"},
        },
    )
    assert run_cli(["dataset", "check", str(dataset_dir)]) == 0
    assert "2 videos (1 REAL, 1 FAKE) in 2 groups" in capsys.readouterr().out


def test_dataset_check_passes_when_dataset_is_good(dataset_dir, capsys):
    _good(dataset_dir)
    assert run_cli(["dataset", "check", str(dataset_dir)]) == 0
    assert "OK" in capsys.readouterr().out


def _entries(groups: int, fakes_per_group: int) -> list[VideoEntry]:
    out = []
    for g in range(groups):
        out.append(VideoEntry(f"r{g}.mp4", "REAL"))
        out += [VideoEntry(f"f{g}_{k}.mp4", "FAKE", f"r{g}.mp4") for k in range(fakes_per_group)]
    out.append(VideoEntry("orphan_a.mp4", "FAKE", "missing.mp4"))
    out.append(VideoEntry("orphan_b.mp4", "FAKE", "missing.mp4"))
    return out


def test_assign_splits_keeps_fake_with_its_original_when_groups_are_split():
    entries = _entries(10, 3)
    splits = assign_splits(entries, seed=3, val_fraction=0.3, test_fraction=0.2)
    where = splits.assignment
    # the pairs as _entries made them, not as VideoEntry.group (what assign_splits reads) says
    for g in range(10):
        assert {where[f"f{g}_{k}.mp4"] for k in range(3)} == {where[f"r{g}.mp4"]}, g
    assert where["orphan_a.mp4"] == where["orphan_b.mp4"]  # fakes of one missing original
    assert {"train", "val", "test"} <= set(where.values())


def test_assign_splits_is_deterministic_when_seed_and_order_change():
    entries = _entries(8, 2)
    a = assign_splits(entries, seed=7)
    b = assign_splits(list(reversed(entries)), seed=7)
    c = assign_splits(entries, seed=8)
    assert a.assignment == b.assignment
    assert a.to_json() == b.to_json()
    assert a.assignment != c.assignment


def test_evaluate_refuses_before_any_work_when_model_file_is_not_a_classifier(
    dataset_dir, tmp_path, capsys
):
    _good(dataset_dir)
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    before = snapshot(tmp_path)
    code = run_cli(
        [
            "evaluate",
            str(dataset_dir),
            "--model",
            str(bogus),
            "--output",
            str(tmp_path / "eval"),
            "--cache",
            str(tmp_path / "cache"),
            "--no-clearml",
        ]
    )
    assert code == 3
    assert "cannot be loaded as a FakeScope classifier" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
