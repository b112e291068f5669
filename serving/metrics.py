"""Prometheus metrics: one `Metrics` object owning its own registry (no import-time globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "serving_requests", "Inference requests by outcome.", ["model", "protocol", "code"], registry=r
        )
        self.request_seconds = Histogram(
            "serving_request_duration_seconds", "Inference request latency, decode to encode.",
            ["model", "protocol"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.inference_seconds = Histogram(
            "serving_inference_duration_seconds", "Time inside the model's predict call.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.rejections = Counter("serving_rejected", "Requests refused before reaching the model.", ["reason"], registry=r)
        self.model_ready = Gauge("serving_model_ready", "1 when the model is ready to serve.", ["model"], registry=r)
        self.model_load_seconds = Gauge("serving_model_load_seconds", "How long the model took to load.", ["model"], registry=r)

    def observe_request(self, model: str, protocol: str, code: int, seconds: float) -> None:
        self.requests.labels(model, protocol, str(code)).inc()
        self.request_seconds.labels(model, protocol).observe(seconds)

    def observe_inference(self, model: str, seconds: float) -> None:
        self.inference_seconds.labels(model).observe(seconds)

    def rejected(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def model_state_changed(self, model) -> None:  # noqa: ANN001 - repository.Model, avoided to keep imports one-way
        self.model_ready.labels(model.name).set(1 if model.ready else 0)
        if model.ready:
            self.model_load_seconds.labels(model.name).set(model.load_seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
