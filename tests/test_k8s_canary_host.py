"""The operator's canary host piece by piece, without kopf: how router replicas are read, what a bad Canary's
status says, PromQL metrics against a real Prometheus, and reconciles that run before a Canary's event arrives.

Real: the router replicas' /metrics (uvicorn on 127.0.0.1), the kubernetes client, Debian's prometheus. Mocked,
because no API server runs here: the API server (kmock's emulator; see tests/test_operator_canary.py for what it
cannot show). Pods are objects whose status the test patches as the kubelet would.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from serving.canary.snapshot import revision_counters
from serving.cluster import TemporaryClusterError
from serving.control.canary_status import last_transition_time
from serving.control.kubernetes.apply import Cluster
from serving.control.kubernetes.backend import RETIRED_AT, KubernetesBackend, OperatorConfig
from serving.control.kubernetes.canaries import KubernetesCanaryHost
from tests.support import free_port, wait_until
from tests.test_operator import Emulator
from tests.test_operator_canary import (
    CANARY,
    RouterReplica,
    _apply_isvc,
    _new_ready_revision,
    _revisions,
    _router_pod,
    _weights,
)


@pytest.fixture()
def api() -> Iterator[Cluster]:
    with Emulator() as emulator:
        yield Cluster(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=emulator.url)))


def _host(api: Cluster, **config: Any) -> KubernetesCanaryHost:
    return KubernetesCanaryHost(KubernetesBackend(api, OperatorConfig(drain_s=0.0, **config)))


def _requests(expositions: Any) -> int:
    return revision_counters(expositions, "ml", "iris", "r2").requests


def test_router_replicas_are_summed_a_gone_one_keeps_its_count_and_a_silent_one_stops_the_read(
    api: Cluster,
) -> None:
    host = _host(api)
    with RouterReplica() as first, RouterReplica() as second:
        _router_pod(api, "router-a", first.port)
        _router_pod(api, "router-b", second.port)
        api.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {  # starting: no IP, not ready -> skipped
                    "name": "router-c",
                    "namespace": "serving-system",
                    "labels": {"app.kubernetes.io/name": "serving", "app.kubernetes.io/component": "router"},
                },
            }
        )
        first.served("r2", 4, 200)
        second.served("r2", 3, 503)
        assert _requests(host.router_expositions()) == 7
        assert revision_counters(host.router_expositions(), "ml", "iris", "r2").server_errors == 3

        api.delete("Pod", "serving-system", "router-b")  # scaled down: its 3 requests still count, no drop
        first.served("r2", 1, 200)
        assert _requests(host.router_expositions()) == 8

        _router_pod(
            api, "router-d", free_port()
        )  # ready, but nothing answers: no judging on part of the traffic
        with pytest.raises(TemporaryClusterError, match="router-d"):
            host.router_expositions()


def _canary(name: str, analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = {**CANARY["spec"], "analysis": analysis or CANARY["spec"]["analysis"]}
    return {**CANARY, "metadata": {**CANARY["metadata"], "name": name}, "spec": spec}


def _status(api: Cluster, name: str) -> dict[str, Any]:
    return (api.get("Canary", "ml", name) or {}).get("status") or {}


def test_a_bad_canary_and_a_second_canary_for_one_service_say_why_in_their_status(api: Cluster) -> None:
    host = _host(api)
    bad = _canary("bad", {**CANARY["spec"]["analysis"], "stepWeights": [50, 10]})
    for document in (bad, _canary("first"), _canary("second")):
        api.apply(document)
        host.document_event(api.get("Canary", "ml", document["metadata"]["name"]), "ADDED")
    condition = _status(api, "bad")["conditions"][0]
    assert condition["reason"] == "InvalidSpec" and "spec.analysis" in condition["message"]
    assert "step weights must rise" in condition["message"]
    assert _status(api, "second")["conditions"][0]["reason"] == "TargetTaken"
    assert host.controller.tracked[("ml", "iris")].canary.metadata.name == "first"
    assert (
        host.controller.percent_for(("ml", "iris")) == 0
    )  # a tracked service: new revisions wait for the analysis

    host.document_event(api.get("Canary", "ml", "first"), "DELETED")
    assert (
        host.controller.percent_for(("ml", "iris")) is None
    )  # no policy: the spec's canaryTrafficPercent again


def test_last_transition_time_is_when_the_current_phase_began() -> None:
    history = [
        {"phase": "Progressing", "time": "t1"},
        {"phase": "Progressing", "time": "t2"},
        {"phase": "Failed", "time": "t3"},
    ]
    assert last_transition_time("Failed", history) == "t3"
    assert last_transition_time("Progressing", history[:2]) == "t1"
    assert last_transition_time("Succeeded", history) is None


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus not installed (install: scripts/install-test-tools)",
)
@pytest.mark.e2e  # a real Prometheus process
def test_promql_metrics_are_read_from_a_real_prometheus(api: Cluster, tmp_path: Path) -> None:
    from tests.test_prometheus import prometheus

    with RouterReplica() as router:
        router.served("r2", 5, 200)
        with prometheus(f"127.0.0.1:{router.port}", tmp_path) as url:
            host = _host(api, prometheus_url=url)
            due = {
                ("ml", "iris"): {
                    "requests": 'sum(serving_router_requests_total{revision="r2"})',
                    "absent": 'sum(serving_router_requests_total{revision="nope"})',
                }
            }
            wait_until(
                lambda: asyncio.run(host._queried(due))[("ml", "iris")].get("requests") == 5, timeout_s=30
            )
            assert "absent" not in asyncio.run(host._queried(due))[("ml", "iris")]  # no data: the check fails


def test_manual_control_through_an_annotation_wins_and_is_cleared(api: Cluster) -> None:
    host = _host(api)
    api.apply(_canary("first"))
    host.document_event(api.get("Canary", "ml", "first"), "ADDED")

    def act(action: str) -> dict[str, Any]:
        api.patch("Canary", "ml", "first", {"metadata": {"annotations": {"serving.dev/action": action}}})
        host.document_event(
            api.get("Canary", "ml", "first"), "MODIFIED"
        )  # the watch event kopf would deliver
        live = api.get("Canary", "ml", "first")
        assert "serving.dev/action" not in (live["metadata"].get("annotations") or {})  # one-shot
        return live.get("status") or {}

    assert act("pause")["phase"] == "Paused"
    assert act("resume")["phase"] == "Waiting"
    rolled_back = act("rollback")
    assert (rolled_back["phase"], rolled_back["canaryWeight"], rolled_back["message"]) == (
        "Failed",
        0,
        "rolled back by the user",
    )
    assert rolled_back["conditions"][0]["status"] == "False"
    assert act("ship-it")["phase"] == "Failed"  # not an action: logged, cleared, nothing moves

    host.document_event(api.get("Canary", "ml", "first"), "DELETED")  # deleted, then created again:
    api.delete("Canary", "ml", "first")
    api.apply(_canary("first"))
    host.document_event(api.get("Canary", "ml", "first"), "ADDED")
    fresh = act("pause")  # its first status is whole (not a diff against the deleted object's)
    assert (fresh["phase"], fresh["canaryWeight"], fresh["failedChecks"]) == ("Paused", 0, 0)


def test_routing_carries_affinity_and_mirrors_only_while_mirroring(api: Cluster) -> None:
    from serving.canary.analysis import CanaryStatus, Phase
    from serving.canary.spec import parse_canary

    host = _host(api)
    canary = parse_canary({**_canary("first"), "metadata": {"name": "first", "namespace": "ml"}})
    host.controller.apply(canary, CanaryStatus(Phase.MIRRORING, "r2"))
    routing = host.controller.routing_for(("ml", "iris"))
    assert routing is not None and (routing.affinity_header, routing.mirror) == ("x-user-id", True)
    host.controller.apply(canary, CanaryStatus(Phase.PROGRESSING, "r2", 0, 10))
    assert (
        host.controller.routing_for(("ml", "iris")).mirror is False
        and host.controller.percent_for(("ml", "iris")) == 10
    )
    assert host.controller.routing_for(("ml", "other")) is None


def test_a_resumed_analysis_starts_from_the_routers_counters_of_now(api: Cluster) -> None:
    """The routers kept counting while the operator was down: that history is the baseline, not a window."""
    host = _host(api)
    with RouterReplica() as first, RouterReplica() as second:
        _router_pod(api, "router-a", first.port)
        _router_pod(api, "router-b", second.port)
        first.served("r2", 40, 200)
        second.served("r2", 2, 503)
        stored = {
            "phase": "Progressing",
            "revision": "r2",
            "step": 1,
            "canaryWeight": 25,
            "history": [{"phase": "Progressing", "canaryWeight": 25, "time": "t"}],
        }
        api.apply({**_canary("first"), "status": stored})
        resumed_at = host.controller.clock()
        host.document_event(api.get("Canary", "ml", "first"), None)  # kopf's initial listing after a restart
    tracked = host.controller.tracked[("ml", "iris")]
    assert (tracked.status.canary_weight, tracked.status.step, tracked.history) == (25, 1, stored["history"])
    assert tracked.counters is not None and (tracked.counters.requests, tracked.counters.server_errors) == (
        42,
        2,
    )
    assert tracked.next_check_s >= resumed_at + 0.3  # the first check judges one fresh interval (300ms)


STATUS = {"name": "kserve-container", "image": "x", "imageID": "", "ready": False}


def test_the_candidates_pod_restarts_and_load_error_reach_the_analysis(api: Cluster) -> None:
    """A crash-looping candidate fails its checks on Kubernetes too: the view counts its pods' container
    restarts (another revision's do not count); a failed load says why."""
    host = _host(api)
    api.apply(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris", "namespace": "ml"},
            "spec": {"predictor": {"sklearn": {"storageUri": "pvc://models/iris"}}},
        }
    )
    predictor = {"latestCreatedRevision": "iris-r2", "latestRolledoutRevision": "iris-r1"}
    api.patch_status("ml", "iris", {"status": {"components": {"predictor": predictor}}})
    for name, revision, restarts in (("a", "iris-r2", 2), ("b", "iris-r2", 1), ("c", "iris-r1", 7)):
        api.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "ml", "labels": {"serving.dev/revision": revision}},
                "spec": {"containers": [{"name": "kserve-container", "image": "x"}]},
                "status": {"containerStatuses": [{**STATUS, "restartCount": restarts}]},
            }
        )
    view = host.rollout_view(("ml", "iris"))
    assert view is not None and view.latest_restarts == 3 and not view.latest_failed
    failure = {"reason": "ModelLoadFailed", "message": "no model.joblib"}
    model_status = {"transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": failure}
    api.patch_status("ml", "iris", {"status": {"modelStatus": model_status}})
    view = host.rollout_view(("ml", "iris"))
    assert view is not None and view.latest_failed and view.latest_error == "no model.joblib"


def _rolled_out(api: Cluster, host: KubernetesCanaryHost, tmp_path: Path) -> str:
    """v1 of the service, ready and rolled out (each reconcile the operator's event handlers would run)."""
    _apply_isvc(tmp_path, api, "v1")
    host.backend.reconcile("ml", "iris")
    stable = _new_ready_revision(api, set())
    host.backend.reconcile("ml", "iris")
    return stable


def _v2_ready(api: Cluster, host: KubernetesCanaryHost, tmp_path: Path, stable: str) -> str:
    """v2 applied, its Deployment made ready, and reconciled twice (with drain_s 0, the second would delete a
    retired revision)."""
    _apply_isvc(tmp_path, api, "v2")
    host.backend.reconcile("ml", "iris")
    canary = _new_ready_revision(api, {stable})
    host.backend.reconcile("ml", "iris")
    host.backend.reconcile("ml", "iris")
    return canary


def _rolled_out_revision(api: Cluster) -> str:
    return api.get("InferenceService", "ml", "iris")["status"]["components"]["predictor"][
        "latestRolledoutRevision"
    ]


def test_a_canary_the_operator_has_not_seen_yet_holds_the_promotion(api: Cluster, tmp_path: Path) -> None:
    """The Canary's watch and the InferenceService's are separate streams: a reconcile can see the new revision
    ready before the Canary created earlier reached the host. It must not promote it at once (KServe's way
    without a policy), retiring the stable revision: it holds it at 0 % until the analysis starts."""
    host = _host(api)
    stable = _rolled_out(api, host, tmp_path)
    api.apply(_canary("first"))  # created before v2, its event not yet handled
    canary = _v2_ready(api, host, tmp_path, stable)
    assert _weights(api) == {stable: 100, canary: 0}
    assert _rolled_out_revision(api) == stable
    assert RETIRED_AT not in (_revisions(api)[stable]["metadata"].get("annotations") or {})

    host.document_event(api.get("Canary", "ml", "first"), "ADDED")  # the event arrives
    host.tick()
    assert _weights(api) == {canary: 10, stable: 90} and _status(api, "first")["canaryWeight"] == 10


def test_a_restarted_operator_keeps_the_canary_weight_before_it_lists_the_canaries(
    api: Cluster, tmp_path: Path
) -> None:
    """A new operator's first reconcile of the service may run before kopf's listing of the Canaries reached
    the host: the analysis at 10 % goes on (its stored weight), the canary is not promoted."""
    host = _host(api)
    stable = _rolled_out(api, host, tmp_path)
    api.apply(_canary("first"))
    host.document_event(api.get("Canary", "ml", "first"), "ADDED")
    canary = _v2_ready(api, host, tmp_path, stable)
    host.tick()
    assert _weights(api) == {canary: 10, stable: 90}

    restarted = _host(api)
    restarted.backend.start()
    restarted.backend.reconcile("ml", "iris")  # kopf's resume handler, before the Canary's listing
    assert _weights(api) == {canary: 10, stable: 90} and _rolled_out_revision(api) == stable
    restarted.document_event(api.get("Canary", "ml", "first"), None)
    restarted.tick()
    assert _weights(api) == {canary: 10, stable: 90}
    assert restarted.controller.tracked[("ml", "iris")].status.canary_weight == 10
