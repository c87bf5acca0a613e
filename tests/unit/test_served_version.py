"""Which version folder of a local model is the served one (``served_version_dir``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope import contract
from fakescope.serving.model_config import served_version_dir
from tests.support.servers import REPOSITORY

PINNED = 'name: "m"\nversion_policy: { specific: { versions: [ 5 ] } }\n'


def _model(tmp_path: Path, config: str | None, versions: tuple[int, ...]) -> Path:
    model = tmp_path / "m"
    for version in versions:
        (model / str(version)).mkdir(parents=True)
    if config is not None:
        model.mkdir(exist_ok=True)
        (model / "config.pbtxt").write_text(config)
    return model


def test_served_version_dir_is_the_pinned_one_when_a_newer_folder_waits(tmp_path: Path):
    # a version published but not yet pinned (as on S3 between upload and switch) is not served
    model = _model(tmp_path, PINNED, (4, 5, 6))
    assert served_version_dir(model) == model / "5"


def test_served_version_dir_is_the_newest_when_the_config_pins_none(tmp_path: Path):
    model = _model(tmp_path, 'name: "m"\n', (2, 10, 9))
    assert served_version_dir(model) == model / "10"


def test_served_version_dir_names_the_version_when_the_pinned_folder_is_missing(tmp_path: Path):
    model = _model(tmp_path, PINNED, (4, 6))
    with pytest.raises(FileNotFoundError, match="pins version 5"):
        served_version_dir(model)


def test_served_version_dir_is_the_committed_pin_when_read_from_the_repository():
    folder = REPOSITORY / contract.CLASSIFIER_MODEL
    pin = (folder / "config.pbtxt").read_text().split("versions: [")[1].split("]")[0].strip()
    assert served_version_dir(folder) == folder / pin
