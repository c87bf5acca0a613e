"""Classifier versions: rollback starts from the served (pinned) version, and an export to S3
that fails leaves nothing of its version behind.

Local repositories are folders under ``tmp_path``; S3 is a real server (SeaweedFS, the session's
``s3_server`` fixture, tests/support/s3_server.py). An upload that S3 refuses is made real by a
TCP proxy in front of that server (:class:`RefusingProxy`): every request goes over the
network to it, and the proxy answers the requests it is told to refuse with S3's
``AccessDenied``, as a bucket policy or a dropped connection would make them fail.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytest.importorskip("torch", reason="export needs the train extra (torch)")

from fakescope import contract
from fakescope.cli import main as fakescope_main
from fakescope.export.classifier import build_backbone, default_spec
from fakescope.export.versions import CARD, rollback, served_version, write_served_files
from fakescope.serving.model_config import parse_pinned_version, served_version_dir
from fakescope.storage import S3Location
from fakescope.training.train import save_checkpoint
from tests.support.s3_server import S3Server, use_its_credentials
from tests.support.servers import REPOSITORY

CLASSIFIER = contract.CLASSIFIER_MODEL
BUCKET = "versions"
#: A real classifier ONNX file (the committed served one) every test version is a copy of.
MODEL = served_version_dir(REPOSITORY / CLASSIFIER) / "model.onnx"


def _repository(root: Path, versions: dict[int, tuple[str, ...]], pinned: int) -> Path:
    """A model repository whose classifier has ``versions`` (their files), ``pinned`` served.

    ``pinned`` may name a version that has no folder (the config is written from a copy of a
    version that is then removed).
    """
    folder = root / CLASSIFIER
    for version, files in versions.items():
        (folder / str(version)).mkdir(parents=True)
        if "model.onnx" in files:
            shutil.copyfile(MODEL, folder / str(version) / "model.onnx")
        if CARD in files:
            (folder / str(version) / CARD).write_text(f"card of version {version}\n")
    if pinned not in versions:
        shutil.copytree(folder / str(min(versions)), folder / str(pinned))
    write_served_files(folder, pinned)
    if pinned not in versions:
        shutil.rmtree(folder / str(pinned))
    return root


#: 1 and 3 and 4 complete, 2 a card only (what a failed export left), 3 served: 4 is newer
#: but was never pinned (an export whose switch failed).
LAYOUT = {1: ("model.onnx", CARD), 2: (CARD,), 3: ("model.onnx", CARD), 4: ("model.onnx", CARD)}


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("fakescope: error: ") and "\n" not in err, err
    return err


# --- local ----------------------------------------------------------------------------------------
def test_rollback_serves_the_highest_earlier_version_with_a_model_when_a_newer_one_is_unpinned(
    tmp_path,
):
    repository = _repository(tmp_path / "repo", LAYOUT, pinned=3)
    folder = repository / CLASSIFIER

    assert rollback(repository, tmp_path / "retired") == 1

    assert parse_pinned_version((folder / "config.pbtxt").read_text()) == 1
    assert (folder / CARD).read_text() == "card of version 1\n"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["1", "2", "4"]
    (retired,) = (tmp_path / "retired" / CLASSIFIER).iterdir()
    assert retired.name.startswith("3-") and (retired / "model.onnx").is_file()


def test_served_version_is_the_pinned_one_when_a_newer_folder_is_unpinned(tmp_path):
    repository = _repository(tmp_path / "repo", LAYOUT, pinned=3)
    assert served_version(repository) == 3


def test_rollback_exits_3_in_one_line_when_the_config_pins_a_version_without_folder(
    tmp_path, capsys
):
    repository = _repository(tmp_path / "repo", {1: ("model.onnx",), 2: ("model.onnx",)}, 5)
    listing = sorted(p.name for p in (repository / CLASSIFIER).iterdir())
    code = fakescope_main(["rollback", "--repository", str(repository)])
    assert code == 3
    assert "pins version 5, which has no folder" in _one_error_line(capsys)
    assert sorted(p.name for p in (repository / CLASSIFIER).iterdir()) == listing


def test_rollback_exits_4_in_one_line_and_switches_nothing_when_the_retired_dir_is_a_file(
    tmp_path, capsys
):
    repository = _repository(tmp_path / "repo", LAYOUT, pinned=3)
    config = (repository / CLASSIFIER / "config.pbtxt").read_bytes()
    not_a_folder = tmp_path / "retired"
    not_a_folder.write_text("a file where the retired versions would go")
    code = fakescope_main(
        ["rollback", "--repository", str(repository), "--retired-dir", str(not_a_folder)]
    )
    assert code == 4
    assert str(not_a_folder) in _one_error_line(capsys)
    assert (repository / CLASSIFIER / "config.pbtxt").read_bytes() == config
    assert (repository / CLASSIFIER / "3" / "model.onnx").is_file()


# --- S3 -------------------------------------------------------------------------------------------
@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server, its credentials in the environment (and no others), the bucket made."""
    use_its_credentials(s3_server, monkeypatch)
    if BUCKET not in {
        b["Name"] for b in s3_server.storage(BUCKET).client.list_buckets()["Buckets"]
    }:
        s3_server.create_bucket(BUCKET)
    return s3_server


def _on_s3(s3: S3Server, local: Path, prefix: str) -> str:
    s3.upload_tree(local, BUCKET, prefix)
    return s3.url(BUCKET, prefix)


def _versions_on_s3(s3: S3Server, prefix: str) -> dict[str, list[str]]:
    """``{version: its files}`` of the classifier on S3."""
    found: dict[str, list[str]] = {}
    for key in sorted(s3.storage(BUCKET, f"{prefix}/{CLASSIFIER}").listing()):
        if "/" in key:
            version, name = key.split("/", 1)
            found.setdefault(version, []).append(name)
    return found


def test_rollback_on_s3_serves_the_highest_earlier_version_with_a_model_when_a_newer_is_unpinned(
    s3, tmp_path, capsys
):
    url = _on_s3(s3, _repository(tmp_path / "repo", LAYOUT, pinned=3), "rollback-pinned")
    retired = s3.url(BUCKET, "rollback-pinned-retired")

    code = fakescope_main(["rollback", "--repository", url, "--retired-dir", retired])

    assert code == 0, capsys.readouterr().err
    assert "now serves version 1" in capsys.readouterr().out
    classifier = s3.storage(BUCKET, f"rollback-pinned/{CLASSIFIER}")
    assert parse_pinned_version(classifier.read_bytes("config.pbtxt").decode()) == 1
    assert classifier.read_bytes(CARD) == b"card of version 1\n"
    assert _versions_on_s3(s3, "rollback-pinned") == {
        "1": [CARD, "model.onnx"],
        "2": [CARD],
        "4": [CARD, "model.onnx"],
    }
    moved = s3.storage(BUCKET, "rollback-pinned-retired").listing()
    assert sorted(k.split("/", 2)[2] for k in moved) == [CARD, "model.onnx"]
    assert all(k.startswith(f"{CLASSIFIER}/3-") for k in moved)


def test_rollback_on_s3_exits_3_in_one_line_when_the_config_pins_a_version_without_objects(
    s3, tmp_path, capsys
):
    local = _repository(tmp_path / "repo", {1: ("model.onnx",), 2: ("model.onnx",)}, 5)
    url = _on_s3(s3, local, "rollback-missing")
    before = s3.storage(BUCKET, "rollback-missing").listing()

    assert fakescope_main(["rollback", "--repository", url]) == 3

    err = _one_error_line(capsys)
    assert f"{url}/{CLASSIFIER}/config.pbtxt pins version 5, which has no folder" in err
    assert s3.storage(BUCKET, "rollback-missing").listing() == before


class RefusingProxy:
    """A TCP proxy to an S3 server that answers ``AccessDenied`` to some requests.

    Every connection carries one request (``Connection: close`` is added on the way), so each
    request line is seen; ``refuse(method, target)`` picks the refused ones, the rest pass
    through byte for byte.
    """

    def __init__(self, upstream: str, refuse: Callable[[str, str], bool]) -> None:
        """Listen on a free loopback port; forward to ``upstream`` (``http://host:port``)."""
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.refuse = refuse
        self.refused: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop accepting connections."""
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            if self.refuse(method, target):
                self.refused.append(f"{method} {target}")
                error = b"<Error><Code>AccessDenied</Code><Message>refused</Message></Error>"
                client.sendall(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(error), error)
                )
                return
            kept = [line for line in lines[1:] if not line.lower().startswith("connection:")]
            request = "\r\n".join([lines[0], *kept, "Connection: close"]) + "\r\n\r\n"
            with socket.create_connection(self.upstream) as server:
                server.sendall(request.encode("latin-1") + body)
                threading.Thread(target=_pump, args=(client, server), daemon=True).start()
                _pump(server, client)
            client.shutdown(socket.SHUT_RDWR)


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy ``source`` to ``target`` until either side closes."""
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:  # the other direction closed the sockets
        pass


@pytest.fixture
def export_repository(s3, tmp_path) -> Iterator[tuple[str, Callable[..., RefusingProxy]]]:
    """A repository on S3 serving version 1, and a maker of refusing proxies in front of S3."""
    prefix = f"export-{tmp_path.name}"
    _on_s3(s3, _repository(tmp_path / "repo", {1: ("model.onnx", CARD)}, 1), prefix)
    proxies: list[RefusingProxy] = []

    def proxy(refuse: Callable[[str, str], bool]) -> RefusingProxy:
        proxies.append(RefusingProxy(s3.endpoint, refuse))
        return proxies[-1]

    yield prefix, proxy
    for made in proxies:
        made.close()


def _checkpoint(path: Path) -> Path:
    spec = dataclasses.replace(default_spec("efficientnet-lite0"), input_size=64)
    backbone = build_backbone("efficientnet-lite0", imagenet=False)
    return save_checkpoint(path, backbone, spec, {"trained_on": "nothing (a test of publishing)"})


@pytest.mark.parametrize(
    ("refused", "what"),
    [
        (lambda method, target: "/2/model.onnx" in target, "the new version's model"),
        (
            lambda method, target: method == "PUT" and target.endswith("/config.pbtxt"),
            "the config that would serve it",
        ),
    ],
    ids=["model-upload", "config-switch"],
)
def test_export_to_s3_leaves_nothing_of_the_new_version_when_publishing_it_fails(
    s3, export_repository, tmp_path, capsys, refused, what
):
    prefix, proxy = export_repository
    through = proxy(refused)
    url = S3Location(through.endpoint, BUCKET, prefix).url
    classifier = s3.storage(BUCKET, f"{prefix}/{CLASSIFIER}")
    config = classifier.read_bytes("config.pbtxt")

    code = fakescope_main(
        ["export", "--checkpoint", str(_checkpoint(tmp_path / "c.pt")), "--repository", url]
    )

    assert through.refused, f"S3 never refused {what}"
    assert code == 4
    assert "cannot upload" in _one_error_line(capsys)
    assert _versions_on_s3(s3, prefix) == {"1": [CARD, "model.onnx"]}
    assert classifier.read_bytes("config.pbtxt") == config


def test_export_to_s3_publishes_through_the_proxy_when_nothing_is_refused(
    s3, export_repository, tmp_path, capsys
):
    # the control of the test above: the proxy alone changes nothing
    prefix, proxy = export_repository
    url = S3Location(proxy(lambda method, target: False).endpoint, BUCKET, prefix).url
    checkpoint = _checkpoint(tmp_path / "c.pt")
    assert fakescope_main(["export", "--checkpoint", str(checkpoint), "--repository", url]) == 0
    assert "version 2 written" in capsys.readouterr().out
    assert _versions_on_s3(s3, prefix) == {"1": [CARD, "model.onnx"], "2": [CARD, "model.onnx"]}
    config = s3.storage(BUCKET, f"{prefix}/{CLASSIFIER}").read_bytes("config.pbtxt").decode()
    assert parse_pinned_version(config) == 2
