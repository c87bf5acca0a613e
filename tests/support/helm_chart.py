"""Offline checks of the Helm chart: render and lint with Helm's own library, validate objects.

Not a test module. Rendering and linting use ``helm-python-sdk`` (Helm v4 linked in as a
library: no ``helm`` binary, no cluster, no network). Validation uses ``kubernetes-validate``'s
Python API in strict mode (unknown fields are errors); its CLI only warns on a kind it has no
schema for, so the kinds without one must be named in :data:`CRD_KINDS`, or validation fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import helm_python as helm
import yaml
from kubernetes_validate import utils as kv

from tests.support.servers import REPOSITORY

CHART: Final = REPOSITORY.parent / "deploy" / "helm" / "fakescope"
RELEASE: Final = "prod"
NAMESPACE: Final = "fakescope"

#: Kubernetes versions every object is validated against: the oldest the chart supports
#: (Chart.yaml ``kubeVersion``) and the newest kubernetes-validate knows.
KUBE_VERSIONS: Final = ("1.30", kv.latest_version())

#: Custom resources the chart renders, which no Kubernetes schema covers: the Prometheus
#: operator's, KEDA's, the Gateway API's and Traefik's. Anything else without a schema fails.
CRD_KINDS: Final = frozenset(
    {
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("gateway.networking.k8s.io/v1", "GRPCRoute"),
        ("traefik.io/v1alpha1", "IngressRoute"),
        ("traefik.io/v1alpha1", "Middleware"),
    }
)

#: The values every complete install needs (external S3, PostgreSQL and shared upload volume).
REQUIRED_VALUES: Final[dict[str, Any]] = {
    "triton": {
        "modelRepository": {
            "source": "s3",
            "s3": {"url": "s3://s3.storage:9000/models/fakescope", "credentialsSecret": "s3"},
        }
    },
    "database": {"existingSecret": "fakescope-db"},
    "sharedData": {"existingClaim": "fakescope-uploads"},
}


@dataclass(frozen=True)
class Rendered:
    """The objects one set of values renders to, each with the template it came from."""

    objects: list[tuple[str, dict[str, Any]]]

    def kinds(self) -> list[str]:
        """Kinds of all objects, in render order."""
        return [obj["kind"] for _, obj in self.objects]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        """The single object of ``kind`` whose name ends with ``name_suffix``."""
        found = [
            obj
            for _, obj in self.objects
            if obj["kind"] == kind and obj["metadata"]["name"].endswith(name_suffix)
        ]
        assert len(found) == 1, f"{len(found)} {kind} objects named *{name_suffix}"
        return found[0]

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every object of ``kind``."""
        return [obj for _, obj in self.objects if obj["kind"] == kind]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (as Helm merges ``-f`` files)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def render(values: dict[str, Any]) -> Rendered:
    """Render the chart with ``values`` (raises ``helm_python.HelmRenderError`` on ``fail``)."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = [
        (template, obj)
        for template, text in sorted(manifests.items())
        if template.endswith((".yaml", ".yml"))
        for obj in yaml.safe_load_all(text)
        if obj
    ]
    return Rendered(objects)


def lint(values: dict[str, Any], kube_version: str) -> list[str]:
    """``helm lint --strict`` findings above "info" (warnings and errors) for ``values``."""
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{kube_version}.0")
    findings = [
        f"{m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2
    ]
    return findings + [e.strip() for e in report["errors"]]


def validate(obj: dict[str, Any], kube_version: str) -> str | None:
    """Validate ``obj`` strictly; return None, or why it is invalid.

    A kind without a schema is accepted only when :data:`CRD_KINDS` names it.
    """
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    try:
        kv.validate(obj, kube_version, strict=True)
    except kv.SchemaNotFoundError as exc:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            return None
        return f"{name}: {exc.message} (not an allow-listed custom resource)"
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return f"{name} against {exc.version}: {path}: {exc.message}"
    return None


def chart_file(relative: str) -> Path:
    """A file of the chart, e.g. ``files/recording-rules.yaml``."""
    return CHART / relative
