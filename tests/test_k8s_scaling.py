"""Autoscaling objects rendered for Kubernetes: with KEDA enabled, concurrency/rps become a KEDA ScaledObject
(validated with jsonschema against KEDA's CRD schema, vendored in tests/schemas/, unknown fields refused as
`kubectl --validate=strict` would) reading the router's per-revision series; cpu/memory stay an HPA (validated
by kubernetes-validate); minReplicas 0 keeps traffic on a revision KEDA scaled to zero, with no endpoint in
its route arm, so the in-cluster router's activator holds its requests. No cluster here: KEDA and Prometheus
are not run, so the PromQL is checked as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from serving.commands.render import render
from serving.control.kubernetes.backend import observe, with_scaled_to_zero
from serving.control.kubernetes.render import RenderSettings
from serving.control.kubernetes.scaling import render_warnings
from serving.control.reconcile import plan
from serving.control.routes import routes_for
from serving.spec import parse

SCHEMA = yaml.safe_load((Path(__file__).parent / "schemas" / "keda-scaledobject-v1alpha1.yaml").read_text())
KEDA = RenderSettings(keda_prometheus_url="http://prometheus.monitoring:9090")


def _strict(schema: Any) -> Any:
    """Unknown fields are errors (the API server would prune them silently: a typo would vanish)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _doc(annotations: dict[str, str] | None = None, **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "ml", "annotations": annotations or {}},
        "spec": {"predictor": {**predictor, "sklearn": {"storageUri": "pvc://models/iris"}}},
    }


def _rendered(doc: dict[str, Any], settings: RenderSettings = KEDA) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render([doc], settings)}


def test_concurrency_with_keda_is_a_valid_scaled_object_on_the_router_metrics() -> None:
    doc = _doc(
        {"autoscaling.knative.dev/window": "30s", "autoscaling.knative.dev/scale-down-delay": "2m"},
        minReplicas=0,
        maxReplicas=6,
        scaleTarget=4,
    )
    objects = _rendered(doc)
    scaled = objects["ScaledObject"]
    jsonschema.validate(scaled, _strict(SCHEMA))
    spec = scaled["spec"]
    deployment = objects["Deployment"]
    assert (
        spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        and "HorizontalPodAutoscaler" not in objects
    )
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (0, 6, 30)
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
            "stabilizationWindowSeconds"
        ]
        == 120
    )
    trigger = spec["triggers"][0]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "2.8"  # 4 x 70 %
    revision = deployment["metadata"]["labels"]["serving.dev/revision"]
    query = trigger["metadata"]["query"]
    assert f'serving_router_requests_in_flight{{namespace="ml",revision="{revision}"}}' in query
    assert (
        f'serving_activator_queue_depth{{isvc="iris",revision="{revision}"}}' in query
    )  # held requests wake zero
    assert trigger["metadata"]["activationThreshold"] == "0"


def test_rps_reads_the_request_rate_and_cpu_stays_an_hpa() -> None:
    rps = _rendered(_doc(minReplicas=1, maxReplicas=4, scaleMetric="rps", scaleTarget=50))["ScaledObject"]
    jsonschema.validate(rps, _strict(SCHEMA))
    assert "rate(serving_router_requests_total{" in rps["spec"]["triggers"][0]["metadata"]["query"]
    cpu = _rendered(_doc(minReplicas=1, maxReplicas=4, scaleMetric="cpu", scaleTarget=60))
    assert "ScaledObject" not in cpu
    hpa = cpu["HorizontalPodAutoscaler"]
    kubernetes_validate.validate(hpa, "1.29", strict=True)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_without_keda_no_scaled_object_is_rendered() -> None:
    objects = _rendered(_doc(minReplicas=1, maxReplicas=4), RenderSettings())
    assert "ScaledObject" not in objects
    assert (
        objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    )  # KServe's default
    # the warnings speak of that HPA: no adapter metric to set up (they said it read serving_requests_in_flight)
    assert not any("adapter" in w for w in render_warnings(parse(_doc(minReplicas=1, maxReplicas=4))))
    chosen = render_warnings(parse(_doc(minReplicas=1, maxReplicas=4, scaleMetric="concurrency")))
    assert any("serving_requests_in_flight" in w for w in chosen), chosen


def test_a_revision_scaled_to_zero_keeps_traffic_and_its_arm_waits_for_the_activator() -> None:
    isvc = parse(_doc(minReplicas=0, maxReplicas=3))
    first = plan(isvc, None, observe([], {}))
    revision = next(iter(first.run))
    deployment = {
        "metadata": {"labels": {"serving.dev/revision": revision, "serving.dev/component": "predictor"}},
        "spec": {"replicas": 0},
        "status": {},
    }
    observed = observe([deployment], {revision: False})
    assert revision not in observed.ready
    p = plan(isvc, first.state, with_scaled_to_zero(observed, [deployment], isvc))
    assert [(t.revision, t.percent) for t in p.traffic] == [(revision, 100)]
    assert p.status["conditions"][-1]["status"] == "True"
    route = routes_for(isvc, p, lambda name: (), "example.com")  # no ready endpoint
    assert route.activator and route.arms[0].endpoints == ()
    pinned = parse(_doc(minReplicas=1, maxReplicas=3))
    assert with_scaled_to_zero(observed, [deployment], pinned) is observed
