"""Faults: tritonserver killed under the CLI and under a client, a server restarted under a client
holding a shared-memory region, a python model that raises, a model called through BLS that
refuses requests."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from fakescope import contract
from fakescope.benchmarks.media import face_frames, make_face_video, no_face_frames
from fakescope.client.analyze import analyze
from fakescope.client.triton import DetectorClient, ServerUnreachableError
from fakescope.serving.detector_nets import BLS
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress, shm_regions
from tests.support.detector_queue import wait_until_waiting
from tests.support.servers import (
    REPOSITORY,
    client_regions,
    free_ports,
    live_group_members,
    restarted,
    wait_until,
)

READY = "ready: HTTP"


def _children(pid: int) -> list[int]:
    """The tritonserver children of ``pid`` (not the orphan watch beside each)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [int(p) for p in path.read_text().split()] if path.exists() else []
    return [p for p in pids if _command_name(p) == "tritonserver"]


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # it ended meanwhile
        return ""


class ServeProcess:
    """`fakescope serve` in a subprocess on free loopback ports."""

    def __init__(self, tmp_path: Path, *extra: str, repository: Path = REPOSITORY) -> None:
        self.http, self.grpc, self.metrics = free_ports(3)
        command = [sys.executable, "-m", "fakescope.cli", "serve", "--repository", str(repository)]
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
    assert live_group_members(triton_pid) == []  # no orphan python stubs


def test_serve_leaves_no_tritonserver_behind_when_it_is_killed(tmp_path):
    """What the OOM killer or a SIGKILL leaves: no server holding the ports and shared memory."""
    serve = ServeProcess(tmp_path)
    serve.wait_ready()
    triton_pid = serve.tritonserver_pid()
    serve.proc.kill()  # no handler runs: `serve` cannot stop its server itself
    serve.proc.wait(timeout=10)
    try:
        gone = wait_until(lambda: not live_group_members(triton_pid), timeout_s=60)
        assert gone, "tritonserver and its stubs outlived the process that started them"
        assert shm_regions(serve.http) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(triton_pid, signal.SIGKILL)
        for region in shm_regions(serve.http):
            region.unlink()


#: A python model that takes a minute to load: a server that starts for as long.
_SLOW_MODEL_CONFIG = """name: "slow_model"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
_SLOW_MODEL = """import time


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(60)

    def execute(self, requests):
        return []
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_its_server_and_exits_0_when_signalled_while_it_starts(tmp_path, signum):
    repository = tmp_path / "repository"
    shutil.copytree(REPOSITORY, repository)
    (repository / "slow_model" / "1").mkdir(parents=True)
    (repository / "slow_model" / "config.pbtxt").write_text(_SLOW_MODEL_CONFIG)
    (repository / "slow_model" / "1" / "model.py").write_text(_SLOW_MODEL)
    serve = ServeProcess(tmp_path, repository=repository)
    try:
        assert wait_until(lambda: _children(serve.proc.pid), timeout_s=60)
        triton_pid = serve.tritonserver_pid()
        serve.proc.send_signal(signum)
        assert serve.proc.wait(timeout=30) == 0  # not the minute the start would take
        said = wait_until(lambda: any("stopped while starting" in x for x in serve.lines), 10)
        assert said, serve.lines
        assert live_group_members(triton_pid) == []
        assert shm_regions(serve.http) == []
    finally:
        serve.proc.kill()
        serve.proc.wait()


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


def test_client_reports_unreachable_before_its_timeout_when_server_dies_mid_request(tmp_path):
    http, grpc, metrics = free_ports(3)
    server = EmbeddedTriton(
        REPOSITORY, ServerAddress("127.0.0.1", http, grpc, metrics), runtime_dir=tmp_path / "rt"
    )
    timeout_s = 30.0
    server.start()
    try:
        frames = np.zeros((64, 720, 1280, 3), np.uint8)  # slow enough to be in flight
        errors: list[BaseException] = []
        done = [threading.Event(), threading.Event()]

        def call(finished: threading.Event) -> None:
            try:
                with DetectorClient(server.address.grpc_url, "grpc", timeout_s=timeout_s) as client:
                    while True:
                        client.infer(frames)
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)
            finally:
                finished.set()

        for finished in done:
            threading.Thread(target=call, args=(finished,), daemon=True).start()
        # one request waits in face_detector's queue, so the other is being worked on
        wait_until_waiting(server, 1)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        for finished in done:
            assert finished.wait(timeout=timeout_s)
        # "within seconds": far sooner than the client's own timeout would have ended it
        assert time.monotonic() - killed < timeout_s / 2
        assert [type(e) for e in errors] == [ServerUnreachableError] * 2, errors
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
        inputs = [grpcclient.InferInput(contract.FRAMES, list(frames.shape), "UINT8")]
        inputs[0].set_data_from_numpy(frames)
        with pytest.raises(InferenceServerException, match="injected fault: scorer exploded"):
            client.infer(contract.ENSEMBLE_MODEL, inputs)
        assert client.is_model_ready(contract.ENSEMBLE_MODEL)


def _rejecting(repository: Path, model: str) -> None:
    """Make ``model`` refuse every request the way an overloaded Triton model does.

    Its queue times requests out after 1 us and rejects them (UNAVAILABLE), while the batcher
    holds each one for up to 1 s waiting for a fuller batch; no warm-up (it would be refused).
    """
    config = repository / model / "config.pbtxt"
    text = re.sub(r"(?s)\nmodel_warmup \[.*?\n\]\n", "\n", config.read_text())
    text, count = re.subn(
        r"dynamic_batching \{(?:[^{}]|\{[^{}]*\})*\}",
        "dynamic_batching {\n  max_queue_delay_microseconds: 1000000\n"
        "  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 1 }\n}",
        text,
    )
    assert count == 1, f"{config}: no dynamic_batching block to replace"
    config.write_text(text)


def _ensemble_inputs(frames: np.ndarray) -> list[grpcclient.InferInput]:
    inputs = [grpcclient.InferInput(contract.FRAMES, list(frames.shape), "UINT8")]
    inputs[0].set_data_from_numpy(frames)
    return inputs


def _two_frames(with_face: bool) -> np.ndarray:
    frames = face_frames if with_face else no_face_frames
    return np.stack(list(frames(seconds=0.2, fps=10)))


@pytest.fixture(scope="module")
def classifier_rejects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    """A real server whose face_classifier refuses every request (queue timeout, UNAVAILABLE)."""
    tmp = tmp_path_factory.mktemp("classifier-rejects")
    repo = tmp / "repo"
    shutil.copytree(REPOSITORY, repo)
    _rejecting(repo, contract.CLASSIFIER_MODEL)
    http, grpc, metrics = free_ports(3)
    with EmbeddedTriton(
        repo, ServerAddress("127.0.0.1", http, grpc, metrics), runtime_dir=tmp / "rt"
    ) as server:
        yield server


def test_classifier_answers_unavailable_when_its_queue_rejects(classifier_rejects):
    """The fault is what the next tests assume: Triton refuses the classifier's requests."""
    client = grpcclient.InferenceServerClient(classifier_rejects.address.grpc_url)
    crops = np.zeros((2, 160, 160, 3), np.uint8)
    inputs = [grpcclient.InferInput(contract.CLASSIFIER_INPUT, list(crops.shape), "UINT8")]
    inputs[0].set_data_from_numpy(crops)
    with pytest.raises(InferenceServerException) as refused:
        client.infer(contract.CLASSIFIER_MODEL, inputs)
    assert refused.value.status() == "StatusCode.UNAVAILABLE"


def test_ensemble_fails_only_that_video_with_classifier_message_when_classifier_rejects(
    classifier_rejects,
):
    client = grpcclient.InferenceServerClient(classifier_rejects.address.grpc_url)
    with pytest.raises(InferenceServerException) as failed:
        client.infer(contract.ENSEMBLE_MODEL, _ensemble_inputs(_two_frames(with_face=True)))
    assert f"{contract.CLASSIFIER_MODEL}: Request timeout expired" in failed.value.message()
    # A video without a face never reaches the classifier: it is still answered.
    result = client.infer(contract.ENSEMBLE_MODEL, _ensemble_inputs(_two_frames(with_face=False)))
    assert result.as_numpy(contract.STATUS)[0].decode() == contract.STATUS_NO_FACE


@pytest.mark.xfail(
    strict=True,
    reason="Triton 2.51's python backend hands every BLS error to the calling model as INTERNAL "
    "(triton-inference-server/server#7804); face_scorer passes on the code it is given, so "
    "UNAVAILABLE reaches the client once the python backend keeps it",
)
def test_ensemble_answers_unavailable_when_classifier_rejects(classifier_rejects):
    client = grpcclient.InferenceServerClient(classifier_rejects.address.grpc_url)
    with pytest.raises(InferenceServerException) as failed:
        client.infer(contract.ENSEMBLE_MODEL, _ensemble_inputs(_two_frames(with_face=True)))
    assert failed.value.status() == "StatusCode.UNAVAILABLE"


def test_ensemble_names_failed_net_without_traceback_when_onet_rejects(tmp_path):
    """face_detector answers a failed BLS call with an error response; it raises nothing.

    The nets placed as the NGC image places them: the ``mtcnn_*`` models, through BLS.
    """
    repo = tmp_path / "repo"
    shutil.copytree(REPOSITORY, repo)
    _rejecting(repo, contract.ONET_MODEL)
    http, grpc, metrics = free_ports(3)
    with EmbeddedTriton(
        repo,
        ServerAddress("127.0.0.1", http, grpc, metrics),
        runtime_dir=tmp_path / "rt",
        detector_nets=BLS,
    ) as server:
        client = grpcclient.InferenceServerClient(server.address.grpc_url)
        with pytest.raises(InferenceServerException) as failed:
            client.infer(contract.ENSEMBLE_MODEL, _ensemble_inputs(_two_frames(with_face=True)))
        message = failed.value.message()
        assert f"{contract.ONET_MODEL}: Request timeout expired" in message
        # Not the whole-batch failure of an exception raised out of execute(), with its trace:
        assert "Failed to process the request(s)" not in message
        assert "RuntimeError" not in message and "At:" not in message
        assert client.is_model_ready(contract.ENSEMBLE_MODEL)


def test_supervise_reports_exit_code_and_restarts_when_tritonserver_dies(tmp_path):
    """What the soak run records: the code of an unexpected exit, then a server serving again."""
    http, grpc, metrics = free_ports(3)
    server = EmbeddedTriton(
        REPOSITORY, ServerAddress("127.0.0.1", http, grpc, metrics), runtime_dir=tmp_path / "rt"
    )
    server.start()
    exits: list[int | None] = []
    done = threading.Event()
    supervisor = threading.Thread(
        target=server.supervise,
        args=(done.is_set,),
        kwargs={"restart": True, "max_restarts": 1, "on_exit": exits.append},
    )
    supervisor.start()
    try:
        assert server.process is not None
        first = server.process.pid
        os.kill(first, signal.SIGKILL)
        if not restarted(server, first, exits, timeout_s=120, poll_s=0.2):
            pytest.fail("tritonserver was not restarted")
        assert exits == [-signal.SIGKILL]
        frames = np.stack(list(face_frames(seconds=0.4, fps=10, size=(320, 180))))
        result = DetectorClient(f"127.0.0.1:{grpc}").infer(frames)
        assert len(result.frame_scores) == len(frames) == 4
    finally:
        done.set()
        supervisor.join(timeout=60)
        server.stop()


def _unstarted_server(tmp_path: Path, protocol: str) -> tuple[EmbeddedTriton, str]:
    """A server on free ports, not started yet, and the URL a ``protocol`` client calls."""
    http, grpc, metrics = free_ports(3)
    server = EmbeddedTriton(
        REPOSITORY, ServerAddress("127.0.0.1", http, grpc, metrics), runtime_dir=tmp_path / "rt"
    )
    return server, server.address.grpc_url if protocol == "grpc" else server.address.http_url


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_registers_its_frames_region_again_when_the_server_restarted(
    tmp_path, caplog, protocol
):
    server, url = _unstarted_server(tmp_path, protocol)
    frames = np.stack(list(face_frames(seconds=0.4)))
    caplog.set_level(logging.INFO, logger="fakescope.client.triton")
    server.start()
    try:
        with DetectorClient(url, protocol, timeout_s=60) as client:
            before = client.infer(frames)
            assert len(client_regions(server)) == 1
            # as a supervisor or Compose brings it back: a new process on the same ports, which
            # has never heard of the client's region
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGKILL)
            server.stop()
            server.start()
            after = client.infer(frames)
            regions = client_regions(server)
    finally:
        server.stop()
    np.testing.assert_allclose(after.face_scores, before.face_scores, atol=1e-6)
    assert len(regions) == 1  # the frames went through shared memory again
    assert "registering it again" in caplog.text
    assert "from now on" not in caplog.text


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_keeps_shared_memory_when_its_region_meets_a_server_that_is_down(
    tmp_path, caplog, protocol
):
    """A registration that finds no server (restarting) fails the call, not shared memory."""
    server, url = _unstarted_server(tmp_path, protocol)
    frames = np.stack(list(face_frames(seconds=0.4)))
    caplog.set_level(logging.INFO, logger="fakescope.client.triton")
    with DetectorClient(url, protocol, timeout_s=60, retries=0) as client:
        with pytest.raises(ServerUnreachableError):
            client.infer(frames)  # the client's first region, registered while no server runs
        server.start()
        try:
            # gRPC's channel reconnects after its own backoff, as a user's next try would
            assert wait_until(client.is_live, timeout_s=60), "the client never saw the server"
            result = client.infer(frames)
            regions = client_regions(server)
        finally:
            server.stop()
    assert len(result.frame_scores) == len(frames)
    assert len(regions) == 1  # the frames went through shared memory once the server was back
    assert "sending frames in the request" not in caplog.text


def _returns_within(call: Callable[[], object], timeout_s: float) -> list[BaseException]:
    """Run ``call`` in a thread; fail unless it returns within ``timeout_s``; its errors."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # collected for the caller's assertions
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"still waiting after {timeout_s:g} s"
    return errors


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_region_calls_end_within_its_time_limit_when_the_server_stops_answering(
    tmp_path, protocol
):
    """Registering a region and unregistering it on close wait ``timeout_s``, not for ever."""
    server, url = _unstarted_server(tmp_path, protocol)
    frames = np.stack(list(face_frames(seconds=0.4)))
    server.start()
    try:
        assert server.process is not None
        registered = DetectorClient(url, protocol, timeout_s=2, retries=0)
        registered.infer(frames)  # its region is registered
        fresh = DetectorClient(url, protocol, timeout_s=2, retries=0)
        assert fresh.is_live()  # connected: a stopped server still holds the connection open
        # stopped, not gone: the kernel keeps its sockets, and nothing answers on them
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            failed = _returns_within(lambda: fresh.infer(frames), timeout_s=60)
            closing = _returns_within(registered.close, timeout_s=60)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        fresh.close()
    finally:
        server.stop()
    assert [type(e) for e in failed] == [ServerUnreachableError], failed
    assert closing == []  # the region went, though the server never heard of it
