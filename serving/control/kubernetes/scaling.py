"""The autoscaler of one component on Kubernetes, from the same knobs as `serving up`'s autoscaler.

- concurrency / rps with KEDA enabled (`keda_prometheus_url` set; chart `keda.enabled`): a KEDA ScaledObject
  whose Prometheus trigger reads the router's own per-revision series — requests in flight (or their rate)
  plus the requests its activator holds — so `minReplicas: 0` works: KEDA wakes the Deployment when a request
  waits in the router, the router sends it once the operator publishes the ready endpoint.
- otherwise: an HPA when minReplicas != maxReplicas — cpu/memory as Resource metrics (KServe's raw mode),
  concurrency/rps as Pods metrics for a prometheus-adapter. An HPA cannot go below 1.
Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

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
    knobs = knobs_from(spec, isvc.metadata.annotations, f"spec.{component}")
    scales = knobs.max_replicas > knobs.min_replicas or knobs.min_replicas == 0
    if keda_prometheus_url and knobs.metric in ("concurrency", "rps") and scales:
        query = router_query(knobs.metric, isvc.metadata.name, isvc.metadata.namespace, revision)
        return scaled_object(knobs, target_name, metadata, query, keda_prometheus_url)
    if knobs.max_replicas and knobs.max_replicas != spec.replicas:
        if not _metric_given(spec, isvc.metadata.annotations):  # KServe's raw-mode HPA default: cpu at 80 %
            knobs = replace(knobs, metric="cpu", target=float(spec.scale_target or 80))
        return hpa(knobs, spec.replicas, target_name, metadata)
    return None


def _metric_given(spec: ComponentSpec, annotations: dict[str, str]) -> bool:
    return spec.scale_metric is not None or bool(spec.auto_scaling) or PREFIX + "metric" in annotations


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
        name = (
            "serving_requests_in_flight" if knobs.metric == "concurrency" else "serving_requests_per_second"
        )
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
