"""The operator for real (kopf, its handlers, the kubernetes client) against kmock's KubernetesEmulator.

The emulator is an in-memory API server over real HTTP on 127.0.0.1. What it cannot show, and so what
these tests do not claim: admission (no CRD schema validation, no defaulting, no uid/resourceVersion
assignment: the test sets uid and resourceVersion itself), garbage collection through ownerReferences (the operator's
own delete handler removes children here), server-side apply and strategic merge (every patch is a JSON
merge patch, which is what the operator sends), label-selector filtering (the operator filters again),
and real Pods: readiness is simulated by patching Deployment status as the kubelet/controller would.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pytest
from kmock import KubernetesEmulator, ResourceInfo, Server

from serving.control.kubernetes.apply import Cluster
from serving.control.kubernetes.backend import RETIRED_AT, KubernetesBackend, OperatorConfig
from serving.control.kubernetes.documents import apply_kubernetes
from serving.control.kubernetes.operator import build_registry
from serving.router.configmap_source import ConfigMapSource
from tests.kopf_runner import operator_runner
from tests.support import wait_until

VERBS = ["list", "watch", "get", "patch", "create", "delete"]
RESOURCES = {
    "serving.dev/v1beta1/inferenceservices": ("InferenceService", True, ["status"]),
    "apps/v1/deployments": ("Deployment", True, ["status"]),
    "v1/services": ("Service", True, []),
    "v1/configmaps": ("ConfigMap", True, []),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, []),
    # Canary policies: the Canary objects and the router pods whose /metrics the operator reads.
    "serving.dev/v1alpha1/canaries": ("Canary", True, ["status"]),
    "v1/pods": ("Pod", True, ["status"]),
    # Storage credentials (a predictor's ServiceAccount and its Secrets) and runtime selection.
    "v1/serviceaccounts": ("ServiceAccount", True, []),
    "v1/secrets": ("Secret", True, []),
    "serving.dev/v1alpha1/servingruntimes": ("ServingRuntime", True, ["status"]),
    "serving.dev/v1alpha1/clusterservingruntimes": ("ClusterServingRuntime", False, ["status"]),
    # kopf's own needs: CRD and namespace discovery, events.
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, []),
    "v1/namespaces": ("Namespace", False, []),
    "v1/events": ("Event", True, []),
}
ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  namespace: ml
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 3
    {canary}
    model:
      modelFormat:
        name: sklearn
      storageUri: pvc://models/{model}
"""


class ShortMemoryEmulator(KubernetesEmulator):
    """kmock's emulator keeping only the requests it may still match: it matches each request by scanning its
    whole request history (O(n) a request, O(n^2) a test: 35-40 % of the CPU of the operator canary walk, even
    with a history cut to its last 100-200). No test here asserts on that history. A request is matched inside
    its own `_handle`, which kmock enters right after recording it (no await in between): so the requests still
    in a `_handle` (watches, and any waiting for the emulator's lock) are kept, with the last KEEP others."""

    KEEP = 10

    async def _handle(self, request: Any) -> Any:
        handling: dict[int, Any] = self.__dict__.setdefault("_handling", {})
        handling[id(request)] = request
        if len(self._requests) > 2 * self.KEEP:
            older, recent = self._requests[: -self.KEEP], self._requests[-self.KEEP :]
            self._requests[:] = [r for r in older if id(r) in handling] + recent
        try:
            return await super()._handle(request)
        finally:
            del handling[id(request)]


class Emulator:
    """kmock's KubernetesEmulator on its own loop and thread, so the tests and kopf can use blocking clients."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.url = ""

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        async with ShortMemoryEmulator() as kmock, Server(kmock) as server:
            for key, (kind, namespaced, sub) in RESOURCES.items():
                kmock.resources[key] = ResourceInfo(
                    kind=kind, namespaced=namespaced, verbs=VERBS, subresources=sub
                )
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def _cancel_handlers(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            if task is not self._main_task:
                task.cancel()

    def __enter__(self) -> Emulator:
        self._thread.start()
        assert self._ready.wait(10), "emulator did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(2)
        if self._thread.is_alive():
            # The server's close waits for its open handlers; a watch a client never closed (seen once in a
            # full run: 10 s here) is cancelled instead of waited for.
            self.loop.call_soon_threadsafe(self._cancel_handlers)
            self._thread.join(10)


@pytest.fixture()
def cluster():
    with Emulator() as emulator:
        client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=emulator.url))
        yield emulator, Cluster(client)


def _write(tmp_path: Path, model: str, canary: int | None) -> Path:
    path = tmp_path / f"{model}-{canary}.yaml"
    path.write_text(
        ISVC.format(model=model, canary=f"canaryTrafficPercent: {canary}" if canary is not None else "")
    )
    return path


def _deployments(cluster: Cluster) -> dict[str, dict[str, Any]]:
    items = cluster.list("Deployment", "ml", {"serving.dev/isvc": "iris"})
    return {d["metadata"]["labels"]["serving.dev/revision"]: d for d in items}


def _mark_ready(cluster: Cluster, name: str) -> None:
    apps = kubernetes.client.AppsV1Api(cluster.client)
    apps.patch_namespaced_deployment_status(name, "ml", {"status": {"replicas": 1, "readyReplicas": 1}})


def _routes(cluster: Cluster) -> dict[str, Any]:
    cm = cluster.get("ConfigMap", "serving-system", "serving-routes")
    return json.loads(cm["data"]["routes.json"]) if cm else {}


def _arms(cluster: Cluster) -> dict[str, tuple[int, str, bool]]:
    services = _routes(cluster).get("services", [])
    return {
        a["revision"]: (a["percent"], a["tag"], bool(a["endpoints"])) for s in services for a in s["arms"]
    }


def _status(cluster: Cluster) -> dict[str, Any]:
    return (cluster.get("InferenceService", "ml", "iris") or {}).get("status") or {}


def _ready(status: dict[str, Any]) -> str | None:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"), None)


def test_operator_rollout_lifecycle(cluster, tmp_path: Path) -> None:
    emulator, api = cluster
    config = OperatorConfig(drain_s=0.0, resync_s=0.5)
    backend = KubernetesBackend(api, config)
    registry = build_registry(backend, kopf.ConnectionInfo(server=emulator.url))
    with operator_runner(registry) as runner:
        # 1. apply (the uid is ours to set: the emulator assigns none) -> Deployment, Service, HPA
        v1 = _write(tmp_path, "v1", None)
        api.apply(
            {
                **_converted(v1),
                "metadata": {"name": "iris", "namespace": "ml", "uid": "uid-1", "resourceVersion": "1"},
            }
        )
        wait_until(lambda: len(_deployments(api)) == 1, timeout_s=15)
        ((first, deployment),) = _deployments(api).items()
        # The operator applies the Deployment, then its Service and HPA: wait for all three to exist.
        wait_until(
            lambda: all(
                api.get(kind, "ml", f"{first}-predictor") is not None
                for kind in ("Service", "HorizontalPodAutoscaler")
            ),
            timeout_s=15,
        )
        assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["initContainers"][0]["args"][:4] == ["storage", "pull", "pvc://models/v1", "/mnt/models"]
        assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert (
            api.get("Service", "ml", f"{first}-predictor")["spec"]["selector"]["serving.dev/revision"]
            == first
        )
        hpa = api.get("HorizontalPodAutoscaler", "ml", f"{first}-predictor")
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
        wait_until(lambda: _ready(_status(api)) == "False", timeout_s=5)  # not ready -> no traffic yet
        # its requests wait in the router's activator for the loading revision (no endpoint yet)
        wait_until(lambda: _arms(api) == {first: (100, "latest", False)}, timeout_s=10)
        assert _routes(api)["services"][0]["starting"] is True

        # 2. ready -> status Ready, route table with the Service URL
        _mark_ready(api, f"{first}-predictor")
        wait_until(lambda: _ready(_status(api)) == "True", timeout_s=10)
        wait_until(lambda: _arms(api) == {first: (100, "latest", True)}, timeout_s=10)  # written after status
        route = _routes(api)["services"][0]
        assert route["host"] == "iris.ml.example.com"
        assert route["arms"][0]["endpoints"] == [f"http://{first}-predictor.ml.svc.cluster.local"]
        assert _status(api)["url"] == "http://iris.ml.example.com"

        # 3. canary edit through `serving apply --backend kubernetes` -> a second revision at 20 % once ready
        out = apply_kubernetes([_write(tmp_path, "v2", 20)], cluster=api)
        assert out[0] == "inferenceservice.serving.dev/iris configured"
        wait_until(lambda: len(_deployments(api)) == 2, timeout_s=10)
        second = next(name for name in _deployments(api) if name != first)
        wait_until(lambda: _arms(api) == {first: (100, "prev", True)}, timeout_s=5)  # the canary is not ready
        _mark_ready(api, f"{second}-predictor")
        wait_until(
            lambda: _arms(api) == {second: (20, "latest", True), first: (80, "prev", True)}, timeout_s=10
        )
        wait_until(  # the status is written apart from the route table
            lambda: (
                _status(api)["components"]["predictor"].get("latestReadyRevision") == second
                and _status(api)["components"]["predictor"].get("latestRolledoutRevision") == first
            ),
            timeout_s=10,
        )

        # 4. promote (field removed) -> 100 % latest; the old revision leaves the table, then is deleted
        apply_kubernetes([_write(tmp_path, "v2", None)], cluster=api)
        wait_until(lambda: _arms(api) == {second: (100, "latest", True)}, timeout_s=10)
        wait_until(lambda: set(_deployments(api)) == {second}, timeout_s=10)
        wait_until(lambda: api.get("Service", "ml", f"{first}-predictor") is None, timeout_s=10)
        wait_until(
            lambda: _status(api)["components"]["predictor"].get("previousRolledoutRevision") == first,
            timeout_s=10,
        )

        # 5. delete -> route gone, children gone
        kubernetes.client.CustomObjectsApi(api.client).delete_namespaced_custom_object(
            "serving.dev", "v1beta1", "ml", "inferenceservices", "iris"
        )
        wait_until(lambda: not _deployments(api) and _routes(api)["services"] == [], timeout_s=10)
        wait_until(lambda: api.list("Service", "ml", {"serving.dev/isvc": "iris"}) == [], timeout_s=10)
    assert runner.exception is None


def test_operator_status_has_kserves_conditions_transition_times_and_addresses(
    cluster, tmp_path: Path
) -> None:
    """IngressReady (what `kubectl wait --for=condition=IngressReady` waits for), lastTransitionTime kept in the
    cluster's status while a condition holds and moved when it flips, in-cluster addresses (reconciled directly:
    no kopf needed for the status shape)."""
    _, api = cluster
    document = _converted(_write(tmp_path, "v1", None))
    api.apply(
        {**document, "metadata": {"name": "iris", "namespace": "ml", "uid": "u", "resourceVersion": "1"}}
    )
    backend = KubernetesBackend(api, OperatorConfig(drain_s=0.0))
    backend.reconcile("ml", "iris")
    status = _status(api)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["IngressReady"]["status"] == "False" and conditions["Ready"]["status"] == "False"
    assert status["url"] == "http://iris.ml.example.com"
    assert status["address"] == {"url": "http://iris.ml.svc.cluster.local"}
    predictor = status["components"]["predictor"]
    assert predictor["url"] == "http://iris-predictor.ml.example.com"
    assert predictor["address"] == {"url": "http://iris-predictor.ml.svc.cluster.local"}
    old = [{**c, "lastTransitionTime": "2020-01-01T00:00:00Z"} for c in status["conditions"]]
    api.patch_status("ml", "iris", {"status": {"conditions": old}})
    backend.reconcile("ml", "iris")  # nothing flipped: the times stay
    assert {c["lastTransitionTime"] for c in _status(api)["conditions"]} == {"2020-01-01T00:00:00Z"}
    ((revision, _),) = _deployments(api).items()
    _mark_ready(api, f"{revision}-predictor")
    backend.reconcile("ml", "iris")
    flipped = _status(api)["conditions"]
    assert {c["type"]: c["status"] for c in flipped} == {
        "PredictorReady": "True",
        "IngressReady": "True",
        "LatestDeploymentReady": "True",
        "Ready": "True",
    }
    assert all(c["lastTransitionTime"] > "2020-01-01T00:00:00Z" for c in flipped)
    # level-based: with nothing changed, a reconcile writes no status (each one wrote the rollout record again)
    written: list[Any] = []
    real = api.patch_status
    api.patch_status = lambda *args: (written.append(args), real(*args))[1]  # type: ignore[method-assign]
    backend.reconcile("ml", "iris")
    backend.reconcile("ml", "iris")
    assert written == []


def test_in_cluster_names_are_external_names_to_the_router_and_never_take_over_a_users_service(
    cluster, tmp_path: Path
) -> None:
    """status.address.url (http://iris.ml.svc.cluster.local) and the predictor's answer in the cluster: the
    operator makes ExternalName Services iris and iris-predictor pointing at the router's Service, and the route
    table knows those Host values. A Service of the user's by one of those names is left alone."""
    _, api = cluster
    api.apply(  # the user's own Service named iris-predictor, there first
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "iris-predictor", "namespace": "ml"},
            "spec": {"selector": {"app": "mine"}, "ports": [{"port": 9000}]},
        }
    )
    document = _converted(_write(tmp_path, "v1", None))
    api.apply({**document, "metadata": {"name": "iris", "namespace": "ml", "uid": "u"}})
    KubernetesBackend(api, OperatorConfig(drain_s=0.0)).reconcile("ml", "iris")
    assert api.get("Service", "ml", "iris") is None  # no --router-service (the default): no in-cluster names
    backend = KubernetesBackend(
        api, OperatorConfig(drain_s=0.0, router_service="serving-system/serving-router")
    )
    backend.reconcile("ml", "iris")
    entry = api.get("Service", "ml", "iris")
    assert entry["spec"]["type"] == "ExternalName"
    assert entry["spec"]["externalName"] == "serving-router.serving-system.svc.cluster.local"
    assert entry["metadata"]["ownerReferences"][0]["uid"] == "u"  # deleted with the InferenceService
    theirs = api.get("Service", "ml", "iris-predictor")
    assert theirs["spec"]["selector"] == {"app": "mine"} and "type" not in theirs["spec"]
    (route,) = _routes(api)["services"]
    assert {
        "iris.ml",
        "iris.ml.svc",
        "iris.ml.svc.cluster.local",
        "iris-predictor.ml.svc.cluster.local",
    } <= set(route["aliases"])
    # Their Service gone, ours comes; a transformer added later: iris-predictor would skip it, so it goes.
    api.delete("Service", "ml", "iris-predictor")
    backend.reconcile("ml", "iris")
    assert api.get("Service", "ml", "iris-predictor")["spec"]["type"] == "ExternalName"
    document["spec"]["transformer"] = {"containers": [{"name": "kserve-container", "image": "me/t:1"}]}
    api.apply({**document, "metadata": {"name": "iris", "namespace": "ml", "uid": "u"}})
    backend.reconcile("ml", "iris")
    assert api.get("Service", "ml", "iris-predictor") is None
    assert api.get("Service", "ml", "iris")["spec"]["type"] == "ExternalName"
    (route,) = _routes(api)["services"]
    assert not any(alias.startswith("iris-predictor") for alias in route["aliases"])


def test_router_configmap_source_sees_each_new_table(cluster) -> None:
    _, api = cluster
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "routes", "namespace": "ops"},
            "data": {"routes.json": json.dumps({"version": 7, "services": []})},
        }
    )
    source = ConfigMapSource("ops", "routes", api, interval_s=0.05)
    seen: list[int] = []

    async def watch() -> None:
        task = asyncio.create_task(source.run(lambda table: seen.append(table.version)))
        await asyncio.to_thread(wait_until, lambda: seen == [7], 5.0)
        api.patch(
            "ConfigMap",
            "ops",
            "routes",
            {"data": {"routes.json": json.dumps({"version": 8, "services": []})}},
        )
        await asyncio.to_thread(wait_until, lambda: seen == [7, 8], 5.0)
        task.cancel()

    asyncio.run(watch())
    assert seen == [7, 8]


def _converted(path: Path) -> dict[str, Any]:
    from serving.control.kubernetes.documents import read_converted

    return read_converted([path])[0]


def test_typed_errors_and_an_invalid_spec_in_the_cluster(cluster) -> None:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import NewConnectionError

    from serving.control.kubernetes.apply import PermanentClusterError, TemporaryClusterError, classify
    from serving.control.kubernetes.operator import _guarded

    assert isinstance(classify(ApiException(status=503), "x"), TemporaryClusterError)
    assert isinstance(classify(ApiException(status=429), "x"), TemporaryClusterError)
    assert isinstance(classify(ApiException(status=422), "x"), PermanentClusterError)
    assert isinstance(classify(NewConnectionError(None, "refused"), "x"), TemporaryClusterError)

    class Down:  # the API server is unreachable: retried with exponential backoff, capped
        config = OperatorConfig()

        def reconcile(self, namespace: str, name: str) -> None:
            raise TemporaryClusterError("connection refused")

    delays = []
    for retry in (0, 3, 10):
        with pytest.raises(kopf.TemporaryError) as caught:
            _guarded(Down(), "ml", "iris", retry)  # type: ignore[arg-type]
        delays.append(caught.value.delay)
    assert delays == [1.0, 8.0, 60.0]

    # A spec the CRD schema lets through but the spec rejects: permanent, and the status says why.
    _, api = cluster
    bad = {
        "apiVersion": "serving.dev/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "tf", "namespace": "ml", "resourceVersion": "1"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "tensorflow"}, "storageUri": "pvc://m/tf"}}},
    }
    api.apply(bad)
    backend = KubernetesBackend(api, OperatorConfig(drain_s=0.0))
    with pytest.raises(PermanentClusterError):
        backend.reconcile("ml", "tf")
    status = api.get("InferenceService", "ml", "tf")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert [c["type"] for c in status["conditions"]] == ["PredictorReady", "IngressReady", "Ready"]
    assert all(c["lastTransitionTime"].endswith("Z") for c in status["conditions"])
    assert "spec.predictor.model.modelFormat.name" in ready["message"] and "tensorflow" in ready["message"]
    assert api.list("Deployment", "ml", {"serving.dev/isvc": "tf"}) == []


def test_a_revision_brought_back_is_drained_afresh_when_retired_again(cluster, tmp_path: Path) -> None:
    """v1 -> v2 (v1 marked retired) -> back to v1: v1 loses its retired-at mark, so when v2 comes again v1 is
    drained for `drainSeconds` from then, not deleted in the reconcile that takes it out of the route table
    while routers may still send to it."""
    _, api = cluster
    backend = KubernetesBackend(api, OperatorConfig(drain_s=3600.0))

    def roll_to(model: str) -> str:
        document = _converted(_write(tmp_path, model, None))
        api.apply({**document, "metadata": {"name": "iris", "namespace": "ml", "uid": "u"}})
        backend.reconcile("ml", "iris")
        revision = _status(api)["components"]["predictor"]["latestCreatedRevision"]
        _mark_ready(api, f"{revision}-predictor")
        backend.reconcile("ml", "iris")
        return revision

    first = roll_to("v1")
    roll_to("v2")
    assert RETIRED_AT in _deployments(api)[first]["metadata"]["annotations"]
    assert roll_to("v1") == first
    assert RETIRED_AT not in (_deployments(api)[first]["metadata"].get("annotations") or {})
    roll_to("v2")
    assert first in _deployments(api), "deleted at once: its drain counted from its first retirement"


def test_the_stop_annotation_deletes_the_deployments_and_the_route_says_why(cluster, tmp_path: Path) -> None:
    _, api = cluster
    document = _converted(_write(tmp_path, "v1", None))
    api.apply({**document, "metadata": {"name": "iris", "namespace": "ml", "uid": "u"}})
    backend = KubernetesBackend(api, OperatorConfig(drain_s=0.0))
    backend.reconcile("ml", "iris")
    assert len(_deployments(api)) == 1
    stop = {"serving.kserve.io/stop": "true"}
    api.apply({**document, "metadata": {"name": "iris", "namespace": "ml", "uid": "u", "annotations": stop}})
    backend.reconcile("ml", "iris")  # out of the route table, marked retired
    backend.reconcile("ml", "iris")  # drained (drain_s 0): deleted
    assert _deployments(api) == {}
    (route,) = _routes(api)["services"]
    assert "serving.kserve.io/stop" in route["failure"] and not route.get("activator")
    assert {c["type"]: c["status"] for c in _status(api)["conditions"]}["Stopped"] == "True"
