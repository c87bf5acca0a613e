"""A result's files are written together (benchmarks/result_files.py), or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope.benchmarks.result_files import write_result, write_result_files


def _older_result(tmp_path: Path) -> Path:
    output = tmp_path / "result.json"
    output.write_text("the older run\n")
    output.with_suffix(".md").write_text("the older run's table\n")
    return output


def test_write_result_leaves_both_files_as_they_were_when_the_table_cannot_be_rendered(tmp_path):
    output = _older_result(tmp_path)

    def render(result: dict[str, object]) -> str:
        return f"{result['load1']:.1f}"  # a window without samples has None

    with pytest.raises(TypeError):
        write_result(output, {"load1": None}, render)
    assert output.read_text() == "the older run\n"
    assert output.with_suffix(".md").read_text() == "the older run's table\n"


def test_write_result_files_writes_nothing_when_a_figure_cannot_be_drawn(tmp_path):
    output = _older_result(tmp_path)

    def draw(path: Path) -> None:
        raise ValueError("no sample to plot")

    with pytest.raises(ValueError, match="no sample to plot"):
        write_result_files({output: "the new run\n"}, {tmp_path / "result.png": draw})
    assert output.read_text() == "the older run\n"
    assert not (tmp_path / "result.png").exists()


def test_write_result_files_writes_texts_and_figures_when_every_one_is_drawn(tmp_path):
    output = _older_result(tmp_path)
    write_result_files(
        {output: "the new run\n"},
        {tmp_path / "result.png": lambda path: path.write_bytes(b"\x89PNG")},
    )
    assert output.read_text() == "the new run\n"
    assert (tmp_path / "result.png").read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json", "result.md", "result.png"]
