"""The autoscaler of one component on Kubernetes, from the same knobs as `serving up`'s autoscaler.

- concurrency / rps with KEDA enabled (`keda_prometheus_url` set; chart `keda.enabled`): a KEDA ScaledObject
  whose Prometheus trigger reads the router's own per-revision series — requests in flight (or their rate)
  plus the requests its activator holds — so `minReplicas: 0` works: KEDA wakes the Deployment when a request
  waits in the router, the router sends it once the operator publishes the ready endpoint.
- otherwise: an HPA when maxReplicas is above minReplicas — cpu/memory as Resource metrics (KServe's raw mode),
  concurrency/rps as Pods metrics for a prometheus-adapter. An HPA cannot go below 1.
- `serving.kserve.io/autoscalerClass`: hpa never gets a ScaledObject; keda gets one as above (else an HPA,
  warned); none and external get neither (external: the Deployment's replicas are left alone once it exists).
`render_warnings` says what does not make it into these objects (e.g. minReplicas 0 without KEDA).
Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from serving.autoscale import annotations as scaling_annotations
from serving.autoscale.annotations import FIXED_CLASSES
from serving.autoscale.knobs import PREFIX, Knobs, knobs_from
from serving.spec import ComponentSpec, InferenceService

KEDA_API_VERSION = "keda.sh/v1alpha1"
KEDA_DEFAULT_MAX = 100  # KEDA's maxReplicaCount default, used when maxReplicas is not set
KEDA_POLLING_S = 5  # how often KEDA asks Prometheus: a held request waits about this long before the wake-up


def scaler(
    isvc: InferenceService,
    component: str,
    target_name: str,
    metadata: dict[str, Any],
    revision: str,
    keda_prometheus_url: str = "",
) -> dict[str, Any] | None:
    """The ScaledObject or HPA for `component` (its Deployment is `target_name`), or None for a fixed count."""
    spec: ComponentSpec | None = isvc.spec.predictor if component == "predictor" else isvc.spec.transformer
    if spec is None:
        return None
    knobs = _rendered_knobs(isvc, spec, keda_prometheus_url, f"spec.{component}")
    if _keda(knobs, keda_prometheus_url):
        query = router_query(knobs.metric, isvc.metadata.name, isvc.metadata.namespace, revision)
        return scaled_object(knobs, target_name, metadata, query, keda_prometheus_url)
    if knobs.autoscaler not in FIXED_CLASSES and knobs.max_replicas > max(knobs.min_replicas, 1):
        return hpa(knobs, max(knobs.min_replicas, 1), target_name, metadata)
    return None


def _rendered_knobs(
    isvc: InferenceService, spec: ComponentSpec, keda_prometheus_url: str, where: str = "spec.predictor"
) -> Knobs:
    """The scaling settings as rendered: an HPA whose metric nobody chose scales on cpu at 80 % (KServe's
    raw-mode default), so the warnings speak of what the objects do."""
    knobs = knobs_from(spec, isvc.metadata.annotations, where)
    if not _keda(knobs, keda_prometheus_url) and not _metric_given(spec, isvc.metadata.annotations):
        knobs = replace(knobs, metric="cpu", target=float(spec.scale_target or _utilization(isvc)))
    return knobs


def _keda(knobs: Knobs, keda_prometheus_url: str) -> bool:
    """A KEDA ScaledObject on the router's series: concurrency/rps of a Knative-class (or keda) service."""
    return (
        bool(keda_prometheus_url)
        and knobs.autoscaler in ("kpa", "keda")
        and knobs.metric in ("concurrency", "rps")
        and knobs.scales
    )


def replicas_left_alone(isvc: InferenceService) -> bool:
    """`serving.kserve.io/autoscalerClass: external`: after creation the Deployment's replicas are not ours."""
    return knobs_from(isvc.spec.predictor, isvc.metadata.annotations).autoscaler == "external"


def _metric_given(spec: ComponentSpec, annotations: dict[str, str]) -> bool:
    return (
        spec.scale_metric is not None
        or bool(spec.auto_scaling)
        or PREFIX + "metric" in annotations
        or scaling_annotations.annotated_metric(annotations) is not None
        or scaling_annotations.autoscaler_class(annotations) == "hpa"
    )


def _utilization(isvc: InferenceService) -> float:
    value = isvc.metadata.annotations.get(scaling_annotations.UTILIZATION_KEY)
    return float(value.strip().removesuffix("%")) if value else 80.0


def render_warnings(isvc: InferenceService, keda_prometheus_url: str = "") -> list[str]:
    """What the predictor's scaling settings do not become in the rendered objects, said on stderr by
    `serving render` (nothing silently dropped)."""
    predictor, annotations = isvc.spec.predictor, isvc.metadata.annotations
    knobs = knobs_from(predictor, annotations)
    keda, out = _keda(knobs, keda_prometheus_url), scaling_annotations.extra_metrics(predictor, knobs)
    out += scaling_annotations.class_warnings(annotations, predictor, knobs)
    fixed = max(knobs.min_replicas, 1)
    rendered = _rendered_knobs(isvc, predictor, keda_prometheus_url).metric  # cpu when none was chosen
    if rendered in ("concurrency", "rps") and not keda and knobs.max_replicas > fixed:
        metric = ADAPTER_METRICS[knobs.metric]
        written = predictor.scale_metric is not None or PREFIX + "metric" in annotations
        said = "spec.predictor.scaleMetric" if predictor.scale_metric is not None else f"{PREFIX}metric"
        out.append(
            f"{said if written else 'the default metric'} {knobs.metric}: the HPA reads the Pods metric {metric}, "
            "which only a Prometheus "
            "adapter rule makes (README: Kubernetes); without one it never scales: add the rule, or pass "
            "--keda-prometheus-url (chart keda.enabled) for KEDA on the router's series"
        )
    if knobs.min_replicas == 0 and not keda:
        how = (
            "pass --keda-prometheus-url (chart keda.enabled) for scale to zero through the router's activator"
            if knobs.metric in ("concurrency", "rps")
            else f"only concurrency/rps scale to zero (KEDA on the router's series); {knobs.metric} cannot"
        )
        annotated = next((k for k in (PREFIX + "min-scale", PREFIX + "minScale") if k in annotations), None)
        named = f"metadata.annotations.{annotated}: 0" if annotated else "spec.predictor.minReplicas: 0"
        out.append(
            f"{named} is rendered as replicas: 1 (a Deployment or an HPA does not scale to zero); {how}"
        )
    if knobs.autoscaler == "keda" and not keda:
        why = (
            "needs --keda-prometheus-url (chart keda.enabled)"
            if not keda_prometheus_url
            else f"reads the router's concurrency/rps here, not {knobs.metric}"
        )
        out.append(
            f"metadata.annotations.{scaling_annotations.CLASS_KEY}: keda {why}; rendered "
            + ("an HPA instead" if knobs.max_replicas > fixed else f"a fixed {fixed} replica(s) instead")
        )
    asked = scaling_annotations.scale_asked(predictor, annotations)
    if knobs.autoscaler in ("kpa", "keda") and not keda and not knobs.max_replicas and asked:
        out.append(
            f"spec.predictor.maxReplicas: unset, so {', '.join(asked)} renders no autoscaler (an HPA needs a "
            f"maximum; KServe's raw mode pins it to minReplicas): the Deployment runs {fixed}; set maxReplicas, "
            "or pass --keda-prometheus-url for a KEDA ScaledObject (at most "
            f"{KEDA_DEFAULT_MAX} replicas)"
        )
    if not keda:  # an HPA (or a fixed count) has neither a first size nor a zero to linger before
        for key in ("initial-scale", "scale-to-zero-pod-retention-period"):
            if PREFIX + key in annotations:
                out.append(
                    f"metadata.annotations.{PREFIX}{key}: serving up and KEDA only; the rendered Deployment "
                    "starts at minReplicas and an HPA never goes to zero"
                )
    if PREFIX + "activation-scale" in annotations:
        out.append(
            f"metadata.annotations.{PREFIX}activation-scale: serving up only; on Kubernetes a revision wakes "
            "from zero with 1 replica (KEDA), then scales on load"
        )
    return out


def router_query(metric: str, isvc: str, namespace: str, revision: str) -> str:
    """PromQL over the router's series for one revision; held requests count, so zero can wake up."""
    where = f'namespace="{namespace}",revision="{revision}"'
    held = f'(sum(serving_activator_queue_depth{{isvc="{isvc}",revision="{revision}"}}) or vector(0))'
    if metric == "concurrency":
        return f"(sum(serving_router_requests_in_flight{{{where}}}) or vector(0)) + {held}"
    return f"(sum(rate(serving_router_requests_total{{{where}}}[1m])) or vector(0)) + {held}"


def scaled_object(
    knobs: Knobs, target_name: str, metadata: dict[str, Any], query: str, prometheus_url: str
) -> dict[str, Any]:
    """KEDA's ScaledObject: Knative's window is the cool-down before zero, scale-down-delay the HPA's
    stabilization window; the threshold is the per-replica target x utilization (as the KPA divides by)."""
    per_replica = knobs.target * knobs.utilization
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target_name},
            "minReplicaCount": knobs.min_replicas,
            "maxReplicaCount": knobs.max_replicas or KEDA_DEFAULT_MAX,
            "pollingInterval": KEDA_POLLING_S,
            "cooldownPeriod": round(knobs.stable_window_s + knobs.scale_to_zero_retention_s),
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": round(
                                knobs.scale_down_delay_s or knobs.stable_window_s
                            )
                        }
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": query,
                        "threshold": f"{per_replica:g}",
                        "activationThreshold": "0",
                    },
                }
            ],
        },
    }


# The Pods metrics an HPA on concurrency / rps reads: a Prometheus adapter makes them from the model server's
# serving_requests_in_flight gauge and the rate of its serving_requests_total (README: Kubernetes)
ADAPTER_METRICS = {"concurrency": "serving_requests_in_flight", "rps": "serving_requests_per_second"}


def hpa(knobs: Knobs, min_replicas: int, target_name: str, metadata: dict[str, Any]) -> dict[str, Any]:
    if knobs.metric in ("cpu", "memory"):
        measure = {
            "type": "Resource",
            "resource": {
                "name": knobs.metric,
                "target": {"type": "Utilization", "averageUtilization": round(knobs.target)},
            },
        }
    else:  # served by prometheus-adapter from the model server's metrics
        name = ADAPTER_METRICS[knobs.metric]
        measure = {
            "type": "Pods",
            "pods": {
                "metric": {"name": name},
                "target": {"type": "AverageValue", "averageValue": f"{knobs.target:g}"},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target_name},
            "minReplicas": min_replicas,
            "maxReplicas": knobs.max_replicas,
            "metrics": [measure],
        },
    }
