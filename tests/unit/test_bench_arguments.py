"""The command-line options the benchmarks share."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fakescope.benchmarks.arguments import (
    add_run_arguments,
    check_json_output,
    check_runs,
    parse_run_arguments,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, runs=5, result=Path("out.json"))
    return parser


def test_add_run_arguments_gives_the_benchmark_defaults_when_no_option_is_given():
    args = _parser().parse_args([])
    assert args.runs == 5
    assert args.output == Path("out.json")
    assert args.bench_videos.name == "bench-videos"
    assert args.dfdc_sample.name == "dfdc_sample"


def test_check_runs_exits_with_a_usage_error_when_runs_is_below_one(capsys):
    parser = _parser()
    with pytest.raises(SystemExit) as exited:
        check_runs(parser, parser.parse_args(["--runs", "0"]))
    assert exited.value.code == 2
    assert "--runs must be at least 1" in capsys.readouterr().err
    check_runs(parser, parser.parse_args(["--runs", "1"]))  # one run is enough


def test_check_json_output_exits_with_a_usage_error_when_output_is_not_json(capsys):
    parser = _parser()
    check_json_output(parser, parser.parse_args([]))  # out.json passes
    with pytest.raises(SystemExit) as exited:
        check_json_output(parser, parser.parse_args(["--output", "table.md"]))
    assert exited.value.code == 2
    assert "--output must name the .json result file" in capsys.readouterr().err


def test_parse_run_arguments_keeps_the_benchmarks_own_options_when_parsing(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=3)
    args = parse_run_arguments(
        parser, ["--faces", "4", "--runs", "2"], runs=5, result=Path("r.json")
    )
    assert (args.faces, args.runs, args.output) == (4, 2, Path("r.json"))
    with pytest.raises(SystemExit) as exited:
        parse_run_arguments(
            argparse.ArgumentParser(), ["--runs", "0"], runs=5, result=Path("r.json")
        )
    assert exited.value.code == 2
    assert "--runs must be at least 1" in capsys.readouterr().err
