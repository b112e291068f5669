"""Metric-gated canaries in the operator: kopf + the real CanaryController against kmock's KubernetesEmulator.

Real parts: kopf and its watch, the operator's handlers, the kubernetes client, the route ConfigMap, and two
"router replicas" that are real uvicorn/Starlette servers on 127.0.0.1 (port 0) answering /metrics with
`RouterMetrics().exposition()`; the test counts requests into them, the operator scrapes them over HTTP through
the Pod objects (podIP 127.0.0.1, container port `http`), parses them with the real parser and sums them.
Mocked, because no API server runs here: the API server itself (kmock). What the emulator cannot show: the
CRD's schema validation and printer columns (tests/test_canary_crd.py checks the schema with jsonschema),
uid/resourceVersion assignment (set by the test), RBAC (the chart's rules are checked by tests/test_chart.py),
real Pods and kubelet readiness (Deployment and Pod status are patched as the controllers would), and real
routers reading the ConfigMap (tests/test_operator_router.py covers that path).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kopf
import kubernetes
import pytest
import uvicorn
from kopf.testing import KopfRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.control.kubernetes.apply import Cluster
from serving.control.kubernetes.backend import KubernetesBackend, OperatorConfig
from serving.control.kubernetes.documents import apply_kubernetes, read_converted
from serving.control.kubernetes.operator import build_registry
from serving.metrics import EXPOSITION_CONTENT_TYPE, RouterMetrics
from tests.kopf_runner import operator_runner
from tests.support import free_port, wait_until
from tests.test_operator import ISVC, Emulator

CANARY = {
    "apiVersion": "serving.dev/v1alpha1",
    "kind": "Canary",
    "metadata": {"name": "iris-canary", "namespace": "ml", "uid": "canary-uid", "resourceVersion": "1"},
    "spec": {
        "targetRef": {"name": "iris"},
        "analysis": {
            "interval": "300ms",
            "stepWeights": [10, 25, 50],
            "threshold": 2,
            "minRequests": 5,
            "sessionAffinity": {"header": "X-User-Id"},
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                {"name": "request-duration", "thresholdRange": {"max": 500}},
            ],
        },
    },
}


class RouterReplica:
    """One router pod's /metrics: a real HTTP server whose counters the test moves."""

    def __init__(self) -> None:
        self.metrics = RouterMetrics()

        async def metrics(_: Request) -> Response:
            return Response(self.metrics.exposition(), media_type=EXPOSITION_CONTENT_TYPE)

        config = uvicorn.Config(
            Starlette(routes=[Route("/metrics", metrics)]),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> RouterReplica:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout_s=30)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def served(self, revision: str, count: int, code: int, seconds: float = 0.02) -> None:
        for _ in range(count):
            self.metrics.observe_route("iris", "ml", revision, "canary", code, seconds)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[str, Cluster, list[RouterReplica]]]:
    with Emulator() as emulator, RouterReplica() as first, RouterReplica() as second:
        api = Cluster(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=emulator.url)))
        for index, replica in enumerate((first, second)):
            _router_pod(api, f"serving-router-{index}", replica.port)
        api.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {  # another app's pod: never scraped
                    "name": "other",
                    "namespace": "serving-system",
                    "labels": {"app.kubernetes.io/name": "other"},
                },
            }
        )
        yield emulator.url, api, [first, second]


def _router_pod(api: Cluster, name: str, port: int) -> None:
    labels = {
        "app.kubernetes.io/name": "serving",
        "app.kubernetes.io/instance": "serving",
        "app.kubernetes.io/component": "router",
    }
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "serving-system", "labels": labels, "uid": f"uid-{name}"},
            "spec": {
                "containers": [
                    {"name": "router", "image": "serving", "ports": [{"name": "http", "containerPort": port}]}
                ]
            },
        }
    )
    kubernetes.client.CoreV1Api(api.client).patch_namespaced_pod_status(
        name,
        "serving-system",
        {"status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}},
    )


def _operator(url: str, api: Cluster, metrics_port: int = 0) -> KopfRunner:
    config = OperatorConfig(drain_s=0.0, resync_s=2.0, canary_tick_s=0.1, metrics_port=metrics_port)
    return operator_runner(build_registry(KubernetesBackend(api, config), kopf.ConnectionInfo(server=url)))


def _apply_isvc(tmp_path: Path, api: Cluster, model: str) -> None:
    path = tmp_path / f"{model}.yaml"
    path.write_text(ISVC.format(model=model, canary=""))
    if api.get("InferenceService", "ml", "iris") is None:  # the emulator assigns no uid/resourceVersion: ours
        document = read_converted([path])[0]
        api.apply({**document, "metadata": {**document["metadata"], "uid": "uid-1", "resourceVersion": "1"}})
    else:
        apply_kubernetes([path], cluster=api)


def _revisions(api: Cluster) -> dict[str, dict[str, Any]]:
    items = api.list("Deployment", "ml", {"serving.dev/isvc": "iris"})
    return {d["metadata"]["labels"]["serving.dev/revision"]: d for d in items}


def _new_ready_revision(api: Cluster, known: set[str]) -> str:
    wait_until(lambda: set(_revisions(api)) - known, timeout_s=15)
    (name,) = set(_revisions(api)) - known
    kubernetes.client.AppsV1Api(api.client).patch_namespaced_deployment_status(
        f"{name}-predictor", "ml", {"status": {"replicas": 1, "readyReplicas": 1}}
    )
    return name


def _route(api: Cluster) -> dict[str, Any]:
    cm = api.get("ConfigMap", "serving-system", "serving-routes")
    services = json.loads(cm["data"]["routes.json"])["services"] if cm else []
    return services[0] if services else {}


def _weights(api: Cluster) -> dict[str, int]:
    return {a["revision"]: a["percent"] for a in _route(api).get("arms", [])}


def _canary_status(api: Cluster) -> dict[str, Any]:
    return (api.get("Canary", "ml", "iris-canary") or {}).get("status") or {}


def _walk_one_step(api: Cluster, routers: list[RouterReplica], stable: str, canary: str, weight: int) -> None:
    """Wait for `weight` in the route table, then serve a passing interval split over both replicas."""
    wait_until(lambda: _weights(api) == {canary: weight, stable: 100 - weight}, timeout_s=30)
    assert _canary_status(api)["canaryWeight"] == weight
    routers[0].served(canary, 3, 200)
    routers[1].served(canary, 3, 200)  # 3 + 3 >= minRequests 5 only because the replicas are summed


def test_canary_walks_the_steps_resumes_after_a_restart_and_rolls_a_bad_one_back(
    world, tmp_path: Path
) -> None:
    url, api, routers = world
    metrics_port = free_port()
    with _operator(url, api, metrics_port) as runner:
        _apply_isvc(tmp_path, api, "v1")
        stable = _new_ready_revision(api, set())
        wait_until(lambda: _weights(api) == {stable: 100}, timeout_s=30)
        kubernetes.client.CustomObjectsApi(api.client).create_namespaced_custom_object(
            "serving.dev", "v1alpha1", "ml", "canaries", CANARY
        )

        _apply_isvc(tmp_path, api, "v2")
        canary = _new_ready_revision(api, {stable})
        _walk_one_step(api, routers, stable, canary, 10)
        assert _route(api)["affinityHeader"] == "x-user-id"  # the CanaryRouting reached the ConfigMap
        wait_until(lambda: _canary_status(api).get("canaryWeight") == 25, timeout_s=30)
        exposition = httpx.get(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=5
        ).text  # the operator's own
        assert 'serving_canary_weight{isvc="iris",namespace="ml"} 25.0' in exposition
        assert (
            'serving_canary_transitions_total{isvc="iris",namespace="ml",phase="Progressing"} 2.0'
            in exposition
        )
    assert runner.exception is None

    # A new operator process: it resumes at 25 % from the Canary's status (no return to step 1), and the requests
    # the routers counted before it started are its baseline: with no fresh traffic, the first check holds.
    checks = _canary_status(api)["iterations"]
    with _operator(url, api) as runner:
        wait_until(lambda: _canary_status(api)["iterations"] > checks, timeout_s=30)
        assert _canary_status(api)["message"].startswith("holding at 25%: 0 canary requests")
        _walk_one_step(api, routers, stable, canary, 25)
        _walk_one_step(api, routers, stable, canary, 50)
        wait_until(lambda: _canary_status(api).get("phase") == "Succeeded", timeout_s=30)
        assert _weights(api) == {canary: 100}
        status = _canary_status(api)
        assert [h["canaryWeight"] for h in status["history"]] == [10, 25, 50, 100, 100]
        assert status["conditions"][0]["type"] == "Promoted" and status["conditions"][0]["status"] == "True"
        assert status["lastTransitionTime"] == status["history"][-1]["time"]
        predictor = api.get("InferenceService", "ml", "iris")["status"]["components"]["predictor"]
        assert predictor["latestRolledoutRevision"] == canary

        # A canary answering 5xx: two failed checks (threshold 2) -> weight 0, the stable one keeps 100 %.
        _apply_isvc(tmp_path, api, "v3")
        bad = _new_ready_revision(api, {stable, canary})
        wait_until(lambda: _weights(api) == {bad: 10, canary: 90}, timeout_s=30)
        for failed in (1, 2):
            routers[failed - 1].served(bad, 6, 503)
            wait_until(lambda failed=failed: _canary_status(api).get("failedChecks") == failed, timeout_s=30)
        wait_until(lambda: _weights(api) == {canary: 100, bad: 0}, timeout_s=30)
        status = _canary_status(api)
        assert status["phase"] == "Failed" and status["canaryWeight"] == 0 and status["revision"] == bad
        assert "request-success-rate 0 outside >= 99%" in status["message"]
        assert status["conditions"][0]["status"] == "False" and status["conditions"][0]["reason"] == "Failed"
        predictor = api.get("InferenceService", "ml", "iris")["status"]["components"]["predictor"]
        assert predictor["latestRolledoutRevision"] == canary  # the bad revision is kept, at 0 %
    assert runner.exception is None
