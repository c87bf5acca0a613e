"""``fakescope analyze`` run in-process against an embedded tritonserver, as a user runs it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http as httpclient

from fakescope import contract
from fakescope.client import cli
from fakescope.client.triton import Protocol
from fakescope.serving.embedded import EmbeddedTriton


@dataclass(frozen=True)
class CliRun:
    """What one in-process ``fakescope analyze`` run produced."""

    code: int
    out: str
    err: str

    @property
    def verdict(self) -> dict[str, Any]:
        """The one JSON verdict on stdout (``--json``); fails unless there is exactly one line."""
        lines = self.out.splitlines()
        assert len(lines) == 1, self.out
        return json.loads(lines[0])


def run_analyze(
    triton: EmbeddedTriton,
    capsys: pytest.CaptureFixture[str],
    video: Path,
    *extra: str,
    protocol: Protocol = "grpc",
) -> CliRun:
    """Run ``fakescope analyze VIDEO --json [EXTRA...]`` over ``protocol`` against ``triton``."""
    url = triton.address.grpc_url if protocol == "grpc" else triton.address.http_url
    capsys.readouterr()  # drop anything printed before
    code = cli.main([str(video), "--url", url, "--protocol", protocol, "--json", *extra])
    captured = capsys.readouterr()
    return CliRun(code, captured.out, captured.err)


def assert_server_ready(triton: EmbeddedTriton) -> None:
    """Fail unless the server and the ensemble still answer ready (after a bad request)."""
    client = httpclient.InferenceServerClient(triton.address.http_url)
    assert client.is_server_ready()
    assert client.is_model_ready(contract.ENSEMBLE_MODEL)
