"""Shared fixtures: one real tritonserver per test session, real ONNX models; a real S3 server;
NumPy advising huge pages for one test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakescope.allocator import HUGE_PAGE_ENV, huge_page_advice, set_huge_page_advice
from fakescope.serving.embedded import EmbeddedTriton, ServerAddress
from tests.support.s3_server import S3Server, running_s3_server
from tests.support.servers import REPOSITORY, free_ports

#: The committed model repository on the session's S3 server: bucket and prefix.
S3_MODELS_BUCKET = "models"
S3_REPOSITORY_PREFIX = "repo"


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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) on loopback for the session; skipped if not installed."""
    with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_repository(s3_server: S3Server) -> str:
    """The committed model repository uploaded to the session's S3 server; its ``s3://`` URL.

    Read-only for the tests that share it: a test that changes a repository uploads its own.
    """
    s3_server.create_bucket(S3_MODELS_BUCKET)
    s3_server.upload_tree(REPOSITORY, S3_MODELS_BUCKET, S3_REPOSITORY_PREFIX)
    return s3_server.url(S3_MODELS_BUCKET, S3_REPOSITORY_PREFIX)


@pytest.fixture
def huge_pages_advised(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """NumPy advising huge pages in this process, as a fresh process does; restored afterwards.

    For a test that checks a process entry point turns the advice off
    (:func:`fakescope.allocator.set_up_memory`) by running it in the test's own process.
    """
    monkeypatch.delenv(HUGE_PAGE_ENV, raising=False)
    advised = huge_page_advice()
    set_huge_page_advice(True)
    try:
        yield
    finally:
        set_huge_page_advice(advised)
