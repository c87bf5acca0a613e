"""The Helm chart (deploy/helm/fakescope), offline: render, lint, strict schema validation.

No cluster can run here, so these checks are what "the chart works" means in CI: Helm's own
renderer and linter (helm-python-sdk) over a matrix of values, every rendered object validated
in strict mode against the Kubernetes 1.30 and newest schemas (custom resources only when
allow-listed), and the properties a deployment depends on asserted against the code they must
agree with (ports, shared memory, flags, CLI commands, settings, batched models).
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest
import yaml
from google.protobuf import text_format
from kubernetes_validate import utils as kv
from tritonclient.grpc import model_config_pb2

from fakescope import contract
from fakescope.cli import build_parser
from fakescope.serving.embedded import PYTHON_SHM_START_BYTES, python_shm_growth_bytes
from fakescope.serving.siblings import REPOSITORY_ENV
from fakescope.web.cli import run_web_serve, run_web_worker
from fakescope.web.settings import Settings
from tests.support.helm_chart import (
    CHART,
    CRD_KINDS,
    KUBE_VERSIONS,
    NAMESPACE,
    REQUIRED_VALUES,
    Rendered,
    chart_file,
    lint,
    merge,
    render,
    validate,
)
from tests.support.servers import REPOSITORY

#: The values matrix: each case is a way to install the chart.
CASES: dict[str, dict[str, Any]] = {
    "gpu-s3-gateway-defaults": REQUIRED_VALUES,
    "cpu-pvc-traefik": merge(
        REQUIRED_VALUES,
        {
            "triton": {
                "variant": "cpu",
                "modelRepository": {"source": "pvc", "pvc": {"claimName": "models"}},
            },
            "route": {
                "kind": "traefik",
                "traefik": {"tritonHost": "triton.example.com", "webHost": "fakescope.example.com"},
            },
        },
    ),
    "no-monitoring-no-autoscaling": merge(
        REQUIRED_VALUES,
        {
            "monitoring": {
                "serviceMonitor": {"enabled": False},
                "prometheusRule": {"enabled": False},
            },
            "triton": {"autoscaling": {"enabled": False}, "replicas": 3},
            "worker": {"keda": {"enabled": False}, "replicas": 2},
            "route": {"kind": "none"},
        },
    ),
    "in-process-workers-one-web-pod": merge(
        {k: v for k, v in REQUIRED_VALUES.items() if k != "sharedData"},
        {"worker": {"enabled": False}, "web": {"replicas": 1, "inProcessWorkers": 3}},
    ),
    "uploads-on-object-storage": merge(
        {k: v for k, v in REQUIRED_VALUES.items() if k != "sharedData"},
        {
            "sharedData": {"objectStorage": True},
            "web": {"publicUrl": "https://fakescope.example.com", "adminTokenSecret": "admin"},
        },
    ),
    "triton-only-cpu": {
        "triton": {
            "variant": "cpu",
            "modelRepository": {"source": "pvc", "pvc": {"claimName": "models", "subPath": "v4"}},
        },
        "web": {"enabled": False},
    },
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    return {case: render(values) for case, values in CASES.items()}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _args(rendered: Rendered) -> list[str]:
    return list(_container(rendered.one("Deployment", "-triton"))["args"])


def _flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} given {len(values)} times"
    return values[0]


# --- render, lint, validate: the whole matrix ------------------------------------------------
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_chart_lints_clean_when_rendered_with_values_case(case: str, kube_version: str):
    assert lint(CASES[case], kube_version) == []


@pytest.mark.parametrize("case", CASES)
def test_chart_objects_validate_strictly_when_rendered_with_values_case(
    rendered: dict[str, Rendered], case: str
):
    objects = rendered[case].objects
    assert objects
    problems = [
        f"{template}: {problem}"
        for template, obj in objects
        for version in KUBE_VERSIONS
        if (problem := validate(obj, version))
    ]
    assert problems == []


def test_validation_rejects_unknown_field_when_strict():
    # The strict schemas are what make the matrix above meaningful: a misspelt field fails.
    deployment = render(REQUIRED_VALUES).one("Deployment", "-triton")
    _container(deployment)["livenessprobe"] = _container(deployment).pop("livenessProbe")
    problem = validate(deployment, KUBE_VERSIONS[0])
    assert problem is not None and "livenessprobe" in problem


def test_validation_rejects_custom_kind_when_not_allow_listed():
    made_up = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    problem = validate(made_up, KUBE_VERSIONS[0])
    assert problem is not None and "not an allow-listed custom resource" in problem


def test_crd_allow_list_kind_has_no_schema_when_validated_strictly():
    # An allow-listed kind that had a schema would skip a validation it could have had.
    for api_version, kind in CRD_KINDS:
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
        for version in KUBE_VERSIONS:
            with pytest.raises(kv.SchemaNotFoundError):
                kv.validate(obj, version, strict=True)


def test_chart_has_no_dependencies_when_loaded():
    with helm.Chart.load(CHART) as chart:
        assert "dependencies" not in chart.metadata
        assert chart.dependencies == []
    assert not (CHART / "charts").exists()
    assert not (CHART / "requirements.yaml").exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({k: v for k, v in REQUIRED_VALUES.items() if k != "database"}, "database.existingSecret"),
        (
            merge(REQUIRED_VALUES, {"triton": {"modelRepository": {"s3": {"url": "/models"}}}}),
            "triton.modelRepository.s3.url",
        ),
        (
            merge(REQUIRED_VALUES, {"triton": {"modelRepository": {"source": "pvc"}}}),
            "triton.modelRepository.pvc.claimName",
        ),
        (
            {k: v for k, v in REQUIRED_VALUES.items() if k != "sharedData"},
            "sharedData.existingClaim",
        ),
        (merge(REQUIRED_VALUES, {"route": {"kind": "traefik"}}), "route.traefik.tritonHost"),
        (merge(REQUIRED_VALUES, {"web": {"env": {"DATABASE_URL": "x"}}}), "not a FAKESCOPE_WEB_"),
        (
            merge(REQUIRED_VALUES, {"triton": {"autoscaling": {"minReplicas": 5}}}),
            "minReplicas must not exceed",
        ),
        (merge(REQUIRED_VALUES, {"triton": {"variant": "tpu"}}), "variant"),
        (merge(REQUIRED_VALUES, {"triton": {"replica": 2}}), "replica"),
    ],
    ids=[
        "no-database",
        "s3-url",
        "pvc-claim",
        "no-shared-uploads",
        "traefik-host",
        "env-prefix",
        "hpa-bounds",
        "variant",
        "misspelt-value",
    ],
)
def test_chart_refuses_to_render_when_required_value_missing_or_wrong(
    values: dict[str, Any], message: str
):
    with pytest.raises((helm.HelmRenderError, helm.HelmValuesError), match=re.escape(message)):
        render(values)


# --- Triton ------------------------------------------------------------------------------------
def test_triton_probes_use_health_endpoints_when_rendered(rendered: dict[str, Rendered]):
    container = _container(rendered["gpu-s3-gateway-defaults"].one("Deployment", "-triton"))
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    # Model loading (S3 download, ONNX sessions, warm-up) gets minutes before liveness applies.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert "--strict-readiness=true" in container["args"]


def test_triton_drains_before_exit_timeout_when_terminated(rendered: dict[str, Rendered]):
    deployment = rendered["gpu-s3-gateway-defaults"].one("Deployment", "-triton")
    container = _container(deployment)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = int(command[1])
    exit_timeout = int(_flag(container["args"], "exit-timeout-secs"))
    assert drain > 0 and exit_timeout > 0
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > drain + exit_timeout  # the kubelet's SIGKILL comes after both
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_triton_flags_match_embedded_server_and_compose_when_rendered(
    rendered: dict[str, Rendered],
):
    args = _args(rendered["gpu-s3-gateway-defaults"])
    assert int(_flag(args, "http-port")) == contract.HTTP_PORT
    assert int(_flag(args, "grpc-port")) == contract.GRPC_PORT
    assert int(_flag(args, "metrics-port")) == contract.METRICS_PORT
    backend = [a.split("=", 1)[1] for a in args if a.startswith("--backend-config=python,")]
    assert f"python,shm-default-byte-size={PYTHON_SHM_START_BYTES}" in backend
    assert f"python,shm-growth-byte-size={python_shm_growth_bytes(REPOSITORY)}" in backend
    compose = yaml.safe_load((REPOSITORY.parent / "docker-compose.yml").read_text())
    compose_flags = [
        c for c in compose["services"]["triton"]["command"][1:] if "--model-repository" not in c
    ]
    assert set(compose_flags) <= set(args)  # the chart runs the GPU image as compose does


def test_triton_shm_volume_holds_every_python_stub_when_grown_once(
    rendered: dict[str, Rendered],
):
    deployment = rendered["gpu-s3-gateway-defaults"].one("Deployment", "-triton")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _container(deployment)["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    match = re.fullmatch(r"(\d+)([KMG]i)", shm["sizeLimit"])
    assert match, shm["sizeLimit"]
    size = int(match.group(1)) * 1024 ** ("KMG".index(match.group(2)[0]) + 1)
    python_instances = 0
    for config_path in REPOSITORY.glob("*/config.pbtxt"):
        config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
        if config.backend == "python":
            python_instances += sum(g.count or 1 for g in config.instance_group) or 1
    assert size >= python_instances * (PYTHON_SHM_START_BYTES + python_shm_growth_bytes(REPOSITORY))


def test_triton_reads_s3_repository_with_secret_when_source_is_s3(rendered: dict[str, Rendered]):
    container = _container(rendered["gpu-s3-gateway-defaults"].one("Deployment", "-triton"))
    s3 = REQUIRED_VALUES["triton"]["modelRepository"]["s3"]
    assert _flag(container["args"], "model-repository") == s3["url"]
    assert container["envFrom"] == [{"secretRef": {"name": s3["credentialsSecret"]}}]
    assert all(m["mountPath"] != "/models" for m in container["volumeMounts"])
    # the python models fetch sibling models' files from the same URL (serving/siblings.py)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env[REPOSITORY_ENV] == _flag(container["args"], "model-repository")


def test_triton_mounts_claim_read_only_when_source_is_pvc(rendered: dict[str, Rendered]):
    deployment = rendered["triton-only-cpu"].one("Deployment", "-triton")
    container = _container(deployment)
    assert _flag(container["args"], "model-repository") == "/models"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models")
    assert mount["readOnly"] is True and mount["subPath"] == "v4"
    volume = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    assert volume["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert "envFrom" not in container


def test_triton_requests_gpu_only_when_variant_is_gpu(rendered: dict[str, Rendered]):
    gpu = _container(rendered["gpu-s3-gateway-defaults"].one("Deployment", "-triton"))
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert _flag(gpu["args"], "allow-gpu-metrics") == "true"
    cpu_render = rendered["cpu-pvc-traefik"]
    cpu = _container(cpu_render.one("Deployment", "-triton"))
    assert "nvidia.com/gpu" not in yaml.safe_dump(cpu_render.one("Deployment", "-triton"))
    assert _flag(cpu["args"], "allow-gpu-metrics") == "false"
    assert cpu["image"] == gpu["image"]  # the same NGC-based image; KIND_AUTO picks the device


def test_triton_service_speaks_h2c_for_grpc_when_rendered(rendered: dict[str, Rendered]):
    ports = {
        p["name"]: p
        for p in rendered["gpu-s3-gateway-defaults"].one("Service", "-triton")["spec"]["ports"]
    }
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert ports["grpc"]["port"] == contract.GRPC_PORT
    traefik = rendered["cpu-pvc-traefik"].one("IngressRoute", "-triton")
    grpc_services = [
        s
        for route in traefik["spec"]["routes"]
        for s in route["services"]
        if s["port"] == contract.GRPC_PORT
    ]
    assert grpc_services and all(s["scheme"] == "h2c" for s in grpc_services)
    assert all(r["middlewares"] for r in traefik["spec"]["routes"])  # retried on another pod


# --- autoscaling -------------------------------------------------------------------------------
def test_triton_hpa_targets_adapter_queue_metric_when_autoscaling(rendered: dict[str, Rendered]):
    render_ = rendered["gpu-s3-gateway-defaults"]
    hpa = render_.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"  # v2beta2 was removed in Kubernetes 1.26
    assert (
        hpa["spec"]["scaleTargetRef"]["name"]
        == render_.one("Deployment", "-triton")["metadata"]["name"]
    )
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    adapter = yaml.safe_load(chart_file("files/prometheus-adapter-rules.yaml").read_text())
    [rule] = adapter["rules"]["custom"]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    # The HPA owns the replica count: a rendered one would reset it on every upgrade.
    assert "replicas" not in render_.one("Deployment", "-triton")["spec"]
    fixed = rendered["no-monitoring-no-autoscaling"]
    assert fixed.all("HorizontalPodAutoscaler") == []
    assert fixed.one("Deployment", "-triton")["spec"]["replicas"] == 3


def test_chart_uses_no_beta_autoscaling_api_when_any_case_rendered(rendered: dict[str, Rendered]):
    for render_ in rendered.values():
        assert all("v2beta" not in obj["apiVersion"] for _, obj in render_.objects)


def test_servicemonitor_scrapes_triton_metrics_port_when_enabled(rendered: dict[str, Rendered]):
    render_ = rendered["gpu-s3-gateway-defaults"]
    monitor = render_.one("ServiceMonitor")
    service = render_.one("Service", "-triton")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [endpoint] = monitor["spec"]["endpoints"]
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    assert port["port"] == contract.METRICS_PORT
    assert rendered["no-monitoring-no-autoscaling"].all("ServiceMonitor") == []
    assert rendered["no-monitoring-no-autoscaling"].all("PrometheusRule") == []


def test_prometheusrule_ships_rules_file_for_release_when_rendered(rendered: dict[str, Rendered]):
    render_ = rendered["gpu-s3-gateway-defaults"]
    text = chart_file("files/recording-rules.yaml").read_text()
    # The file is a template only for the release's namespace and Triton Service name.
    fields = {
        ".Release.Namespace": NAMESPACE,
        "include `fakescope.triton.fullname` .": render_.one("Service", "-triton")["metadata"][
            "name"
        ],
    }
    expanded = re.sub(r"\{\{\s*(.*?)\s*\}\}", lambda m: fields[m.group(1)], text)
    assert render_.one("PrometheusRule")["spec"] == yaml.safe_load(expanded)


def test_recording_rules_cover_exactly_batched_models_when_repository_parsed():
    batched = set()
    for config_path in REPOSITORY.glob("*/config.pbtxt"):
        config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
        if config.max_batch_size > 0 and config.HasField("dynamic_batching"):
            batched.add(config.name)
    assert batched == {contract.CLASSIFIER_MODEL, contract.RNET_MODEL, contract.ONET_MODEL}
    groups = yaml.safe_load(chart_file("files/recording-rules.yaml").read_text())["groups"]
    selectors = [
        set(m.split("|"))
        for group in groups
        for rule in group["rules"]
        for m in re.findall(r'model=~"([^"]+)"', rule["expr"])
    ]
    assert len(selectors) == 2  # queue time and successful requests
    assert all(s == batched for s in selectors)


# --- web service and workers -------------------------------------------------------------------
def _literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c].get("web", {}).get("enabled", True)])
def test_web_pods_run_real_cli_and_settings_when_rendered(rendered: dict[str, Rendered], case: str):
    render_ = rendered[case]
    pods = [d for d in render_.all("Deployment") if not d["metadata"]["name"].endswith("-triton")]
    assert pods
    for deployment in pods:
        container = _container(deployment)
        args = build_parser().parse_args(container["command"][1:])
        expected = (
            run_web_worker if deployment["metadata"]["name"].endswith("-worker") else run_web_serve
        )
        assert args.func is expected
        env = _literal_env(container)
        assert all(name.startswith("FAKESCOPE_WEB_") for name in env)
        Settings.from_env(env)  # every literal setting parses (a bad one raises SettingsError)
        secret_env = {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}
        assert secret_env["FAKESCOPE_WEB_DATABASE_URL"]["secretKeyRef"]["name"] == "fakescope-db"
        triton = render_.one("Service", "-triton")
        assert (
            env["FAKESCOPE_WEB_TRITON_URL"] == f"{triton['metadata']['name']}:{contract.GRPC_PORT}"
        )
        # uploads go where the shared volume is mounted
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["FAKESCOPE_WEB_DATA_DIR"] == mounts["data"]


def test_web_front_end_runs_no_workers_when_workers_are_pods(rendered: dict[str, Rendered]):
    split = rendered["gpu-s3-gateway-defaults"]
    assert _literal_env(_container(split.one("Deployment", "-web")))["FAKESCOPE_WEB_WORKERS"] == "0"
    worker = _container(split.one("Deployment", "-worker"))
    assert worker["command"][:3] == ["fakescope", "web", "worker"]
    assert "FAKESCOPE_WEB_WORKERS" not in _literal_env(worker)  # --threads says it
    together = rendered["in-process-workers-one-web-pod"]
    assert (
        _literal_env(_container(together.one("Deployment", "-web")))["FAKESCOPE_WEB_WORKERS"] == "3"
    )
    assert [d["metadata"]["name"] for d in together.all("Deployment")] == [
        "prod-fakescope-triton",
        "prod-fakescope-web",
    ]
    assert together.all("ScaledObject") == []


def test_web_and_workers_share_upload_volume_when_split(rendered: dict[str, Rendered]):
    split = rendered["gpu-s3-gateway-defaults"]
    for suffix in ("-web", "-worker"):
        volumes = split.one("Deployment", suffix)["spec"]["template"]["spec"]["volumes"]
        claim = REQUIRED_VALUES["sharedData"]["existingClaim"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": claim}} in volumes


def test_worker_scaledobject_counts_jobs_with_database_secret_when_keda(
    rendered: dict[str, Rendered],
):
    split = rendered["gpu-s3-gateway-defaults"]
    scaled = split.one("ScaledObject")
    worker = split.one("Deployment", "-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"]  # KEDA's HPA owns the count
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    threads = int(
        _container(worker)["command"][_container(worker)["command"].index("--threads") + 1]
    )
    assert trigger["metadata"]["targetQueryValue"] == str(threads)
    auth = split.one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref == {"parameter": "connection", "name": "fakescope-db", "key": "keda-connection"}
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = float(
        _container(worker)["command"][_container(worker)["command"].index("--drain-timeout") + 1]
    )
    assert grace > drain


def test_routes_point_at_rendered_services_when_any_case_rendered(rendered: dict[str, Rendered]):
    for render_ in rendered.values():
        services = {
            s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]}
            for s in render_.all("Service")
        }
        refs = [
            (b["name"], b["port"])
            for kind in ("HTTPRoute", "GRPCRoute")
            for route in render_.all(kind)
            for rule in route["spec"]["rules"]
            for b in rule["backendRefs"]
        ] + [
            (s["name"], s["port"])
            for route in render_.all("IngressRoute")
            for r in route["spec"]["routes"]
            for s in r["services"]
        ]
        for name, port in refs:
            assert port in services.get(name, set()), f"route to {name}:{port}, not rendered"
        # The metrics port is never routed to the outside.
        assert all(port != contract.METRICS_PORT for _, port in refs)


def test_web_pods_run_as_image_user_with_writable_uploads_when_rendered(
    rendered: dict[str, Rendered],
):
    dockerfile = (REPOSITORY.parent / "docker" / "web.Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert user, "docker/web.Dockerfile names no numeric USER uid:gid"
    uid, gid = int(user.group(1)), int(user.group(2))
    for suffix in ("-web", "-worker"):
        pod = rendered["gpu-s3-gateway-defaults"].one("Deployment", suffix)["spec"]["template"]
        context = pod["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
        assert context["fsGroup"] == gid  # the upload volume is group-writable for the user
