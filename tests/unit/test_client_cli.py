"""The ``analyze`` CLI and DetectorClient, against fake KServe v2 servers (no Triton needed).

The fakes are tiny in-process servers speaking the real wire protocols (HTTP/JSON and the
tritonclient gRPC service), so the real tritonclient code paths run: request encoding, response
decoding, error translation, model-config parsing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from fakescope import contract
from fakescope.allocator import huge_page_advice
from fakescope.client import cli
from fakescope.client.analyze import decode_video, verdict_for
from fakescope.client.triton import (
    DEFAULT_RETRIES,
    DetectorClient,
    ServerError,
    ServerUnreachableError,
)
from fakescope.client.verdict import UNTRAINED_WARNING
from tests.support.media import make_face_video, make_no_face_video

CLOSED_PORT_URL = "127.0.0.1:1"  # nothing listens on port 1: connection refused
BUSY_MESSAGE = "Exceeds maximum queue size"
#: KServe's system shared memory calls over HTTP: /v2/systemsharedmemory/region/NAME/ACTION
_REGION_PATH = r"/v2/systemsharedmemory/region/([^/]+)/(register|unregister)"
SERVER_ERROR_MESSAGE = "in ensemble 'deepfake_detector', unexpected shape for input 'FRAMES'"
#: Triton's answer when it cannot map a client's region (it runs on another host).
REGION_REFUSED = "Unable to open shared memory region: '{}'"


# --- fake servers ----------------------------------------------------------------------------


@dataclass
class FakeState:
    """What the fake server answers, and what it saw."""

    mode: str = "ok"  # ok | no_face | error
    trained: str = "false"
    delay_s: float = 0.0
    busy_answers: int = 0  # the next N inferences are refused as overloaded (queue full)
    config_missing: bool = False
    limitations: str | None = None  # the classifier config's "limitations" parameter
    in_use_answers: int = 0  # the next N unregisterings are refused: a request holds the region
    refuse_regions: bool = False  # registering a region fails, as on another host's server
    health_check: bool = True  # False: /v2/health/live is not served (a gateway's choice)
    infer_calls: list[dict[str, Any]] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)  # frames regions, in order
    unregister_calls: list[str] = field(default_factory=list)
    config_calls: int = 0
    delay_by_width: dict[int, float] = field(default_factory=dict)  # frame width -> delay_s
    most_in_flight: int = 0  # the most inference requests it held at once
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def unregister(self, name: str) -> str | None:
        """Record an unregistering of ``name``; return Triton's refusal while it is "in use"."""
        self.unregister_calls.append(name)
        if self.in_use_answers > 0:
            self.in_use_answers -= 1
            return f"Cannot unregister shared memory region '{name}', it is currently in use"
        self.registered.remove(name)
        return None

    def hold(self, width: int) -> None:
        """Hold a request for frames ``width`` pixels wide for its delay, counting it."""
        with self._lock:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            time.sleep(self.delay_by_width.get(width, self.delay_s))
        finally:
            with self._lock:
                self._in_flight -= 1

    def outputs(self, n: int) -> list[tuple[str, str, np.ndarray]]:
        if self.mode == "no_face":
            prob = np.array([np.nan], np.float32)
            frame_scores = np.full(n, np.nan, np.float32)
            boxes = np.zeros((0, 6), np.float32)
            status = "no_face"
        else:
            prob = np.array([0.83], np.float32)
            frame_scores = np.full(n, np.nan, np.float32)
            frame_scores[0] = 0.83
            # one face on frame 0, in the pixels of the frames that were sent
            boxes = np.array([[0, 10, 20, 60, 90, 0.99]], np.float32)
            status = "ok"
        return [
            (contract.FAKE_PROBABILITY, "FP32", prob),
            (contract.FRAME_SCORES, "FP32", frame_scores),
            (contract.FACE_BOXES, "FP32", boxes),
            (contract.FACE_SCORES, "FP32", np.array([0.83] * boxes.shape[0], np.float32)),
            (contract.STATUS, "BYTES", np.array([status.encode()], dtype=object)),
        ]


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FakeState  # set on a per-server subclass

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send_json(self, code: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v2/health/live" and self.state.health_check:
            self._send_json(200, {})
        elif self.path == f"/v2/models/{contract.CLASSIFIER_MODEL}/config":
            self.state.config_calls += 1
            if self.state.config_missing:
                self._send_json(400, {"error": "Request for unknown model"})
                return
            parameters = {"trained": {"string_value": self.state.trained}}
            if self.state.limitations is not None:
                parameters["limitations"] = {"string_value": self.state.limitations}
            self._send_json(200, {"name": contract.CLASSIFIER_MODEL, "parameters": parameters})
        else:
            self._send_json(404, {"error": f"unknown path {self.path}"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        region = re.fullmatch(
            r"/v2/systemsharedmemory/region/([^/]+)/(register|unregister)", self.path
        )
        if region is not None:
            name, action = region.groups()
            if action == "register":
                if self.state.refuse_regions:
                    self._send_json(400, {"error": REGION_REFUSED.format(name)})
                    return
                self.state.registered.append(name)
                self._send_json(200, {})
                return
            refused = self.state.unregister(name)
            if refused:
                self._send_json(400, {"error": refused})
            else:
                self._send_json(200, {})
            return
        header_len = int(self.headers.get("Inference-Header-Content-Length", len(body)))
        request = json.loads(body[:header_len])
        inputs = {i["name"]: i for i in request["inputs"]}
        frames = inputs[contract.FRAMES]
        self.state.infer_calls.append(
            {
                "path": self.path,
                "inputs": list(inputs),
                "frames_shape": frames["shape"],
                "frames_dtype": frames["datatype"],
                "timeout_us": request.get("parameters", {}).get("timeout"),
            }
        )
        self.state.hold(frames["shape"][2])
        if self.state.busy_answers > 0:
            self.state.busy_answers -= 1
            self._send_json(503, {"error": BUSY_MESSAGE})
            return
        if self.state.mode == "error":
            self._send_json(400, {"error": SERVER_ERROR_MESSAGE})
            return
        outputs = [
            {
                "name": name,
                "datatype": dtype,
                "shape": list(arr.shape),
                "data": [v.decode() if isinstance(v, bytes) else float(v) for v in arr.ravel()],
            }
            for name, dtype, arr in self.state.outputs(frames["shape"][0])
        ]
        self._send_json(200, {"model_name": contract.ENSEMBLE_MODEL, "outputs": outputs})


class _GrpcServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, state: FakeState):
        self.state = state

    def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC names)
        return service_pb2.ServerLiveResponse(live=True)

    def ModelConfig(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.state.config_calls += 1
        if self.state.config_missing:
            context.abort(grpc.StatusCode.NOT_FOUND, "Request for unknown model")
        config = model_config_pb2.ModelConfig(name=request.name)
        config.parameters["trained"].string_value = self.state.trained
        if self.state.limitations is not None:
            config.parameters["limitations"].string_value = self.state.limitations
        return service_pb2.ModelConfigResponse(config=config)

    def SystemSharedMemoryRegister(self, request: Any, context: Any) -> Any:  # noqa: N802
        if self.state.refuse_regions:
            context.abort(grpc.StatusCode.INTERNAL, REGION_REFUSED.format(request.name))
        self.state.registered.append(request.name)
        return service_pb2.SystemSharedMemoryRegisterResponse()

    def SystemSharedMemoryUnregister(self, request: Any, context: Any) -> Any:  # noqa: N802
        refused = self.state.unregister(request.name)
        if refused:
            context.abort(grpc.StatusCode.INTERNAL, refused)
        return service_pb2.SystemSharedMemoryUnregisterResponse()

    def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        names = [i.name for i in request.inputs]
        frames = request.inputs[names.index(contract.FRAMES)]
        self.state.infer_calls.append(
            {
                "path": request.model_name,
                "inputs": names,
                "frames_shape": list(frames.shape),
                "frames_dtype": frames.datatype,
                "timeout_us": (
                    request.parameters["timeout"].int64_param
                    if "timeout" in request.parameters
                    else None
                ),
            }
        )
        self.state.hold(int(frames.shape[2]))
        if self.state.busy_answers > 0:
            self.state.busy_answers -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, BUSY_MESSAGE)
        if self.state.mode == "error":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, SERVER_ERROR_MESSAGE)
        response = service_pb2.ModelInferResponse(model_name=request.model_name)
        for name, dtype, arr in self.state.outputs(int(frames.shape[0])):
            response.outputs.add(name=name, datatype=dtype, shape=list(arr.shape))
            if dtype == "BYTES":
                raw = b"".join(struct.pack("<I", len(v)) + v for v in arr.ravel())
            else:
                raw = arr.tobytes()
            response.raw_output_contents.append(raw)
        return response


@dataclass
class FakeServer:
    protocol: str
    url: str
    state: FakeState


@pytest.fixture
def http_server() -> Iterator[FakeServer]:
    state = FakeState()
    handler = type("Handler", (_HttpHandler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield FakeServer("http", f"127.0.0.1:{server.server_address[1]}", state)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def grpc_server() -> Iterator[FakeServer]:
    state = FakeState()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_GrpcServicer(state), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield FakeServer("grpc", f"127.0.0.1:{port}", state)
    finally:
        server.stop(grace=None)


@pytest.fixture(params=["http", "grpc"])
def server(request: pytest.FixtureRequest) -> FakeServer:
    return request.getfixturevalue(f"{request.param}_server")


# --- media -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli_media")


@pytest.fixture(scope="module")
def face_video(media: Path) -> Path:
    return make_face_video(media / "face.mp4", size=(320, 180), seconds=1.0)


@pytest.fixture(scope="module")
def long_face_video(media: Path) -> Path:
    """10 s: a 5 s budget, room for the client's retries (a 1 s video's is spent at once)."""
    return make_face_video(media / "long_face.mp4", size=(160, 90), seconds=10.0, fps=2)


@pytest.fixture(scope="module")
def coffee_video(media: Path) -> Path:
    return make_no_face_video(media / "coffee.mp4", size=(320, 180), seconds=1.0)


@pytest.fixture(scope="module")
def text_video(media: Path) -> Path:
    path = media / "notes.mp4"
    path.write_text("not a video\n" * 20)
    return path


# --- helpers -----------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse like the owner's top-level CLI would: a subparsers group with ``analyze``."""
    parser = argparse.ArgumentParser(prog="fakescope")
    cli.add_analyze_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["analyze", *argv])


def run(argv: list[str]) -> int:
    # The fake servers speak only the inference API: no shared-memory registration.
    args = parse([*argv, "--shared-memory", "off"])
    assert args.func is cli.run_analyze
    return args.func(args)


def strict_json(line: str) -> dict[str, Any]:
    def refuse(const: str) -> None:
        raise ValueError(f"non-standard JSON constant {const}")

    return json.loads(line, parse_constant=refuse)


# --- usage errors (2) --------------------------------------------------------------------------


@pytest.mark.parametrize("frames", ["0", "-3", str(contract.MAX_FRAMES_PER_REQUEST + 1), "ten"])
def test_analyze_parser_exits_2_when_frames_is_out_of_range(
    frames: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["video.mp4", "--frames", frames])
    assert info.value.code == cli.EXIT_USAGE == 2
    # the usage line names every option: the error line must name this one
    assert "error: argument --frames:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["v.mp4", "--protocol", "smtp"], "argument --protocol: invalid choice: 'smtp'"),
        (["v.mp4", "--threshold", "2"], "argument --threshold: must be in [0, 1], got 2"),
        ([], "the following arguments are required: VIDEO"),
        (["v.mp4", "--max-side", "-1"], "argument --max-side: must be 0 (no downscaling)"),
        (["v.mp4", "--jobs", "0"], "argument --jobs: must be >= 1, got 0"),
        (["v.mp4", "--jobs", "two"], "argument --jobs: expected an integer, got 'two'"),
    ],
)
def test_analyze_parser_exits_2_when_arguments_are_invalid(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == cli.EXIT_USAGE
    assert f"error: {error}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("protocol", "url"),
    [
        ("http", "host:port"),
        ("grpc", "host:port"),
        ("grpc", "localhost:99999"),
        ("grpc", "localhost:8001/base"),
        ("grpc", ":8001"),
    ],
)
def test_run_analyze_exits_2_when_url_is_malformed(
    face_video: Path, capsys: pytest.CaptureFixture[str], protocol: str, url: str
) -> None:
    assert run([str(face_video), "--protocol", protocol, "--url", url]) == cli.EXIT_USAGE
    name = {"http": "HTTP", "grpc": "gRPC"}[protocol]
    assert f"invalid {name} url {url!r}" in capsys.readouterr().err


def test_detector_client_takes_grpc_target_forms_when_named_by_their_scheme() -> None:
    for url in ("unix:/tmp/triton.sock", "dns:///localhost:8001", "[::1]:8001"):
        DetectorClient(url, "grpc").close()


def test_analyze_parser_accepts_the_frame_limit_when_at_maximum() -> None:
    args = parse(["v.mp4", "--frames", str(contract.MAX_FRAMES_PER_REQUEST), "--max-side", "0"])
    assert args.frames == contract.MAX_FRAMES_PER_REQUEST
    assert args.max_side is None


# --- unreadable input (3) ------------------------------------------------------------------------


def test_run_analyze_exits_3_when_inputs_are_unreadable(
    tmp_path: Path, text_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.mp4"
    code = run([str(missing), str(text_video), "--url", CLOSED_PORT_URL])
    captured = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT == 3
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines == [
        f"fakescope: error: {missing}: no such file",
        f"fakescope: error: {text_video}: not a readable video (unknown format, unsupported "
        "codec, or truncated file)",
    ]


def test_main_prints_every_verdict_when_a_file_name_is_not_utf8(
    server: FakeServer, face_video: Path, tmp_path: Path
) -> None:
    server.state.trained = "true"  # one verdict line, without the untrained warning
    odd = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"bad\xff.mp4"))  # a POSIX name
    shutil.copy(face_video, odd)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "fakescope.client.cli", odd, str(face_video)),
            *("--url", server.url, "--protocol", server.protocol),
        ],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},  # as in a UTF-8 locale
        timeout=60,
        check=False,
    )
    assert proc.returncode == cli.EXIT_OK, proc.stderr
    lines = proc.stdout.decode().splitlines()  # valid UTF-8: the odd byte is escaped
    assert len(lines) == 4  # each video's verdict and content-credentials lines
    assert lines[0].startswith(f"{tmp_path}/bad\\udcff.mp4")
    assert lines[2].startswith(str(face_video))


def test_main_prints_one_line_per_error_when_run_as_a_module(
    tmp_path: Path, text_video: Path
) -> None:
    # In a fresh process FFmpeg's own complaints (here "Invalid NAL unit size" about a cut
    # H.264 stream) are silenced: stderr holds only our one-line errors.
    full = make_face_video(tmp_path / "full.mp4", size=(320, 180), codec="avc1", faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.find(b"mdat") + 200])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fakescope.client.cli",
            str(text_video),
            str(tmp_path / "x.mp4"),
            str(cut),
            "--url",
            CLOSED_PORT_URL,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == cli.EXIT_BAD_INPUT
    assert proc.stdout == ""
    assert [line.split(": ")[:2] for line in proc.stderr.splitlines()] == [
        ["fakescope", "error"],
        ["fakescope", "error"],
        ["fakescope", "error"],
    ]


def test_main_exits_2_when_frames_is_zero_as_a_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fakescope.client.cli", "v.mp4", "--frames", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == cli.EXIT_USAGE
    assert "error: argument --frames: must be 1.." in proc.stderr


# --- server unreachable (4) ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_run_analyze_exits_4_when_server_port_is_closed(
    protocol: str, face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run([str(face_video), "--url", CLOSED_PORT_URL, "--protocol", protocol])
    err = capsys.readouterr().err
    assert code == cli.EXIT_UNREACHABLE == 4
    assert err.startswith(
        f"fakescope: error: {face_video}: cannot reach the server at {CLOSED_PORT_URL} ({protocol})"
    )
    assert len(err.splitlines()) == 1


@pytest.mark.usefixtures("huge_pages_advised")
def test_run_analyze_faults_frames_in_small_pages_when_it_starts(
    face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A new CLI process decodes its first frames into memory it never touched: with NumPy's
    # huge-page advice, a fault there can wait for the kernel to compact memory
    # (fakescope/allocator.py).
    assert run([str(face_video), "--url", CLOSED_PORT_URL]) == cli.EXIT_UNREACHABLE
    assert not huge_page_advice()
    capsys.readouterr()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_run_analyze_keeps_going_and_exits_with_worst_code_when_failures_differ(
    jobs: str, tmp_path: Path, face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.mp4"
    code = run([str(missing), str(face_video), "--url", CLOSED_PORT_URL, "--jobs", jobs])
    err = capsys.readouterr().err.splitlines()
    assert code == cli.EXIT_UNREACHABLE  # 4 outranks 3
    assert len(err) == 2
    assert str(missing) in err[0] and str(face_video) in err[1]


def test_run_analyze_exits_4_when_server_answers_too_late(
    server: FakeServer, face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.delay_s = 1.0
    code = run(
        [str(face_video), "--url", server.url, "--protocol", server.protocol, "--timeout", "0.3"]
    )
    assert code == cli.EXIT_UNREACHABLE
    assert "timed out after 0.3 s" in capsys.readouterr().err


# --- several videos at once (--jobs) -------------------------------------------------------------


def test_run_analyze_prints_in_the_order_given_when_a_later_video_is_answered_first(
    server: FakeServer, face_video: Path, long_face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both jobs' first requests are held at once, whichever is sent first: face_video's frames
    # (320 px wide) for 2 s, long_face_video's (160 px) for 0.8 s, so both of the latter are
    # answered before the former.
    server.state.delay_by_width = {320: 2.0, 160: 0.8}
    videos = [face_video, long_face_video, long_face_video]
    argv = [*map(str, videos), "--url", server.url, "--protocol", server.protocol, "--json"]
    code = run([*argv, "--jobs", "2"])
    assert code == cli.EXIT_OK
    assert server.state.most_in_flight == 2
    verdicts = [strict_json(line) for line in capsys.readouterr().out.splitlines()]
    assert [v["video"] for v in verdicts] == [str(v) for v in videos]
    assert [v["source_size"] for v in verdicts] == [[320, 180], [160, 90], [160, 90]]


def test_run_analyze_sends_one_video_at_a_time_when_jobs_is_1(
    server: FakeServer, face_video: Path, long_face_video: Path
) -> None:
    server.state.delay_s = 0.3
    videos = [face_video, long_face_video, face_video]
    code = run(
        [*map(str, videos), "--url", server.url, "--protocol", server.protocol, "--jobs", "1"]
    )
    assert code == cli.EXIT_OK
    assert len(server.state.infer_calls) == 3
    assert server.state.most_in_flight == 1


def test_analyze_parser_analyses_one_video_at_a_time_when_jobs_is_not_given() -> None:
    # each video keeps the server to itself for its whole budget unless the user asks otherwise
    assert parse(["v.mp4"]).jobs == 1


# --- server error (5) ----------------------------------------------------------------------------


def test_run_analyze_exits_5_and_keeps_the_message_when_server_rejects_request(
    server: FakeServer, face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.mode = "error"
    code = run([str(face_video), "--url", server.url, "--protocol", server.protocol])
    err = capsys.readouterr().err
    assert code == cli.EXIT_SERVER_ERROR == 5
    assert SERVER_ERROR_MESSAGE in err
    assert len(err.splitlines()) == 1


def test_run_analyze_exits_5_when_an_http_server_answers_an_error_and_serves_no_health_check(
    http_server: FakeServer, face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    http_server.state.mode = "error"
    http_server.state.health_check = False  # an answer with a status: the server is there
    code = run([str(face_video), "--url", http_server.url, "--protocol", "http"])
    assert code == cli.EXIT_SERVER_ERROR
    assert SERVER_ERROR_MESSAGE in capsys.readouterr().err


def test_run_analyze_retries_and_succeeds_when_server_is_briefly_overloaded(
    server: FakeServer, long_face_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.state.busy_answers = 2
    with caplog.at_level("WARNING"):
        code = run([str(long_face_video), "--url", server.url, "--protocol", server.protocol])
    assert code == cli.EXIT_OK
    assert len(server.state.infer_calls) == 3
    assert sum("server busy" in r.getMessage() for r in caplog.records) == 2


def test_run_analyze_exits_5_after_bounded_retries_when_server_stays_overloaded(
    server: FakeServer, long_face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.busy_answers = 100
    code = run([str(long_face_video), "--url", server.url, "--protocol", server.protocol])
    err = capsys.readouterr().err
    assert code == cli.EXIT_SERVER_ERROR
    assert len(server.state.infer_calls) == DEFAULT_RETRIES + 1
    assert BUSY_MESSAGE in err


def test_detector_client_raises_without_retrying_when_the_videos_budget_is_spent(
    server: FakeServer,
) -> None:
    # a 1 s video whose decode took 0.6 s of its 0.5 s budget: a retry after a backoff could
    # only answer it late
    server.state.busy_answers = 100
    client = DetectorClient(server.url, server.protocol)  # type: ignore[arg-type]
    with client, pytest.raises(ServerError, match=BUSY_MESSAGE):
        client.infer(np.zeros((2, 8, 8, 3), np.uint8), duration_seconds=1.0, spent_seconds=0.6)
    assert len(server.state.infer_calls) == 1


def test_run_analyze_sends_the_queue_wait_its_budget_leaves_when_the_duration_is_known(
    server: FakeServer, long_face_video: Path
) -> None:
    began = time.monotonic()
    assert run([str(long_face_video), "--url", server.url, "--protocol", server.protocol]) == 0
    took_us = (time.monotonic() - began) * 1e6
    (call,) = server.state.infer_calls
    # 10 s video: its 5 s budget less the analysis' reserve and its decode, which took part
    # of the time the whole run took
    most = (5.0 - contract.ANALYSIS_RESERVE_S) * 1e6
    assert most - took_us <= call["timeout_us"] < most


def test_detector_client_sends_the_shortest_wait_when_the_videos_budget_is_spent(
    server: FakeServer,
) -> None:
    with DetectorClient(server.url, server.protocol) as client:  # type: ignore[arg-type]
        client.infer(np.zeros((2, 8, 8, 3), np.uint8), duration_seconds=6.0, spent_seconds=3.5)
    assert server.state.infer_calls[0]["timeout_us"] == round(contract.MIN_QUEUE_WAIT_S * 1e6)


# --- success (0) ---------------------------------------------------------------------------------


def test_run_analyze_prints_a_warning_with_every_verdict_when_model_is_untrained(
    server: FakeServer, face_video: Path, coffee_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.trained = "false"
    code = run(
        [
            str(face_video),
            str(coffee_video),
            "--url",
            server.url,
            "--protocol",
            server.protocol,
            "--frames",
            "4",
            "--jobs",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK
    lines = captured.out.splitlines()
    assert len(lines) == 6  # per video: verdict, warning, content credentials
    assert lines[0].startswith(f"{face_video}: FAKE  fake_probability=0.830  frames=4  faces=1")
    assert "ratio=" in lines[0] and "time=" in lines[0]
    assert lines[1].strip() == UNTRAINED_WARNING
    assert lines[2] == "  content credentials: no Content Credentials"
    assert lines[3].startswith(f"{coffee_video}: FAKE")
    assert lines[4].strip() == UNTRAINED_WARNING
    assert captured.err == ""  # stderr is not a TTY here: no progress bar
    assert server.state.config_calls == 1  # asked once per client, not per video


def test_run_analyze_prints_no_warning_when_model_is_trained(
    server: FakeServer, face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.trained = "true"
    assert run([str(face_video), "--url", server.url, "--protocol", server.protocol]) == 0
    out = capsys.readouterr().out
    assert "WARNING" not in out
    assert len(out.splitlines()) == 2  # the verdict and its content-credentials line


def test_run_analyze_states_the_model_limitations_once_after_the_verdicts_when_config_has_them(
    server: FakeServer, face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.trained = "true"
    server.state.limitations = "Trained only on synthetic faces;\n  not evidence on real video."
    argv = [str(face_video), str(face_video), "--url", server.url, "--protocol", server.protocol]
    assert run(argv) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5  # two verdicts with their content-credentials lines, then the note
    assert lines[4] == (
        cli.LIMITATIONS_PREFIX + "Trained only on synthetic faces; not evidence on real video."
    )
    assert run([*argv, "--json"]) == cli.EXIT_OK
    verdicts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [v["model_limitations"] for v in verdicts] == [
        "Trained only on synthetic faces; not evidence on real video."
    ] * 2


def test_run_analyze_states_the_limitations_the_answering_client_read_when_another_video_failed(
    server: FakeServer, face_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.limitations = "Trained on DFDC only."
    missing = str(tmp_path / "missing.mp4")  # its client never asks the server anything
    argv = [str(face_video), missing, "--jobs", "2", "--url", server.url]
    assert run([*argv, "--protocol", server.protocol]) == cli.EXIT_BAD_INPUT
    assert (
        capsys.readouterr().out.splitlines()[-1] == cli.LIMITATIONS_PREFIX + "Trained on DFDC only."
    )
    # No request after the verdicts, which a server gone by then would turn into a traceback.
    assert server.state.config_calls == 1


def test_run_analyze_prints_one_json_object_per_video_when_json_is_set(
    server: FakeServer, face_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        [
            str(face_video),
            str(face_video),
            "--url",
            server.url,
            "--protocol",
            server.protocol,
            "--frames",
            "5",
            "--max-side",
            "160",
            "--json",
        ]
    )
    assert code == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    verdict = strict_json(lines[0])
    assert verdict["video"] == str(face_video)
    assert (verdict["label"], verdict["status"], verdict["frames"], verdict["faces"]) == (
        "FAKE",
        "ok",
        5,
        1,
    )
    assert verdict["fake_probability"] == pytest.approx(0.83)
    assert verdict["model_trained"] is False and verdict["warning"] == UNTRAINED_WARNING
    # sent at 160x90, source 320x180: boxes come back in source pixels
    assert verdict["frame_size"] == [160, 90] and verdict["source_size"] == [320, 180]
    assert verdict["face_boxes"][0]["box"] == pytest.approx([20, 40, 120, 180])
    # the face is stamped with its frame's time by the client, which keeps the timestamps
    assert verdict["face_boxes"][0]["timestamp"] == pytest.approx(0.1, abs=1e-3)
    assert verdict["frame_scores"][1] is None
    assert verdict["ratio"] == pytest.approx(
        verdict["processing_seconds"] / verdict["duration_seconds"], rel=1e-2
    )
    # what the server received: the frames, nothing else
    call = server.state.infer_calls[0]
    assert call["inputs"] == [contract.FRAMES]
    assert call["frames_shape"] == [5, 90, 160, 3] and call["frames_dtype"] == "UINT8"


def test_run_analyze_exits_0_with_null_probability_when_no_face_is_found(
    server: FakeServer, coffee_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.state.mode = "no_face"
    code = run([str(coffee_video), "--url", server.url, "--protocol", server.protocol, "--json"])
    assert code == cli.EXIT_OK
    verdict = strict_json(capsys.readouterr().out)
    assert verdict["label"] == "NO_FACE"
    assert verdict["fake_probability"] is None
    assert verdict["frame_scores"] == [None] * verdict["frames"]


# --- DetectorClient directly -------------------------------------------------------------------


def test_detector_client_reads_trained_flag_when_server_sets_it(server: FakeServer) -> None:
    server.state.trained = "true"
    with DetectorClient(server.url, server.protocol) as client:  # type: ignore[arg-type]
        assert client.model_facts().trained is True
        assert client.model_facts().trained is True
    assert server.state.config_calls == 1


def test_detector_client_raises_server_error_with_message_when_request_is_rejected(
    server: FakeServer,
) -> None:
    server.state.mode = "error"
    client = DetectorClient(server.url, server.protocol)  # type: ignore[arg-type]
    with client, pytest.raises(ServerError, match="unexpected shape") as info:
        client.infer(np.zeros((2, 8, 8, 3), np.uint8))
    assert info.value.status


def test_detector_client_counts_as_untrained_when_classifier_config_is_missing(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.state.config_missing = True
    with DetectorClient(server.url, server.protocol) as client:  # type: ignore[arg-type]
        assert client.model_facts().trained is False
    assert "treating the classifier as untrained" in caplog.text


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_detector_client_raises_unreachable_when_port_is_closed(protocol: str) -> None:
    client = DetectorClient(CLOSED_PORT_URL, protocol)  # type: ignore[arg-type]
    with client, pytest.raises(ServerUnreachableError, match="cannot reach"):
        client.infer(np.zeros((1, 8, 8, 3), np.uint8))


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), "uint8"),
        (np.zeros((0, 8, 8, 3), np.uint8), "frames per request"),
        (np.zeros((contract.MAX_FRAMES_PER_REQUEST + 1, 2, 2, 3), np.uint8), "frames per request"),
    ],
)
def test_detector_client_rejects_inputs_before_sending_when_they_break_the_contract(
    frames: np.ndarray, message: str
) -> None:
    client = DetectorClient(CLOSED_PORT_URL, "grpc")
    with client, pytest.raises(ValueError, match=message):
        client.infer(frames)


@pytest.mark.parametrize("duration", [0.0, -6.0, float("nan")])
def test_detector_client_rejects_duration_before_sending_when_not_positive(
    duration: float,
) -> None:
    client = DetectorClient(CLOSED_PORT_URL, "grpc")
    with client, pytest.raises(ValueError, match="duration_seconds must be > 0"):
        client.infer(np.zeros((1, 8, 8, 3), np.uint8), duration_seconds=duration)


@pytest.mark.parametrize("spent", [-0.1, float("nan")])
def test_detector_client_rejects_spent_seconds_before_sending_when_negative(spent: float) -> None:
    client = DetectorClient(CLOSED_PORT_URL, "grpc")
    with client, pytest.raises(ValueError, match="spent_seconds must be >= 0"):
        client.infer(np.zeros((1, 8, 8, 3), np.uint8), duration_seconds=6.0, spent_seconds=spent)


def test_detector_client_sends_no_queue_wait_when_the_duration_is_unknown(
    server: FakeServer,
) -> None:
    with DetectorClient(server.url, server.protocol) as client:  # type: ignore[arg-type]
        client.infer(np.zeros((2, 8, 8, 3), np.uint8))
    assert server.state.infer_calls[0]["timeout_us"] is None  # the queue's own timeout


def test_detector_client_uses_default_urls_when_none_is_given() -> None:
    assert DetectorClient(protocol="grpc").url == "127.0.0.1:8001"
    assert DetectorClient(protocol="http").url == "127.0.0.1:8000"
    assert DetectorClient("http://host:9000", "http").url == "host:9000"


def test_detector_client_sends_each_video_once_when_the_server_refuses_its_shared_memory(
    server: FakeServer, face_video: Path
) -> None:
    server.state.refuse_regions = True
    with DetectorClient(server.url, server.protocol, shared_memory=True) as client:  # type: ignore[arg-type]
        for sent in (1, 2):
            decoded = decode_video(str(face_video), 4, allocate=client.frames_buffer)
            assert verdict_for(face_video.name, decoded, client).label == "FAKE"
            assert len(server.state.infer_calls) == sent
    assert server.state.registered == []


def test_detector_client_unregisters_its_region_when_the_server_still_holds_it_a_moment(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Triton releases a request's regions just after its response: refused twice, then not
    server.state.in_use_answers = 2
    with DetectorClient(server.url, server.protocol, shared_memory=True) as client:  # type: ignore[arg-type]
        client.infer(np.zeros((2, 16, 16, 3), np.uint8))
        (region,) = server.state.registered
    assert server.state.unregister_calls == [region] * 3
    assert server.state.registered == []
    assert "still holds" not in caplog.text


def test_detector_client_names_the_region_when_the_server_holds_it_past_the_wait(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.state.in_use_answers = 10**9
    with DetectorClient(server.url, server.protocol, shared_memory=True) as client:  # type: ignore[arg-type]
        client.infer(np.zeros((2, 16, 16, 3), np.uint8))
        (region,) = server.state.registered
    assert len(server.state.unregister_calls) > 1  # offered again, then given up
    assert f"still holds frames region {region}" in caplog.text
