"""What the embedded tritonserver checks and lays out before it runs (no server starts here)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fakescope.serving.embedded import (
    EmbeddedTriton,
    ServerAddress,
    ServerStartError,
    port_problem,
    prepare_runtime,
)
from tests.support.servers import REPOSITORY, free_ports


def test_port_problem_says_in_use_when_something_listens_there():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        taken = listening.getsockname()[1]
        assert port_problem("127.0.0.1", taken) == f"port {taken} on 127.0.0.1 is already in use"


def test_port_problem_gives_the_real_cause_when_the_address_is_not_this_machines():
    (port,) = free_ports(1)
    # TEST-NET-1 (RFC 5737): no interface of any machine has it
    problem = port_problem("192.0.2.1", port)
    assert problem == f"cannot listen on 192.0.2.1:{port}: Cannot assign requested address"


def test_port_problem_is_none_when_the_port_is_free():
    (port,) = free_ports(1)
    assert port_problem("127.0.0.1", port) is None


def test_prepare_runtime_leaves_another_servers_backends_alone_when_one_folder_is_shared(
    tmp_path: Path,
):
    _, first = prepare_runtime(tmp_path, 8000)
    stub = first / "python" / "triton_python_backend_stub"
    before = stub.stat().st_ino
    _, second = prepare_runtime(tmp_path, 8001)  # a second server from the same directory
    assert second != first
    assert stub.stat().st_ino == before  # not deleted and copied again under the first


def test_start_refuses_in_one_line_when_the_runtime_folder_cannot_be_made(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    http, grpc, metrics = free_ports(3)
    server = EmbeddedTriton(
        REPOSITORY,
        ServerAddress("127.0.0.1", http, grpc, metrics),
        runtime_dir=blocker / "runtime",
    )
    with pytest.raises(ServerStartError, match="cannot lay out the server's runtime folder"):
        server.start()
    assert server.process is None
