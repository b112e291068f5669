"""Prometheus metrics: `Metrics` (model server) and `RouterMetrics` (router), each owning its registry.

No import-time globals: a registry is passed in or made per object. Label values come only from what
this process serves (model names from the repository, revisions from the route table), never from a
request's URL, so unknown names cannot grow the series count.

Several worker processes (`serving serve --workers N`): `serving.server` sets PROMETHEUS_MULTIPROC_DIR
to a fresh directory before the workers start; prometheus-client then keeps values in per-process files
and `/metrics` merges them with `MultiProcessCollector`. One process (the default, and every router): the
values are plain numbers owned by the event loop (`serving.loop_metrics`), no lock per update.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from serving.loop_metrics import LoopCounter, LoopGauge, LoopHistogram, counter, gauge, histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# The text format every /metrics of ours answers with (model server, router, federation), named once.
EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_MODEL = "_unknown_"  # the one label value for requests naming no model of this server
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ModelMetrics:
    """One model's labelled children, bound once so the hot path does no label lookups."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self._metrics, self.model, self.version = metrics, model, version
        m = metrics
        self._codes: dict[tuple[str, int], Any] = {}
        self._durations = {p: m.request_seconds.labels(model, version, p) for p in ("v1", "v2")}
        self._inference = m.inference_seconds.labels(model, version)
        self._batch_size = m.batch_size.labels(model, version)
        self._batch_wait = m.batch_wait_seconds.labels(model, version)
        self._queue_depth = m.queue_depth.labels(model, version)
        self.in_flight = m.in_flight.labels(model, version)
        self.waiting = m.concurrency_queue_depth.labels(model, version)
        self.preprocess = m.preprocess_seconds.labels(model)
        self.predict = m.predict_seconds.labels(model)
        self.postprocess = m.postprocess_seconds.labels(model)

    def request(self, protocol: str, code: int, seconds: float) -> None:
        counter = self._codes.get((protocol, code))
        if counter is None:
            counter = self._codes[(protocol, code)] = self._metrics.requests.labels(
                self.model, self.version, protocol, str(code)
            )
        counter.inc()
        duration = self._durations.get(protocol) or self._metrics.request_seconds.labels(
            self.model, self.version, protocol
        )
        duration.observe(seconds)

    def inference(self, seconds: float) -> None:
        self._inference.observe(seconds)

    def batch_formed(self, rows: int, waits_s: Sequence[float]) -> None:
        self._batch_size.observe(rows)
        for wait in waits_s:
            self._batch_wait.observe(wait)

    def queue_depth(self, depth: int) -> None:
        self._queue_depth.set(depth)

    def rejected(self, reason: str) -> None:
        self._metrics.rejected(reason)


class Metrics:
    """The model server's metrics (names and labels documented in README, section batching-metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.multiprocess = shared = bool(os.environ.get(MULTIPROC_ENV))
        mv = ["model", "version"]
        self.requests = counter(
            "serving_requests", "Inference requests by outcome.", [*mv, "protocol", "code"], r, shared
        )
        self.request_seconds = histogram(
            "serving_request_duration_seconds",
            "Inference request latency, decode to encode.",
            [*mv, "protocol"],
            LATENCY_BUCKETS,
            r,
            shared,
        )
        self.inference_seconds = histogram(
            "serving_inference_duration_seconds",
            "Time of one model call (a whole batch when batching).",
            mv,
            LATENCY_BUCKETS,
            r,
            shared,
        )
        self.batch_size = histogram(
            "serving_batch_size", "Rows per batch the batcher formed.", mv, BATCH_BUCKETS, r, shared
        )
        self.batch_wait_seconds = histogram(
            "serving_batch_wait_seconds",
            "Time a request waited in the batch queue.",
            mv,
            LATENCY_BUCKETS,
            r,
            shared,
        )
        self.queue_depth = gauge(
            "serving_batch_queue_depth", "Requests waiting in the batch queue.", mv, r, shared, "livesum"
        )
        self.concurrency_queue_depth = gauge(
            "serving_concurrency_queue_depth",
            "Requests waiting for a slot under --max-concurrency (containerConcurrency).",
            mv,
            r,
            shared,
            "livesum",
        )
        self.in_flight = gauge(
            "serving_requests_in_flight",
            "Requests admitted and not yet answered by the model.",
            mv,
            r,
            shared,
            "livesum",
        )
        self.rejections = counter(
            "serving_rejected", "Requests refused before reaching the model.", ["reason"], r, shared
        )
        self.model_ready = gauge(
            "serving_model_ready",
            "1 when the model is ready to serve (in every worker).",
            ["model"],
            r,
            shared,
            "livemin",
        )
        self.model_load_seconds = gauge(
            "serving_model_load_seconds", "How long the model took to load.", ["model"], r, shared, "livemax"
        )

        # KServe's names, so dashboards built for KServe model servers keep working.
        def kserve(name: str, doc: str) -> Any:
            return histogram(name, doc, ["model_name"], LATENCY_BUCKETS, r, shared)

        self.preprocess_seconds = kserve("request_preprocess_seconds", "Decode time.")
        self.predict_seconds = kserve("request_predict_seconds", "Model (and batch queue) time.")
        self.postprocess_seconds = kserve("request_postprocess_seconds", "Encode time.")
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        self._unknown: dict[str, Any] = {}
        self._ready_held: dict[str, bool] | None = None  # readiness not published yet (`hold_readiness`)

    def model(self, name: str, version: str) -> ModelMetrics:
        """Bound children for a model this server holds (never call with a name from a URL)."""
        bound = self._models.get((name, version))
        if bound is None:
            bound = self._models[(name, version)] = ModelMetrics(self, name, version)
        return bound

    def unknown_model(self, protocol: str, code: int, seconds: float) -> None:
        """A request for a model this server does not hold: one fixed label value, whatever the URL said."""
        self.requests.labels(UNKNOWN_MODEL, "", protocol, str(code)).inc()
        self.request_seconds.labels(UNKNOWN_MODEL, "", protocol).observe(seconds)

    def rejected(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def model_state_changed(self, model: Any) -> None:
        """Repository callback (a `repository.Model`; not imported, to keep imports one-way)."""
        if self._ready_held is not None:
            self._ready_held[model.name] = model.ready
        else:
            self.model_ready.labels(model.name).set(1 if model.ready else 0)
        if model.ready:
            self.model_load_seconds.labels(model.name).set(model.load_seconds)

    def hold_readiness(self) -> None:
        """This worker loads its models before it takes a connection (`--workers N`): until `publish_readiness`
        its `serving_model_ready` is not written at all. The gauge is the minimum over the live workers; a
        worker still loading (at start, or a replacement for one uvicorn killed) serves no request, so its 0
        would have said "not ready" of a server answering every request from its ready workers."""
        self._ready_held = {}

    def publish_readiness(self) -> None:
        """The worker takes connections from now: its models' readiness counts."""
        held, self._ready_held = self._ready_held or {}, None
        for name, ready in held.items():
            self.model_ready.labels(name).set(1 if ready else 0)

    def exposition(self) -> bytes:
        if self.multiprocess:
            forget_dead_workers(os.environ[MULTIPROC_ENV])
            registry = CollectorRegistry()
            WrittenFilesCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class WrittenFilesCollector(MultiProcessCollector):
    """`MultiProcessCollector` over the workers' files that hold their header.

    prometheus-client creates a worker's file empty, then sizes it; a scrape reading it in between failed as a
    whole (struct.error: a 500 on /metrics while another worker starts or first counts something). An empty
    file holds no value yet: leaving it out loses nothing."""

    def collect(self) -> Any:
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _has_header(f)]
        return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call]


def _has_header(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:  # a dead worker's live gauges, removed since the listing
        return False


def forget_dead_workers(directory: str) -> None:
    """Drop the live-gauge files of worker processes that are gone.

    uvicorn replaces a worker that dies or stops answering its health check; prometheus-client keeps each
    process's `live*` gauge values in a file until told the process is dead, and nothing tells it. A replaced
    worker's file would go on counting: its last `serving_model_ready` 0 (`livemin`) pinning the whole server at
    not ready, its requests in flight (`livesum`) never finishing. Counters and histograms keep their files:
    what a dead worker served stays counted."""
    for name in os.listdir(directory):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = name[:-3].rsplit("_", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RouterMetrics:
    """The router's metrics per `{isvc, namespace, revision, arm}` (arm: stable or canary).

    `serving.router.app.Router` updates them per proxied request through each arm's `series(...)` (started
    before forwarding, finished after); `route_in_flight` and `observe_route` are the same updates by labels.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        labels = ["isvc", "namespace", "revision", "arm"]
        # One process, every update on the event loop: plain numbers, exported at scrape time.
        self.requests = LoopCounter(
            "serving_router_requests", "Requests proxied, by upstream status code.", [*labels, "code"]
        )
        self.errors = LoopCounter(
            "serving_router_errors", "Proxied requests answered with status >= 400.", [*labels, "code"]
        )
        self.duration = LoopHistogram(
            "serving_router_request_duration_seconds", "Latency through the router.", labels, LATENCY_BUCKETS
        )
        self.in_flight = LoopGauge("serving_router_requests_in_flight", "Requests being proxied now.", labels)
        for family in (self.requests, self.errors, self.duration, self.in_flight):
            r.register(family)
        self._series: dict[tuple[str, str, str, str], RouteSeries] = {}

    def series(self, isvc: str, namespace: str, revision: str, arm: str) -> RouteSeries:
        """One arm's children, bound once: what the router updates per request."""
        key = (isvc, namespace, revision, arm)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = RouteSeries(self, key)
        return found

    def observe_route(
        self, isvc: str, namespace: str, revision: str, arm: str, code: int, seconds: float
    ) -> None:
        """One finished request: count it by status code and observe its latency."""
        self.series(isvc, namespace, revision, arm).observe(code, seconds)

    def unknown_service(self, namespace: str) -> None:
        """A request naming no InferenceService (404): counted under isvc `_unknown_`, as the model server counts
        one naming no model, so a client calling a wrong host or name shows on the dashboard."""
        key = (UNKNOWN_MODEL, namespace, "", "", "404")
        self.requests.labels(*key).inc()
        self.errors.labels(*key).inc()

    def route_in_flight(self, isvc: str, namespace: str, revision: str, arm: str, delta: int) -> None:
        """+1 when a request is forwarded, -1 when it finished."""
        self.series(isvc, namespace, revision, arm).in_flight.inc(delta)

    def forget_revision(self, isvc: str, namespace: str, revision: str) -> None:
        """Drop a retired revision's series so label sets do not pile up across rollouts."""
        for metric in (self.requests, self.errors, self.duration, self.in_flight):
            for labels in metric.label_sets():
                if labels[:3] == (isvc, namespace, revision):
                    metric.remove(*labels)
        self._series = {k: v for k, v in self._series.items() if k[:3] != (isvc, namespace, revision)}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RouteSeries:
    """`RouterMetrics` for one arm, its children bound once: a routed request updates them without label lookups."""

    __slots__ = ("_metrics", "_key", "_codes", "_duration", "in_flight")

    def __init__(self, metrics: RouterMetrics, key: tuple[str, str, str, str]) -> None:
        self._metrics, self._key = metrics, key
        self._codes: dict[int, Any] = {}
        self._duration = metrics.duration.labels(*key)
        self.in_flight = metrics.in_flight.labels(*key)

    def started(self) -> None:
        self.in_flight.inc()

    def withdrawn(self) -> None:
        """A started request taken back before it reached a model."""
        self.in_flight.dec()

    def finished(self, code: int, seconds: float) -> None:
        self.in_flight.dec()
        self.observe(code, seconds)

    def observe(self, code: int, seconds: float) -> None:
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = self._metrics.requests.labels(*self._key, str(code))
        counter.inc()
        if code >= 400:
            self._metrics.errors.labels(*self._key, str(code)).inc()
        self._duration.observe(seconds)
