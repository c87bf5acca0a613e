"""The Triton HPA's signal, end to end in promtool: recording rules, then the adapter's query.

The rules are the ones the chart ships (its rendered PrometheusRule); the adapter query is
``files/prometheus-adapter-rules.yaml``'s template expanded the way prometheus-adapter expands it
for a Pods metric. The input series are Triton's counters (``nv_inference_queue_duration_us``,
``nv_inference_request_success``, per model) for pods that cover what a per-pod queue-time
signal must get right: requests spread over several batched models (a request-weighted mean),
idle batched models beside a busy one (they must not pull the mean down), a busy unbatched
model (left out), an idle pod (0, not missing), a container restart (counter reset), and rare
requests (no ``+1`` bias); and the pods of another release, which the rules leave out. Skipped
with the reason when promtool is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from fakescope import contract
from tests.support.helm_chart import NAMESPACE, REQUIRED_VALUES, chart_file, render

PROMTOOL: Final = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's prometheus package (.ci/run does)",
)

SIGNAL: Final = "pod:fakescope_triton_queue_us_per_request:ratio_rate2m"
REQUESTS: Final = "pod:fakescope_triton_batched_requests:rate2m"
SCRAPE_S: Final = 30
SAMPLES: Final = 21  # ten minutes of scrapes
EVAL_TIME: Final = "5m"  # sample 10: its 2-minute window holds samples 6..10
#: The release's Triton Service: its name is the ``service`` label of the pods' metrics.
TRITON_SERVICE: Final = render(REQUIRED_VALUES).one("Service", "-triton")["metadata"]["name"]


def _model_series(
    pod: str,
    model: str,
    requests: list[int],
    queue_us: int,
    *,
    namespace: str = NAMESPACE,
    service: str | None = None,
) -> list[dict[str, str]]:
    """Triton's two counters for one model of one pod; every request queued ``queue_us``.

    The labels are those of a ServiceMonitor target of the release's Triton Service (the
    Prometheus operator adds namespace, service and pod), unless ``service`` says otherwise.
    """
    service = service or TRITON_SERVICE
    labels = f'namespace="{namespace}",service="{service}",pod="{pod}",model="{model}",version="1"'
    return [
        {
            "series": f"nv_inference_request_success{{{labels}}}",
            "values": " ".join(str(r) for r in requests),
        },
        {
            "series": f"nv_inference_queue_duration_us{{{labels}}}",
            "values": " ".join(str(r * queue_us) for r in requests),
        },
    ]


def _steady(per_scrape: int, start: int = 0) -> list[int]:
    return [start + per_scrape * i for i in range(SAMPLES)]


def _restarted(per_scrape: int, restart_at: int) -> list[int]:
    """A counter that restarts from 0 between samples ``restart_at - 1`` and ``restart_at``."""
    return [per_scrape * i for i in range(restart_at)] + [
        per_scrape * (i - restart_at + 1) for i in range(restart_at, SAMPLES)
    ]


#: pod -> (input series, expected queue µs per request at EVAL_TIME)
PODS: Final[dict[str, tuple[list[dict[str, str]], float]]] = {
    # 10 + 20 + 5 requests/s at 2000, 500, 1000 µs: (20000 + 10000 + 5000) / 35 = 1000 µs, the
    # request-weighted mean (an average of the per-model means would say 1166.7).
    "busy": (
        _model_series("busy", contract.CLASSIFIER_MODEL, _steady(300), 2000)
        + _model_series("busy", contract.RNET_MODEL, _steady(600), 500)
        + _model_series("busy", contract.ONET_MODEL, _steady(150), 1000),
        1000.0,
    ),
    # Only the classifier works; R-Net and O-Net served earlier and are idle now; the unbatched
    # face_detector queues a full second per request. The signal is the classifier's 3000 µs:
    # averaging over the three batched models would report 1000, a third of it.
    "idle-models": (
        _model_series("idle-models", contract.CLASSIFIER_MODEL, _steady(300), 3000)
        + _model_series("idle-models", contract.RNET_MODEL, [5000] * SAMPLES, 400)
        + _model_series("idle-models", contract.ONET_MODEL, [700] * SAMPLES, 900)
        + _model_series("idle-models", contract.FACE_DETECTOR_MODEL, _steady(30), 1_000_000),
        3000.0,
    ),
    # No batched request in the window: 0 (a sample the HPA can count as idle).
    "idle": (
        _model_series("idle", contract.CLASSIFIER_MODEL, [1200] * SAMPLES, 2000)
        + _model_series("idle", contract.RNET_MODEL, [2400] * SAMPLES, 500)
        + _model_series("idle", contract.ONET_MODEL, [600] * SAMPLES, 1000),
        0.0,
    ),
    # The container restarted between samples 8 and 9 (inside the window at 5m): its counters
    # start again from 0. delta() would see the classifier's count drop by 2100; rate() sees
    # its 10 requests per second (plus R-Net's 20).
    "restarted": (
        _model_series("restarted", contract.CLASSIFIER_MODEL, _restarted(300, 9), 2000)
        + _model_series("restarted", contract.RNET_MODEL, _restarted(600, 9), 2000)
        + _model_series("restarted", contract.ONET_MODEL, [0] * SAMPLES, 1000),
        2000.0,
    ),
    # One request a minute, each queued 60 ms: 60000 µs. A "+1" in the denominator would
    # report 40000 here (2 requests in the window) and 30000 over a 30 s window.
    "rare": (
        _model_series("rare", contract.CLASSIFIER_MODEL, [i // 2 for i in range(SAMPLES)], 60_000)
        + _model_series("rare", contract.RNET_MODEL, [0] * SAMPLES, 500)
        + _model_series("rare", contract.ONET_MODEL, [0] * SAMPLES, 1000),
        60000.0,
    ),
}


#: Busy Triton pods of other releases: another release in the same namespace, and one of the
#: same name in another namespace. This release's rules must not record them.
OTHER_RELEASES: Final = _model_series(
    "other-release", contract.CLASSIFIER_MODEL, _steady(300), 9000, service="other-fakescope-triton"
) + _model_series(
    "other-namespace", contract.CLASSIFIER_MODEL, _steady(300), 9000, namespace="elsewhere"
)


def _adapter_rule() -> dict[str, Any]:
    [rule] = yaml.safe_load(chart_file("files/prometheus-adapter-rules.yaml").read_text())["rules"][
        "custom"
    ]
    return rule


def _adapter_pods_query(rule: dict[str, Any], namespace: str, pods: list[str]) -> str:
    """The PromQL prometheus-adapter sends for a Pods metric request on ``pods``.

    The adapter fills ``metricsQuery``'s Go template (``<<`` ``>>`` delimiters) with the
    series name, label matchers for the namespace and the requested pods, and the pod label to
    group by; any other template field would be unknown here and fails the test.
    """
    series = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{.*\}", rule["seriesQuery"])
    assert series, rule["seriesQuery"]
    fields = {
        ".Series": series.group(1),
        ".LabelMatchers": f'namespace="{namespace}",pod=~"{"|".join(pods)}"',
        ".GroupBy": "pod",
    }
    query = re.sub(r"<<\s*(\.\w+)\s*>>", lambda m: fields[m.group(1)], rule["metricsQuery"])
    assert "<<" not in query, query
    return query


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def shipped_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's rendered PrometheusRule groups, as a Prometheus rule file."""
    rule = render(REQUIRED_VALUES).one("PrometheusRule")
    path = tmp_path_factory.mktemp("rules") / "recording-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def test_recording_rules_pass_promtool_check_when_rendered(shipped_rules: Path):
    result = _promtool("check", "rules", str(shipped_rules))
    assert result.returncode == 0, result.stdout + result.stderr


def test_queue_signal_matches_request_weighted_mean_when_promtool_evaluates(shipped_rules: Path):
    rule = _adapter_rule()
    assert re.fullmatch(rule["name"]["matches"], SIGNAL)  # the adapter finds and renames it
    pods = sorted(PODS)
    per_pod = [
        {"labels": f'{SIGNAL}{{namespace="{NAMESPACE}",pod="{pod}"}}', "value": expected}
        for pod, (_, expected) in sorted(PODS.items())
    ]
    tests = {
        "rule_files": [shipped_rules.name],
        "evaluation_interval": f"{SCRAPE_S}s",
        "tests": [
            {
                "interval": f"{SCRAPE_S}s",
                "input_series": [s for series, _ in PODS.values() for s in series] + OTHER_RELEASES,
                "promql_expr_test": [
                    # The recorded per-pod signal.
                    {"expr": SIGNAL, "eval_time": EVAL_TIME, "exp_samples": per_pod},
                    # Across the reset, the request rate is the steady one: none lost, none added.
                    {
                        "expr": f'{REQUESTS}{{pod="restarted"}}',
                        "eval_time": EVAL_TIME,
                        "exp_samples": [
                            {
                                "labels": f'{REQUESTS}{{namespace="{NAMESPACE}",pod="restarted"}}',
                                "value": 30,
                            }
                        ],
                    },
                    # What the HPA gets: the adapter's query for these pods.
                    {
                        "expr": _adapter_pods_query(rule, NAMESPACE, pods),
                        "eval_time": EVAL_TIME,
                        "exp_samples": [
                            {"labels": f'{{pod="{pod}"}}', "value": expected}
                            for pod, (_, expected) in sorted(PODS.items())
                        ],
                    },
                    # The adapter's discovery query finds one series per pod, with the labels
                    # its resource overrides map to namespace and pod.
                    {
                        "expr": rule["seriesQuery"],
                        "eval_time": EVAL_TIME,
                        "exp_samples": per_pod,
                    },
                ],
            }
        ],
    }
    test_file = shipped_rules.parent / "queue-time-test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_adapter_query_expansion_names_requested_pods_when_expanded():
    query = _adapter_pods_query(_adapter_rule(), "ns", ["a-1", "b-2"])
    assert query == f'max by (pod) ({SIGNAL}{{namespace="ns",pod=~"a-1|b-2"}})'
