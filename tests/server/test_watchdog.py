"""A real tritonserver whose model hangs: the watchdog kills it, and it is restarted or reported.

The repository is built per test: one python model that never returns from ``execute`` for a
request whose first byte is 1 (as the soak's hung server never finished its last request) and
echoes any other. On the hanging request it first creates a marker file, so the test knows the
model is busy before it queues a request behind it (a request that merely waits behind an echo for
a moment is no stall: the CI once saw such a wait, and then nothing ever stalled). It is named
``face_detector`` and states ``max_request_pixels`` because ``EmbeddedTriton`` sizes the python
stubs' shared memory from that model's config; the repository check accepts it as it is (a config,
a version folder, ``model.py``).
"""

from __future__ import annotations

import contextlib
import os
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

from fakescope.serving.embedded import EmbeddedTriton, ServerAddress, ServerGone, shm_regions
from fakescope.serving.watchdog import Stall, fetch_snapshot
from tests.support.servers import free_ports, live_group_members, restarted

MODEL = "face_detector"
HANG, ECHO = 1, 0
STALL_TIMEOUT_S = 2.0

CONFIG = f"""
name: "{MODEL}"
backend: "python"
max_batch_size: 0
input [ {{ name: "DATA" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
output [ {{ name: "ECHO" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
# a queue without a timeout: a request sent after the hung one waits until the server dies
dynamic_batching {{ }}
parameters [ {{ key: "max_request_pixels" value: {{ string_value: "1024" }} }} ]
"""

MODEL_PY = """
import pathlib
import time

import triton_python_backend_utils as pb_utils

HANGING_MARKER = pathlib.Path({marker!r})


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "DATA").as_numpy()
            if data[0] == {hang}:
                HANGING_MARKER.touch()
                time.sleep(3600)  # far longer than any test: only a kill ends it
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("ECHO", data)]))
        return responses
"""
#: How long the fixture waits for the model to hang and for a request to queue behind it.
SETUP_TIMEOUT_S = 30.0


def _hanging_repository(root: Path) -> Path:
    """Write the repository under ``root``; its model marks ``_marker(root)`` when it hangs."""
    repository = root / "repo"
    (repository / MODEL / "1").mkdir(parents=True)
    (repository / MODEL / "config.pbtxt").write_text(CONFIG)
    model_py = MODEL_PY.format(marker=str(_marker(root)), hang=HANG)
    (repository / MODEL / "1" / "model.py").write_text(model_py)
    return repository


def _marker(root: Path) -> Path:
    return root / "model-is-hanging"


def _send(grpc_url: str, first_byte: int) -> np.ndarray:
    data = np.array([first_byte, 7], np.uint8)
    inputs = [grpcclient.InferInput("DATA", list(data.shape), "UINT8")]
    inputs[0].set_data_from_numpy(data)
    result = grpcclient.InferenceServerClient(grpc_url).infer(MODEL, inputs, client_timeout=60)
    return result.as_numpy("ECHO")


def _send_in_background(grpc_url: str, first_byte: int) -> threading.Event:
    """Send one request from a thread; the event is set if it was answered."""
    answered = threading.Event()

    def call() -> None:
        # the server is killed under this request: it ends with an error, which is expected
        with contextlib.suppress(InferenceServerException):
            _send(grpc_url, first_byte)
            answered.set()

    threading.Thread(target=call, daemon=True).start()
    return answered


def _hang_with_one_waiting(root: Path, grpc_url: str, metrics_url: str) -> None:
    """Hang the model on one request, then queue one request behind it (``root``: see above)."""
    _send_in_background(grpc_url, HANG)
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while not _marker(root).exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{MODEL} never started the hanging request")
        time.sleep(0.05)
    # the one instance is busy for good: this request waits until the server dies
    answered = _send_in_background(grpc_url, ECHO)
    while time.monotonic() < deadline:
        assert not answered.is_set(), f"{MODEL} answered while it should hang"
        if fetch_snapshot(metrics_url)[MODEL].pending >= 1:
            return
        time.sleep(0.1)
    pytest.fail(f"no request ever waited behind the hung one in {MODEL}")


@pytest.fixture
def hung_server(tmp_path: Path):
    """A started server with one request hung in the model and one waiting behind it."""
    http, grpc, metrics = free_ports(3)
    server = EmbeddedTriton(
        _hanging_repository(tmp_path),
        ServerAddress("127.0.0.1", http, grpc, metrics),
        runtime_dir=tmp_path / "rt",
    )
    server.start()
    try:
        _hang_with_one_waiting(tmp_path, server.address.grpc_url, server.metrics_url)
        yield server
    finally:
        if server.process is not None:  # a test failed: SIGTERM would wait for the hung request
            os.killpg(server.process.pid, signal.SIGKILL)
        server.stop()
    assert shm_regions(http) == []


def test_supervise_kills_and_restarts_server_when_a_model_stalls(hung_server):
    server = hung_server
    assert server.process is not None and server.is_ready()  # health says all is well
    first = server.process.pid
    stalls: list[Stall] = []
    exits: list[int | None] = []
    done = threading.Event()
    supervisor = threading.Thread(
        target=server.supervise,
        args=(done.is_set,),
        kwargs={
            "restart": True,
            "max_restarts": 1,
            "stall_timeout_s": STALL_TIMEOUT_S,
            "watchdog_poll_s": 0.25,
            "on_stall": stalls.append,
            "on_exit": exits.append,
        },
    )
    supervisor.start()
    try:
        if not restarted(server, first, stalls, timeout_s=20):
            pytest.fail("the stalled tritonserver was not killed and restarted")
        assert exits == []  # a stall is reported as a stall, not as an exit
        assert stalls[0].pending == {MODEL: 1}
        assert stalls[0].waited_s > STALL_TIMEOUT_S
        assert live_group_members(first) == []  # the hung python stub died with its server
        np.testing.assert_array_equal(_send(server.address.grpc_url, ECHO), [ECHO, 7])
    finally:
        done.set()
        supervisor.join(timeout=60)
    assert not supervisor.is_alive()


def test_supervise_returns_stall_without_restart_when_a_model_stalls(hung_server):
    server = hung_server
    assert server.process is not None
    first = server.process.pid
    gone = server.supervise(
        lambda: False, restart=False, stall_timeout_s=STALL_TIMEOUT_S, watchdog_poll_s=0.25
    )
    assert isinstance(gone, ServerGone)
    assert gone.stall is not None and gone.stall.pending == {MODEL: 1}
    assert gone.code == -signal.SIGKILL
    assert server.process is None
    assert live_group_members(first) == []


def test_serve_exits_6_naming_stalled_model_when_a_model_stalls(tmp_path):
    http, grpc, metrics = free_ports(3)
    command = [sys.executable, "-m", "fakescope.cli", "serve"]
    command += ["--repository", str(_hanging_repository(tmp_path))]
    command += ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    command += ["--stall-timeout", "1"]
    serve = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert serve.stdout is not None
        assert "ready" in serve.stdout.readline()
        _hang_with_one_waiting(tmp_path, f"127.0.0.1:{grpc}", f"http://127.0.0.1:{metrics}/metrics")
        # the watchdog reads every 5 s: the stall is past the 1 s timeout at the second read
        code = serve.wait(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
    stderr = serve.stderr.read() if serve.stderr else ""
    assert code == 6, stderr
    assert "tritonserver stalled" in stderr and f"{MODEL} (1 pending)" in stderr
    assert "killed" in stderr
    assert shm_regions(http) == []


def test_serve_exits_2_when_stall_timeout_is_negative():
    result = subprocess.run(
        [sys.executable, "-m", "fakescope.cli", "serve", "--stall-timeout", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--stall-timeout" in result.stderr
