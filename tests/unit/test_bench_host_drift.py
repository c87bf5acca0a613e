"""Two bench runs side by side: the host probe against what the workloads cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fakescope.benchmarks.host_drift import (
    RunFileError,
    compare_runs,
    main,
    read_run,
    render_markdown,
)


def _level(probe_ms: float, load_generator: float, server: float, p95: float) -> dict[str, Any]:
    return {
        "ratio": {"p50": p95 / 2, "p95": p95},
        "host_probe": {"median_ms": probe_ms},
        "cpu_seconds_per_video": {"load_generator": load_generator, "server": server},
    }


def _run(levels: dict[str, dict[str, Any]], probe_ms: float, served: float) -> dict[str, Any]:
    return {
        "mode": "load",
        "levels": levels,
        "host_probe_before_inprocess": {"median_ms": probe_ms},
        "inprocess": {
            "served": {"ratio": {"p50": served}},
            "seed_pipeline": {"ratio": {"p50": served * 15}},
        },
    }


BEFORE = _run(
    {
        "grpc": {"1": _level(60.0, 0.40, 0.50, 0.08), "8": _level(60.0, 0.40, 0.50, 0.40)},
        "http": {"1": _level(60.0, 0.40, 0.50, 0.08)},
    },
    probe_ms=60.0,
    served=0.040,
)
AFTER = _run(
    {
        "grpc": {"1": _level(66.0, 0.50, 0.60, 0.10), "8": _level(57.0, 0.44, 0.45, 0.36)},
        "http": {"2": _level(70.0, 0.50, 0.60, 0.12)},
    },
    probe_ms=90.0,
    served=0.050,
)


def test_compare_runs_sets_the_probe_beside_each_sides_cpu_when_levels_are_shared():
    result = compare_runs(BEFORE, AFTER, ("old", "new"))
    assert [(row["protocol"], row["users"]) for row in result["levels"]] == [
        ("grpc", 1),
        ("grpc", 8),
    ]  # http was measured at different user levels: nothing to compare
    first, second = result["levels"]
    assert first["host_probe_ms"] == pytest.approx({"before": 60.0, "after": 66.0, "change": 0.1})
    assert first["cpu_load_generator"]["change"] == pytest.approx(0.25)
    assert first["cpu_server"]["change"] == pytest.approx(0.2)
    assert second["cpu_load_generator"]["change"] == pytest.approx(0.1)  # against the probe
    assert result["levels_probe_and_cpu_same_direction"] == 1
    assert result["level_probe_change_range"] == pytest.approx([-0.05, 0.1])
    assert result["level_cpu_change_range"] == pytest.approx([-0.1, 0.25])
    assert result["host_probe_before_inprocess_ms"]["change"] == pytest.approx(0.5)
    assert [row["path"] for row in result["inprocess"]] == ["served", "seed_pipeline"]
    assert result["inprocess"][0]["ratio_p50"]["change"] == pytest.approx(0.25)
    assert result["labels"] == ["old", "new"]


def test_compare_runs_refuses_when_the_runs_share_no_level():
    other = _run({"http": {"2": _level(70.0, 0.5, 0.6, 0.1)}}, probe_ms=70.0, served=0.05)
    with pytest.raises(RunFileError, match="share no protocol and user level"):
        compare_runs(BEFORE, other, ("a", "b"))


def test_render_markdown_names_both_runs_and_every_compared_level_when_rendered():
    text = render_markdown(compare_runs(BEFORE, AFTER, ("run 7", "run 8")))
    assert "Before: run 7; after: run 8." in text
    assert "| grpc | 1 | 60.0 → 66.0 (+10 %) | 0.40 → 0.50 (+25 %) |" in text
    assert "at 1 of 2 levels both sides' CPU moved the way the probe did" in text
    assert "| `served` | 0.040 → 0.050 (+25 %) |" in text


def _write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_read_run_refuses_when_a_level_predates_the_host_probe(tmp_path):
    old = json.loads(json.dumps(BEFORE))
    del old["levels"]["grpc"]["8"]["host_probe"]
    with pytest.raises(RunFileError, match="grpc at 8 users has no host probe"):
        read_run(_write(tmp_path / "summary.json", old))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read a bench summary"),
        (json.dumps({"mode": "overload", "levels": {}}), "not the summary.json of a"),
        (json.dumps({"mode": "load", "levels": {}}), "no host probe before the in-process"),
    ],
)
def test_read_run_refuses_when_the_file_is_not_a_load_run_with_probes(tmp_path, content, message):
    path = tmp_path / "summary.json"
    path.write_text(content)
    with pytest.raises(RunFileError, match=message):
        read_run(path)


def test_main_writes_the_json_and_its_table_when_given_two_runs(tmp_path):
    before = _write(tmp_path / "before.json", BEFORE)
    after = _write(tmp_path / "after.json", AFTER)
    output = tmp_path / "out" / "drift.json"
    assert main([str(before), str(after), "--labels", "a", "b", "--output", str(output)]) == 0
    assert json.loads(output.read_text())["labels"] == ["a", "b"]
    assert output.with_suffix(".md").read_text().startswith("# The host probe against")


def test_main_exits_with_a_usage_error_when_a_file_is_missing(tmp_path, capsys):
    after = _write(tmp_path / "after.json", AFTER)
    output = tmp_path / "drift.json"
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing.json"), str(after), "--output", str(output)])
    assert exit_info.value.code == 2
    assert "cannot read a bench summary" in capsys.readouterr().err
    assert not output.exists()
