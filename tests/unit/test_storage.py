"""S3 addresses and credentials (fakescope.storage), pinned versions, sibling-file lookup.

No server here: what is checked is the parsing and the choices made before any request. The
requests themselves are tested against a real S3 server in tests/server/test_s3_repository.py.
"""

from __future__ import annotations

import signal

import pytest

from fakescope import contract
from fakescope.cli import EXIT_SERVER_START
from fakescope.cli import main as fakescope_main
from fakescope.serving.model_config import parse_pinned_version, pinned_version
from fakescope.serving.siblings import REPOSITORY_ENV, served_version_file, sibling_file
from fakescope.storage import (
    S3Location,
    StorageError,
    parse_s3_url,
    s3_credentials,
    s3_environment,
)
from tests.support.servers import REPOSITORY


@pytest.mark.parametrize(
    ("url", "endpoint", "bucket", "prefix"),
    [
        ("s3://127.0.0.1:9000/models/repo", "http://127.0.0.1:9000", "models", "repo"),
        ("s3://127.0.0.1:9000/models/a/b/", "http://127.0.0.1:9000", "models", "a/b"),
        ("s3://minio.local:9000/models", "http://minio.local:9000", "models", ""),
        (
            "s3://https://s3.example.com:443/my.bucket/x",
            "https://s3.example.com:443",
            "my.bucket",
            "x",
        ),
        ("s3://fakescope-models/prod/repo", None, "fakescope-models", "prod/repo"),
    ],
)
def test_parse_s3_url_reads_endpoint_bucket_prefix_when_url_is_valid(url, endpoint, bucket, prefix):
    location = parse_s3_url(url)
    assert location == S3Location(endpoint, bucket, prefix)
    assert parse_s3_url(location.url) == location  # the URL round-trips (tritonserver's form)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9000/models", "not an S3 URL"),
        ("s3://", "no bucket"),
        ("s3://127.0.0.1:9000/", "no bucket"),
        ("s3://127.0.0.1:99999/models", "bad host:port"),
        ("s3://127.0.0.1:/models", "bad host:port"),
        ("s3://Models/repo", "bad bucket name"),
        ("s3://127.0.0.1:9000/my_bucket/repo", "bad bucket name"),
        ("s3://https://models/repo", "needs HOST:PORT"),
    ],
)
def test_parse_s3_url_names_the_problem_when_url_is_malformed(url, reason):
    with pytest.raises(StorageError, match=reason):
        parse_s3_url(url)


def test_location_child_and_parent_move_along_the_prefix_when_joined():
    root = parse_s3_url("s3://127.0.0.1:9000/models")
    repo = root.child("team/repo")
    assert repo.key("face_classifier/config.pbtxt") == "team/repo/face_classifier/config.pbtxt"
    assert repo.parent.url == "s3://127.0.0.1:9000/models/team"
    assert root.parent == root  # the bucket's root stays the root
    assert root.key("a") == "a"


def test_s3_credentials_refuse_naming_variables_when_none_set():
    with pytest.raises(StorageError, match=r"AWS_ACCESS_KEY_ID.*SERVICE_ACCOUNT_KEY_ID"):
        s3_credentials({})
    with pytest.raises(StorageError, match="AWS_SECRET_ACCESS_KEY"):
        s3_credentials({"AWS_ACCESS_KEY_ID": "key"})


def test_s3_environment_turns_seed_aliases_into_aws_names_when_only_aliases_set():
    env = s3_environment({"SERVICE_ACCOUNT_KEY_ID": "key", "SERVICE_ACCOUNT_SECRET": "secret"})
    assert env["AWS_ACCESS_KEY_ID"] == "key"
    assert env["AWS_SECRET_ACCESS_KEY"] == "secret"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "us-east-1"
    assert "AWS_SESSION_TOKEN" not in env


def test_s3_credentials_prefer_aws_names_and_region_when_both_kinds_set():
    creds = s3_credentials(
        {
            "AWS_ACCESS_KEY_ID": "aws",
            "AWS_SECRET_ACCESS_KEY": "aws-secret",
            "SERVICE_ACCOUNT_KEY_ID": "seed",
            "SERVICE_ACCOUNT_SECRET": "seed-secret",
            "AWS_DEFAULT_REGION": "eu-west-3",
        }
    )
    assert (creds.access_key_id, creds.region) == ("aws", "eu-west-3")
    assert "aws-secret" not in repr(creds)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("version_policy: { specific: { versions: [ 4 ] } }", 4),
        ("version_policy: { specific: { versions: 12 } }", 12),
        ("version_policy: { latest: { num_versions: 1 } }", None),
        ("", None),
    ],
)
def test_parse_pinned_version_reads_the_pin_when_policy_is_specific(policy, expected):
    text = f'name: "face_classifier"\n{policy}\nmax_batch_size: 32\n'
    assert parse_pinned_version(text) == expected


def test_parse_pinned_version_refuses_when_several_versions_pinned():
    with pytest.raises(ValueError, match="one pinned version"):
        parse_pinned_version("version_policy: { specific: { versions: [ 3, 4 ] } }")


def test_committed_classifier_config_pins_the_newest_version_when_read():
    folder = REPOSITORY / contract.CLASSIFIER_MODEL
    newest = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    assert pinned_version(folder / "config.pbtxt") == newest


def test_sibling_file_finds_the_folder_beside_when_repository_is_local():
    args = {"model_repository": str(REPOSITORY / contract.FACE_DETECTOR_MODEL)}
    found = sibling_file(args, contract.RNET_MODEL, "config.pbtxt", environ={})
    assert found == REPOSITORY / contract.RNET_MODEL / "config.pbtxt"
    onnx = served_version_file(args, contract.CLASSIFIER_MODEL, "model.onnx", environ={})
    pinned = pinned_version(REPOSITORY / contract.CLASSIFIER_MODEL / "config.pbtxt")
    assert onnx == REPOSITORY / contract.CLASSIFIER_MODEL / str(pinned) / "model.onnx"


def test_sibling_file_hints_at_the_variable_when_nothing_lies_beside(tmp_path):
    # What a python model sees when tritonserver copied it alone into a temporary folder.
    own = tmp_path / "folderAbC123"
    own.mkdir()
    with pytest.raises(FileNotFoundError, match=REPOSITORY_ENV):
        sibling_file({"model_repository": str(own)}, contract.RNET_MODEL, "config.pbtxt", {})


def test_serve_exits_6_in_one_line_when_the_environment_names_an_unknown_aws_profile(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    handlers = [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)]
    code = fakescope_main(["serve", "--repository", "s3://127.0.0.1:1/bucket/repo"])
    assert code == EXIT_SERVER_START
    # the caller's own handlers again, not serve's
    assert [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)] == handlers
    assert capsys.readouterr().err.splitlines() == [
        "fakescope: error: cannot set up an S3 client for s3://127.0.0.1:1/bucket/repo: "
        "ProfileNotFound: The config profile (no-such-profile) could not be found"
    ]
