"""The model repository on S3: served from there, published to and rolled back there.

A real S3 server (SeaweedFS, tests/support/s3_server.py) on loopback; buckets are created by the
tests with boto3; tritonserver reads ``s3://127.0.0.1:PORT/models/repo`` itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from fakescope import contract
from fakescope.cli import main as fakescope_main
from fakescope.client.analyze import analyze
from fakescope.serving.model_config import parse_pinned_version
from fakescope.storage import S3Storage
from tests.support.fixtures import S3_MODELS_BUCKET, S3_REPOSITORY_PREFIX
from tests.support.s3_server import CREDENTIAL_VARIABLES, S3Server, use_its_credentials
from tests.support.servers import REPOSITORY, free_ports

BUCKET = S3_MODELS_BUCKET
SAMPLE = REPOSITORY.parent / "samples" / "astronaut_face_720p.mp4"
CLASSIFIER = contract.CLASSIFIER_MODEL
SERVED = parse_pinned_version((REPOSITORY / CLASSIFIER / "config.pbtxt").read_text())


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The process environment holds the S3 server's credentials (and no others)."""
    return use_its_credentials(s3_server, monkeypatch)


def _own_repository(s3: S3Server, prefix: str) -> str:
    """A private copy of the committed repository on S3 (for a test that changes it)."""
    s3.upload_tree(REPOSITORY, BUCKET, prefix)
    return s3.url(BUCKET, prefix)


def _wait_ready(process: subprocess.Popen[str], http_port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{http_port}/v2/health/ready"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"fakescope serve exited with {process.returncode}: {out}{err}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail(f"fakescope serve not ready after {timeout_s:.0f} s")


# --- serve --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_serve_answers_like_the_local_repository_when_repository_is_an_s3_url(
    s3_env, s3_repository, triton, tmp_path
):
    http, grpc, metrics = free_ports(3)
    command = [sys.executable, "-m", "fakescope.cli", "serve", "--repository", s3_repository]
    command += ["--http-port", str(http), "--grpc-port", str(grpc)]
    command += ["--metrics-port", str(metrics)]
    # cwd: the runtime folder (.fakescope/runtime, with tritonserver's copy of the models)
    # goes under tmp_path, not into the checkout.
    process = subprocess.Popen(
        command, cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, text=True
    )
    try:
        _wait_ready(process, http, timeout_s=180)
        from_s3 = analyze(SAMPLE, url=f"127.0.0.1:{grpc}", protocol="grpc")
        local = analyze(SAMPLE, url=triton.address.grpc_url, protocol="grpc")
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{CLASSIFIER}") as answer:
            served_versions = json.loads(answer.read())["versions"]
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=90)
    assert process.returncode == 0, out
    assert "ready" in out and "FakeScope stopped." in out
    assert served_versions == [str(SERVED)]
    assert from_s3.status == local.status == contract.STATUS_OK
    assert from_s3.label == local.label
    assert from_s3.fake_probability == pytest.approx(local.fake_probability, abs=1e-6)
    assert from_s3.faces == local.faces
    # tritonserver's copy of the models went into the runtime folder and left with the server
    runtime = tmp_path / ".fakescope" / "runtime"
    assert list(runtime.glob("s3-configs-*")), "the S3 configs were not copied where expected"
    assert not list(runtime.glob("s3-models-*"))


def test_serve_exits_6_naming_the_variables_when_s3_credentials_are_missing(
    s3_env, s3_repository, monkeypatch, capsys
):
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    code = fakescope_main(["serve", "--repository", s3_repository, "--http-port", "1"])
    assert code == 6
    err = capsys.readouterr().err
    assert "no S3 credentials" in err and "AWS_ACCESS_KEY_ID" in err


def test_serve_exits_6_when_s3_refuses_the_credentials(s3_env, s3_repository, monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    code = fakescope_main(["serve", "--repository", s3_repository, "--http-port", "1"])
    assert code == 6
    assert "credentials were refused" in capsys.readouterr().err


def test_serve_exits_6_when_the_bucket_does_not_exist(s3_env, capsys):
    url = s3_env.url("no-such-bucket", "repo")
    assert fakescope_main(["serve", "--repository", url, "--http-port", "1"]) == 6
    assert "bucket 'no-such-bucket' does not exist" in capsys.readouterr().err


def test_serve_exits_6_when_the_prefix_holds_no_model(s3_env, s3_repository, capsys):
    url = s3_env.url(BUCKET, "not-a-repository")
    assert fakescope_main(["serve", "--repository", url, "--http-port", "1"]) == 6
    assert "holds no model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "reason"), [("s3://Models/repo", "bad bucket name"), ("s3://h:0/b1/r", "host:port")]
)
def test_cli_exits_2_naming_the_problem_when_the_s3_url_is_malformed(url, reason, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fakescope_main(["serve", "--repository", url])
    assert exit_info.value.code == 2
    assert reason in capsys.readouterr().err


def test_storage_accepts_seed_aliases_when_only_service_account_variables_are_set(
    s3_server, s3_repository
):
    env = {
        "SERVICE_ACCOUNT_KEY_ID": s3_server.environment["AWS_ACCESS_KEY_ID"],
        "SERVICE_ACCOUNT_SECRET": s3_server.environment["AWS_SECRET_ACCESS_KEY"],
    }
    storage = S3Storage(s3_server.location(BUCKET, S3_REPOSITORY_PREFIX), env)
    assert f"{CLASSIFIER}/config.pbtxt" in storage.listing()


# --- export and rollback ------------------------------------------------------------------------
def _checkpoint(path: Path) -> Path:
    """A small real checkpoint (Lite0 ImageNet backbone at 112 px) in training's format."""
    pytest.importorskip("torch", reason="export needs the train extra (torch)")
    from fakescope.export.classifier import build_backbone, default_spec
    from fakescope.training.train import save_checkpoint

    spec = dataclasses.replace(default_spec("efficientnet-lite0"), input_size=112)
    provenance = {"trained_on": "nothing (a test of publishing)"}
    return save_checkpoint(path, build_backbone("efficientnet-lite0"), spec, provenance)


class _Reader(threading.Thread):
    """A replica's view while a publisher works: the pinned version and its files, polled."""

    def __init__(self, classifier: S3Storage) -> None:
        super().__init__(daemon=True)
        self.classifier = classifier
        self.views: list[tuple[int, dict[str, int]]] = []
        self.errors: list[BaseException] = []  # a thread's failure would otherwise be lost
        self.done = threading.Event()

    def look(self) -> None:
        pinned = parse_pinned_version(self.classifier.read_bytes("config.pbtxt").decode())
        assert pinned is not None
        self.views.append((pinned, self.classifier.at(str(pinned)).listing()))

    def run(self) -> None:
        try:
            while not self.done.is_set():
                self.look()
        except BaseException as exc:  # handed to the test, which fails on it
            self.errors.append(exc)


@pytest.mark.slow
@pytest.mark.torch
def test_export_publishes_the_whole_version_before_the_config_when_repository_is_on_s3(
    s3_env, s3_repository, tmp_path, capsys
):
    checkpoint = _checkpoint(tmp_path / "checkpoint.pt")
    url = _own_repository(s3_env, "export-test")
    classifier = s3_env.storage(BUCKET, f"export-test/{CLASSIFIER}")
    reader = _Reader(classifier)
    reader.start()
    try:
        code = fakescope_main(["export", "--checkpoint", str(checkpoint), "--repository", url])
    finally:
        reader.done.set()
        reader.join(timeout=30)
    assert not reader.is_alive()
    assert reader.errors == []  # every view in between had a pinned version and its files
    reader.look()  # and once more after the publisher is done
    assert code == 0, capsys.readouterr().err
    new = SERVED + 1
    assert f"version {new} written to {url}" in capsys.readouterr().out
    final = classifier.listing()
    new_files = {k.split("/", 1)[1]: size for k, size in final.items() if k.startswith(f"{new}/")}
    assert set(new_files) == {"model.onnx", "MODEL_CARD.md"}
    # Every view a replica could have had: the old version, or the new one complete.
    pinned_seen = {pinned for pinned, _ in reader.views}
    assert pinned_seen == {SERVED, new}, pinned_seen
    for pinned, files in reader.views:
        if pinned == new:
            assert files == new_files
        else:
            assert "model.onnx" in files
    config = classifier.read_bytes("config.pbtxt").decode()
    assert parse_pinned_version(config) == new and "dims: [ 112, 112, 3 ]" in config
    assert classifier.read_bytes("MODEL_CARD.md") == classifier.read_bytes(f"{new}/MODEL_CARD.md")


@pytest.mark.torch
def test_rollback_on_s3_serves_the_previous_version_and_retires_the_newest_when_two_exist(
    s3_env, s3_repository, tmp_path, capsys
):
    pytest.importorskip("torch", reason="rollback needs the train extra (torch)")
    from fakescope.export.versions import write_served_files

    url = _own_repository(s3_env, "rollback-test")
    classifier = s3_env.storage(BUCKET, f"rollback-test/{CLASSIFIER}")
    newest = SERVED + 1
    # A newer version on S3, as an export leaves it: a copy of the served one, pinned.
    for name in ("model.onnx", "MODEL_CARD.md"):
        classifier.copy(f"{SERVED}/{name}", classifier, f"{newest}/{name}")
        classifier.download(f"{newest}/{name}", tmp_path / CLASSIFIER / str(newest) / name)
    write_served_files(tmp_path / CLASSIFIER, newest)
    classifier.upload(tmp_path / CLASSIFIER / "config.pbtxt", "config.pbtxt")
    retired = s3_env.url(BUCKET, "rollback-test-retired")

    code = fakescope_main(["rollback", "--repository", url, "--retired-dir", retired])

    assert code == 0, capsys.readouterr().err
    assert f"now serves version {SERVED}" in capsys.readouterr().out
    committed = REPOSITORY / CLASSIFIER
    assert classifier.read_bytes("config.pbtxt") == (committed / "config.pbtxt").read_bytes()
    assert classifier.read_bytes("MODEL_CARD.md") == (committed / "MODEL_CARD.md").read_bytes()
    assert not any(k.startswith(f"{newest}/") for k in classifier.listing())
    moved = s3_env.storage(BUCKET, "rollback-test-retired").listing()
    assert sorted(k.split("/", 2)[2] for k in moved) == ["MODEL_CARD.md", "model.onnx"]
    assert all(k.startswith(f"{CLASSIFIER}/{newest}-") for k in moved)


@pytest.mark.torch
def test_rollback_on_s3_exits_2_when_one_version_is_left(s3_env, s3_repository, capsys):
    pytest.importorskip("torch", reason="rollback needs the train extra (torch)")
    s3_env.storage(BUCKET, f"one-version/{CLASSIFIER}/1").upload(SAMPLE, "model.onnx")
    url = s3_env.url(BUCKET, "one-version")
    assert fakescope_main(["rollback", "--repository", url]) == 2
    assert "cannot roll back" in capsys.readouterr().err


def test_export_to_s3_exits_2_when_no_checkpoint_is_given(capsys):
    assert fakescope_main(["export", "--repository", "s3://127.0.0.1:9/models/repo"]) == 2
    assert "give --checkpoint" in capsys.readouterr().err
