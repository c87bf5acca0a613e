"""Faults: tritonserver killed under the CLI and under a client, a python model that raises."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from fakescope import contract
from fakescope.benchmarks.media import make_face_video
from fakescope.client.analyze import analyze
from fakescope.client.triton import DetectorClient, ServerUnreachableError
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress, shm_regions
from tests.servers import REPOSITORY, free_ports

READY = "ready: HTTP"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _process_group_alive(pgid: int) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive


class ServeProcess:
    """`fakescope serve` in a subprocess on free loopback ports."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.http, self.grpc, self.metrics = free_ports(3)
        command = [sys.executable, "-m", "fakescope.cli", "serve", "--repository", str(REPOSITORY)]
        command += ["--http-port", str(self.http), "--grpc-port", str(self.grpc)]
        command += ["--metrics-port", str(self.metrics), *extra]
        self.proc = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_ready(self, count: int = 1, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(READY in line for line in self.lines) >= count or self._server_ready(count):
                return
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            time.sleep(0.2)
        raise TimeoutError("fakescope serve did not become ready")

    def _server_ready(self, count: int) -> bool:
        if count == 1:
            return False
        try:
            return grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc}").is_server_ready()
        except InferenceServerException:
            return False

    def tritonserver_pid(self) -> int:
        children = _children(self.proc.pid)
        assert len(children) == 1, children
        return children[0]


def test_serve_exits_nonzero_and_cleans_up_when_tritonserver_is_killed(tmp_path):
    serve = ServeProcess(tmp_path)
    serve.wait_ready()
    triton_pid = serve.tritonserver_pid()
    os.kill(triton_pid, signal.SIGKILL)
    code = serve.proc.wait(timeout=10)
    stderr = serve.proc.stderr.read() if serve.proc.stderr else ""
    assert code == 6
    assert "exited unexpectedly" in stderr
    assert shm_regions(serve.http) == []
    assert _process_group_alive(triton_pid) == []  # no orphan python stubs


def test_serve_restarts_and_serves_again_when_tritonserver_is_killed_with_restart(tmp_path):
    video = make_face_video(tmp_path / "face.mp4", seconds=1, fps=8)
    serve = ServeProcess(tmp_path, "--restart")
    serve.wait_ready()
    first = serve.tritonserver_pid()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        children = _children(serve.proc.pid)
        if children and children[0] != first and serve._server_ready(2):
            break
        time.sleep(0.2)
    else:
        pytest.fail("tritonserver was not restarted")
    verdict = analyze(video, url=f"127.0.0.1:{serve.grpc}", protocol="grpc", num_frames=4)
    assert verdict.status == contract.STATUS_OK
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(timeout=60) == 0
    assert shm_regions(serve.http) == []


def test_client_reports_unreachable_within_5s_when_server_dies_mid_request(tmp_path):
    http, grpc, metrics = free_ports(3)
    server = EmbeddedTriton(
        REPOSITORY, ServerAddress("127.0.0.1", http, grpc, metrics), runtime_dir=tmp_path / "rt"
    )
    server.start()
    try:
        client = DetectorClient(server.address.grpc_url, "grpc", timeout_s=30)
        frames = np.zeros((64, 720, 1280, 3), np.uint8)  # slow enough to be in flight
        stamps = np.arange(64, dtype=np.float32)
        errors: list[BaseException] = []
        done = threading.Event()

        def call() -> None:
            try:
                while True:
                    client.infer(frames, stamps)
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)
            finally:
                done.set()

        threading.Thread(target=call, daemon=True).start()
        time.sleep(1.0)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert done.wait(timeout=10)
        assert time.monotonic() - killed < 5.0
        assert isinstance(errors[0], ServerUnreachableError), repr(errors[0])
    finally:
        server.stop()
    assert shm_regions(http) == []


def test_ensemble_returns_model_message_when_python_model_raises(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPOSITORY, repo)
    scorer = repo / contract.FACE_SCORER_MODEL / "1" / "model.py"
    scorer.write_text(
        scorer.read_text().replace(
            "    async def _score(self, request) -> pb_utils.InferenceResponse:\n",
            "    async def _score(self, request) -> pb_utils.InferenceResponse:\n"
            '        raise RuntimeError("injected fault: scorer exploded")\n',
        )
    )
    http, grpc, metrics = free_ports(3)
    with EmbeddedTriton(
        repo, ServerAddress("127.0.0.1", http, grpc, metrics), runtime_dir=tmp_path / "rt"
    ) as server:
        client = grpcclient.InferenceServerClient(server.address.grpc_url)
        frames = np.zeros((1, 64, 64, 3), np.uint8)
        inputs = [
            grpcclient.InferInput(contract.FRAMES, list(frames.shape), "UINT8"),
            grpcclient.InferInput(contract.FRAME_TIMESTAMPS, [1], "FP32"),
        ]
        inputs[0].set_data_from_numpy(frames)
        inputs[1].set_data_from_numpy(np.zeros(1, np.float32))
        with pytest.raises(InferenceServerException, match="injected fault: scorer exploded"):
            client.infer(contract.ENSEMBLE_MODEL, inputs)
        assert client.is_model_ready(contract.ENSEMBLE_MODEL)
