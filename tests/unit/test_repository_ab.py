"""The repository-against-a-commit benchmark: its commit checks, extraction and table."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fakescope.benchmarks.repository_ab import (
    BEFORE,
    THIS,
    extract_repository,
    main,
    render_markdown,
    resolve_commit,
)


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return done.stdout.decode().strip()


def _commit(root: Path, message: str) -> str:
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return _git(root, "rev-parse", "HEAD")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout whose model repository changed between two commits."""
    root = tmp_path / "checkout"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "model_repository" / "face_cropper").mkdir(parents=True)
    (root / "model_repository" / "face_cropper" / "config.pbtxt").write_text("old\n")
    (root / "fakescope").mkdir()
    (root / "fakescope" / "steps.py").write_text("CROPPER = True\n")
    _commit(root, "with a cropper step")
    (root / "model_repository" / "face_cropper" / "config.pbtxt").unlink()
    (root / "fakescope" / "steps.py").write_text("CROPPER = False\n")
    (root / "model_repository" / "face_detector").mkdir()
    (root / "model_repository" / "face_detector" / "config.pbtxt").write_text("new\n")
    _commit(root, "crops in the detector")
    return root


def test_extract_repository_gives_the_commits_files_when_the_tree_has_changed(checkout, tmp_path):
    earlier = extract_repository(resolve_commit("HEAD~1", checkout), tmp_path / "out", checkout)
    assert (earlier / "face_cropper" / "config.pbtxt").read_text() == "old\n"
    assert not (earlier / "face_detector").exists()


def test_extract_repository_gives_the_commits_package_too_when_whole_tree_is_asked(
    checkout, tmp_path
):
    earlier = extract_repository(
        resolve_commit("HEAD~1", checkout), tmp_path / "out", checkout, whole_tree=True
    )
    assert (earlier / "face_cropper" / "config.pbtxt").read_text() == "old\n"
    # the tree the earlier server's PYTHONPATH starts with: that commit's package
    assert (earlier.parent / "fakescope" / "steps.py").read_text() == "CROPPER = True\n"


def test_extract_repository_leaves_the_package_out_when_only_the_repository_is_asked(
    checkout, tmp_path
):
    earlier = extract_repository(resolve_commit("HEAD~1", checkout), tmp_path / "out", checkout)
    assert not (earlier.parent / "fakescope").exists()


def test_resolve_commit_refuses_when_git_does_not_know_the_commit(checkout):
    with pytest.raises(ValueError, match="'no-such-commit' is not a commit"):
        resolve_commit("no-such-commit", checkout)


def test_extract_repository_refuses_when_the_commit_has_no_repository(checkout, tmp_path):
    (checkout / "other").mkdir()
    (checkout / "other" / "x").write_text("x\n")
    _git(checkout, "rm", "-rq", "model_repository")
    bare = _commit(checkout, "no repository")
    with pytest.raises(ValueError, match=f"commit {bare} has no model_repository/"):
        extract_repository(bare, tmp_path / "out", checkout)


def test_repository_ab_exits_2_when_before_is_not_a_commit(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--before", "no-such-commit"])
    assert exited.value.code == 2
    assert "'no-such-commit' is not a commit" in capsys.readouterr().err


def test_repository_ab_table_names_the_earlier_commit_and_gives_ratios_when_rendered():
    row = {
        "video": "v.mp4",
        "size": [1280, 720],
        "faces": 16,
        THIS: {"wall_s": 0.3, "server_cpu_s": 0.4, "faulted_mib": 5.0},
        BEFORE: {"wall_s": 0.33, "server_cpu_s": 0.45, "faulted_mib": 30.0},
        "wall_vs_before": 0.909,
        "cpu_vs_before": 0.889,
    }
    method = {
        "runs": 7,
        "num_frames": 16,
        "max_side": 1280,
        "cores": 2,
        "loadavg_before": [0.5, 0.5, 0.5],
        "code_version": "abc",
        "before_commit": "9cd8b21" + "0" * 33,
    }
    table = render_markdown({"videos": [row], "method": method})
    assert "commit `9cd8b21`" in table
    assert "run by the same `fakescope` package" in table
    with_code = render_markdown({"videos": [row], "method": {**method, "before_code": True}})
    assert "the `fakescope` package of commit `9cd8b21`" in with_code
    assert "| v.mp4 | 1280x720 | 16 | 0.300 / 0.400 / 5 | 0.330 / 0.450 / 30 | 0.91x, 0.89x |" in (
        table
    )
