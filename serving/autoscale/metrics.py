"""Prometheus series of the autoscaler and the activator, labelled `{isvc, revision}`.

They live in the router's registry (`RouterMetrics.registry`) so `serving up`'s /metrics shows them next to
the router's own series, and so KEDA's Prometheus trigger on Kubernetes can read the activator's queue.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram

WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
LABELS = ("isvc", "revision")


class ScalingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.desired = Gauge(
            "serving_autoscaler_desired_replicas", "Replicas the autoscaler wants.", LABELS, registry=r
        )
        self.actual = Gauge(
            "serving_autoscaler_actual_replicas", "Replicas running (ready or starting).", LABELS, registry=r
        )
        self.panic = Gauge(
            "serving_autoscaler_panic", "1 while the autoscaler is in panic mode.", LABELS, registry=r
        )
        self.queue_depth = Gauge(
            "serving_activator_queue_depth",
            "Requests held while a revision scales up from zero.",
            LABELS,
            registry=r,
        )
        self.wait = Histogram(
            "serving_activator_wait_seconds",
            "How long held requests waited for a replica.",
            LABELS,
            buckets=WAIT_BUCKETS,
            registry=r,
        )

    def decided(self, isvc: str, revision: str, desired: int, actual: int, panic: bool) -> None:
        self.desired.labels(isvc, revision).set(desired)
        self.actual.labels(isvc, revision).set(actual)
        self.panic.labels(isvc, revision).set(1 if panic else 0)

    def forget(self, isvc: str, revision: str) -> None:
        """A retired revision's series go (label sets do not pile up across rollouts)."""
        for metric in (self.desired, self.actual, self.panic, self.queue_depth, self.wait):
            try:
                metric.remove(isvc, revision)
            except KeyError:
                pass
