"""Shared fixtures: one real tritonserver per test session, real ONNX models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakescope.serving.embedded import EmbeddedTriton, ServerAddress
from tests.support.servers import REPOSITORY, free_ports


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
