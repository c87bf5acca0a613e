"""Static checks of the GPU deployment (no Docker engine on the development machines)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess

import pytest
import yaml

from fakescope import contract
from fakescope.client.triton import SHARED_MEMORY_CHOICES
from fakescope.paths import PROJECT_ROOT

ROOT = PROJECT_ROOT
COMPOSE = ROOT / "docker-compose.yml"


def _triton_service() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]["triton"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_validates_when_checked_by_docker_compose(tmp_path):
    ok = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], cwd=ROOT)
    assert ok.returncode == 0
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("shm_size:", "shm_sise:"))
    bad = subprocess.run(["docker-compose", "-f", str(broken), "config", "-q"], cwd=tmp_path)
    assert bad.returncode != 0  # the validator can fail, so its pass means something


def test_docker_compose_uses_contract_ports_when_parsed():
    ports = _triton_service()["ports"]
    expected = {str(p) for p in (contract.HTTP_PORT, contract.GRPC_PORT, contract.METRICS_PORT)}
    assert {p.rsplit(":", 1)[-1] for p in ports} == expected
    assert {p.split(":")[1] for p in ports} == expected
    assert all(p.startswith(f"{contract.DEFAULT_HOST}:") for p in ports)
    health = " ".join(_triton_service()["healthcheck"]["test"])
    assert f"localhost:{contract.HTTP_PORT}/" in health
    web = yaml.safe_load(COMPOSE.read_text())["services"]["web"]["environment"]
    assert web["FAKESCOPE_WEB_TRITON_URL"] == f"triton:{contract.GRPC_PORT}"


def test_docker_compose_shares_tritons_shared_memory_with_the_web_service_when_parsed():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["triton"]["ipc"] == "shareable"
    assert services["web"]["ipc"] == "service:triton"
    choice = services["web"]["environment"]["FAKESCOPE_WEB_TRITON_SHARED_MEMORY"]
    assert SHARED_MEMORY_CHOICES[choice] is True  # Triton's URL is not loopback: auto is off


def test_docker_compose_checks_readiness_and_reserves_gpu_when_parsed():
    service = _triton_service()
    assert "/v2/health/ready" in " ".join(service["healthcheck"]["test"])
    assert service["shm_size"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "./model_repository:/models:ro" in service["volumes"]
    assert "--model-repository=/models" in service["command"]


def test_dockerfiles_copy_existing_paths_when_parsed():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(built) == {"triton", "web"}  # every image compose builds is checked below
    for build in built.values():
        context = ROOT / build["context"]
        dockerfile = context / build["dockerfile"]
        copies = [line for line in dockerfile.read_text().splitlines() if line.startswith("COPY ")]
        assert copies, f"{dockerfile.name} copies nothing"
        for line in copies:
            for source in re.split(r"\s+", line)[1:-1]:
                if source.startswith("--"):  # a flag such as --chown=
                    continue
                assert (context / source).exists(), f"{dockerfile.name} copies missing {source}"


def test_model_configs_name_no_cpu_only_setting_when_served_on_gpu():
    """The one repository serves both deployments: no ONNX model may pin itself to the CPU."""
    for config in (ROOT / "model_repository").glob("*/config.pbtxt"):
        text = config.read_text()
        if 'backend: "onnxruntime"' in text:
            assert "KIND_CPU" not in text, f"{config} would never use the GPU"


def _inference_request_calls() -> list[tuple[str, ast.Call]]:
    """Every ``pb_utils.InferenceRequest(...)`` call in the code the python backend runs."""
    sources = [
        *(ROOT / "model_repository").glob("*/*/model.py"),
        *(ROOT / "fakescope").rglob("*.py"),
    ]
    calls = []
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "InferenceRequest"
            ):
                calls.append((str(source.relative_to(ROOT)), node))
    return calls


def test_bls_requests_ask_for_cpu_outputs_when_built():
    """In the GPU image the ONNX models' outputs stay in GPU memory unless a BLS call asks for the
    CPU, and the python models read them with ``as_numpy()``, which then raises."""
    calls = _inference_request_calls()
    assert calls, "no BLS request found: the scan looks in the wrong place"
    for where, call in calls:
        preferred = {k.arg: k.value for k in call.keywords}.get("preferred_memory")
        assert preferred is not None, (
            f"{where}:{call.lineno} builds a BLS request without preferred_memory"
        )
        assert "TRITONSERVER_MEMORY_CPU" in ast.unparse(preferred), (
            f"{where}:{call.lineno} asks for {ast.unparse(preferred)}, not CPU memory"
        )


def test_web_image_compose_and_chart_use_contract_port_and_health_path_when_parsed():
    port, health = contract.WEB_PORT, contract.WEB_HEALTH_PATH
    dockerfile = (ROOT / "docker" / "web.Dockerfile").read_text()
    assert f"EXPOSE {port}\n" in dockerfile
    assert f"'http://127.0.0.1:{port}{health}'" in dockerfile  # the image's health check
    assert f'"--port", "{port}"]' in dockerfile
    web = yaml.safe_load(COMPOSE.read_text())["services"]["web"]
    assert web["ports"] == [f"{contract.DEFAULT_HOST}:{port}:{port}"]
    assert web["environment"]["FAKESCOPE_WEB_PUBLIC_URL"].endswith(f":{port}}}")
    chart = ROOT / "deploy" / "helm" / "fakescope"
    assert yaml.safe_load((chart / "values.yaml").read_text())["web"]["port"] == port
    probes = (chart / "templates" / "web-deployment.yaml").read_text()
    assert probes.count(f"httpGet: {{path: {health}, port: http}}") == 2  # readiness, liveness


def test_triton_image_tag_names_the_ngc_release_it_is_built_from_when_parsed():
    base = re.search(
        r"^FROM nvcr\.io/nvidia/tritonserver:(\S+)-py3$",
        (ROOT / "docker" / "triton-gpu.Dockerfile").read_text(),
        re.M,
    )
    assert base is not None
    tag = f"{base.group(1)}-gpu"  # one NGC release, named the same in the three places
    assert _triton_service()["image"] == f"fakescope-triton:{tag}"
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "fakescope" / "values.yaml").read_text())
    assert values["triton"]["image"]["tag"] == tag


def test_capacity_model_assumes_the_charts_worker_settings_when_parsed():
    from fakescope.benchmarks.capacity.assumptions import Assumptions
    from fakescope.benchmarks.capacity.hpa import HpaBehavior

    worker = yaml.safe_load((ROOT / "deploy" / "helm" / "fakescope" / "values.yaml").read_text())[
        "worker"
    ]
    assumed = Assumptions()
    # the replica the model scales is a worker pod: its analysis threads are the slots
    assert worker["threads"] == assumed.slots_per_replica
    assert worker["keda"]["minReplicaCount"] == assumed.hpa_min_replicas
    behaviour = HpaBehavior(target=assumed.hpa_target_jobs_per_replica)
    assert worker["keda"]["pollingInterval"] == behaviour.sync_period_s
    assert worker["keda"]["cooldownPeriod"] == behaviour.scale_down_window_s
