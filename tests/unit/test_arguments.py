"""The command-line value types every command shares, and the commands that take them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fakescope import contract
from fakescope.arguments import (
    comma_separated_choices,
    existing_file,
    frame_count,
    ipv4_address,
    non_negative_number,
    port,
    positive_int,
    positive_ints,
    positive_number,
)
from fakescope.benchmarks import analyze_jobs, first_request, soak
from fakescope.cli import build_parser, main


@pytest.mark.parametrize(
    ("parse", "text", "error"),
    [
        (positive_int, "0", "must be >= 1, got 0"),
        (positive_int, "two", "expected an integer, got 'two'"),
        (frame_count, "0", f"must be 1..{contract.MAX_FRAMES_PER_REQUEST}, got 0"),
        (frame_count, str(contract.MAX_FRAMES_PER_REQUEST + 1), "must be 1.."),
        (positive_number, "0", "must be > 0, got 0"),
        (positive_number, "nan", "expected a finite number"),
        (positive_number, "inf", "expected a finite number"),
        (non_negative_number, "-5", "must be >= 0, got -5"),
        (port, "0", "must be a port, 1..65535, got 0"),
        (port, "70000", "must be a port, 1..65535, got 70000"),
        (positive_ints, "", "expected one or more counts"),
        (positive_ints, ",", "expected one or more counts"),
        (positive_ints, "1,0", "must be >= 1, got 0"),
        (comma_separated_choices(("grpc", "http")), "grpc,htp", "got 'grpc,htp'"),
        (comma_separated_choices(("grpc", "http")), "", "expected one or more of grpc, http"),
        (ipv4_address, "localhost", "must be an IPv4 address"),
        (ipv4_address, "::1", "must be an IPv4 address"),
        (ipv4_address, "10.1.2", "must be an IPv4 address"),
    ],
)
def test_argument_types_refuse_a_value_naming_the_rule_when_it_is_out_of_range(
    parse, text: str, error: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=error.replace(".", r"\.")):
        parse(text)


def test_argument_types_return_the_value_when_it_is_in_range() -> None:
    assert positive_int("3") == 3
    assert frame_count(str(contract.MAX_FRAMES_PER_REQUEST)) == contract.MAX_FRAMES_PER_REQUEST
    assert positive_number("0.25") == 0.25
    assert non_negative_number("0") == 0.0
    assert port("65535") == 65535
    assert positive_ints("1, 2,4") == [1, 2, 4]
    assert comma_separated_choices(("grpc", "http"))("http,grpc") == ["http", "grpc"]
    assert ipv4_address("0.0.0.0") == "0.0.0.0"


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["bench", "--protocols", "grpc,htp"], "argument --protocols: expected one or more of"),
        (["bench", "--users", ""], "argument --users: expected one or more counts"),
        (["bench", "--run-time", "0"], "argument --run-time: must be >= 1, got 0"),
        (["bench", "--frames", "0"], "argument --frames: must be 1.."),
        (["bench", "--limit", "-1"], "argument --limit: must be > 0, got -1"),
        (["bench", "--grpc-port", "70000"], "argument --grpc-port: must be a port"),
        (["serve", "--http-port", "70000"], "argument --http-port: must be a port"),
        (["serve", "--host", "localhost"], "argument --host: must be an IPv4 address"),
        (["demo", "--frames", "0"], "argument --frames: must be 1.."),
        (["web", "serve", "--port", "0"], "argument --port: must be a port"),
        (["web", "worker", "--drain-timeout", "-5"], "argument --drain-timeout: must be >= 0"),
        (["train", "d", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["train", "d", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
        (["train", "d", "--lr", "-1"], "argument --lr: must be > 0, got -1"),
        (["train", "d", "--val-fraction", "1.5"], "argument --val-fraction: must be in [0, 1)"),
        (["train", "d", "--sbi-rate", "2"], "argument --sbi-rate: must be in [0, 1], got 2"),
        (["train", "d", "--frames", "0"], "argument --frames: must be 1.."),
        (["train", "d", "--val-faces-per-epoch", "0"], "argument --val-faces-per-epoch: must"),
        (["evaluate", "d", "--threshold", "2"], "argument --threshold: must be in [0, 1]"),
        (["dataset", "synth", "o", "--max-identities", "1"], "argument --max-identities: must"),
        (["dataset", "synth", "o", "--width", "8"], "argument --width: must be >= 12 px"),
        (["dataset", "synth", "o", "--sbi-per-real", "-1"], "argument --sbi-per-real: must be"),
    ],
)
def test_fakescope_exits_2_naming_the_option_when_a_value_is_out_of_range(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert f"error: {error}" in _usage_error(argv, capsys)


@pytest.mark.parametrize(
    ("command", "argv", "error"),
    [
        (soak.main, ["--users", "0"], "argument --users: must be >= 1, got 0"),
        (soak.main, ["--sample-seconds", "0"], "argument --sample-seconds: must be > 0, got 0"),
        (soak.main, ["--limit", "nan"], "argument --limit: expected a finite number"),
        (soak.main, ["--minutes", "0"], "argument --minutes: must be >= 1, got 0"),
        (analyze_jobs.main, ["--rounds", "0"], "argument --rounds: must be >= 1, got 0"),
        (analyze_jobs.main, ["--output", "table.md"], "--output must name the .json result"),
        (first_request.main, ["--rounds", "0"], "argument --rounds: must be >= 1, got 0"),
        (first_request.main, ["--output", "table.md"], "--output must name the .json result"),
    ],
)
def test_measuring_commands_exit_2_naming_the_option_when_a_value_is_out_of_range(
    command, argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        command(argv)
    assert exited.value.code == 2
    assert f"error: {error}" in capsys.readouterr().err


def test_soak_exits_2_before_starting_a_server_when_no_users_and_no_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        soak.main(["--summary", str(tmp_path / "missing.json"), "--output", str(tmp_path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "no --users given, and no capacity read from --summary" in err
    assert "missing.json" in err
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


def test_existing_file_refuses_a_path_when_it_is_a_folder_or_missing(tmp_path: Path) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder, not a file"):
        existing_file(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError, match=r"no such file: .*missing\.pt"):
        existing_file(str(tmp_path / "missing.pt"))
    (tmp_path / "model.pt").write_bytes(b"x")
    assert existing_file(str(tmp_path / "model.pt")) == tmp_path / "model.pt"


def test_export_exits_2_naming_the_checkpoint_when_it_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(["export", "--checkpoint", str(tmp_path / "missing.pt")], capsys)
    assert "argument --checkpoint: no such file:" in err


def test_export_exits_2_before_loading_the_checkpoint_when_the_repository_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not even a checkpoint")  # never read: the repository is refused
    code = main(["export", "--checkpoint", str(checkpoint), "--repository", str(tmp_path)])
    assert code == 2
    assert "not a FakeScope model repository" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (["--val-fraction", "0.6", "--test-fraction", "0.5"], "together they must be below 1"),
        (["--resume"], "--resume continues the run in --output"),
    ],
)
def test_train_exits_2_before_reading_data_when_options_contradict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], error: str
) -> None:
    # DATA_DIR does not exist: an error about the options shows they were checked first
    assert main(["train", str(tmp_path / "no-data"), *extra]) == 2
    assert error in capsys.readouterr().err
