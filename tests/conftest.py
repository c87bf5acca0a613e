"""Shared fixtures: one real tritonserver per test session, real ONNX models."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakescope.serving.embedded import EmbeddedTriton, ServerAddress

REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"


def free_ports(count: int) -> list[int]:
    """Ports that were free a moment ago on loopback."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    """A real embedded tritonserver serving the committed model repository."""
    http, grpc, metrics = free_ports(3)
    server = EmbeddedTriton(
        REPOSITORY,
        ServerAddress("127.0.0.1", http, grpc, metrics),
        runtime_dir=tmp_path_factory.mktemp("triton-runtime"),
    )
    server.start()
    yield server
    server.stop()
