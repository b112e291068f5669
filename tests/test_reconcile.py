"""The pure rollout plan: KServe canary semantics, without any process or server."""

from __future__ import annotations

from serving.control.reconcile import Observed, RolloutState, plan
from serving.revision import Revision
from serving.spec import load_documents

BASE = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: iris}}
spec:
  predictor:
    {canary}
    minReplicas: 2
    sklearn: {{storageUri: "{uri}"}}
"""


def isvc(uri: str, canary: int | None = None):
    line = f"canaryTrafficPercent: {canary}" if canary is not None else ""
    return load_documents(BASE.format(uri=uri, canary=line))[0]


def split(p) -> dict[str, int]:
    return {t.revision: t.percent for t in p.traffic}


def test_first_revision_gets_traffic_only_when_ready() -> None:
    v1 = isvc("/m/v1")
    p = plan(v1, None, Observed(), now=0)
    assert p.traffic == () and p.run == {Revision.from_spec(v1).name: 2}
    assert p.status["conditions"][-1] == {
        "type": "Ready",
        "status": "False",
        "reason": "RevisionNotReady",
        "lastTransitionTime": "1970-01-01T00:00:00Z",
    }
    p = plan(v1, p.state, Observed(ready=frozenset(p.run)))
    name = Revision.from_spec(v1).name
    assert split(p) == {name: 100}
    assert p.status["components"]["predictor"]["latestRolledoutRevision"] == name


def test_canary_promote_and_rollback() -> None:
    v1, r1 = isvc("/m/v1"), Revision.from_spec(isvc("/m/v1")).name
    state = plan(v1, None, Observed(ready=frozenset({r1}))).state
    v2 = isvc("/m/v2", canary=20)
    r2 = Revision.from_spec(v2).name
    waiting = plan(v2, state, Observed(ready=frozenset({r1})))
    assert split(waiting) == {r1: 100}, "a revision that is not ready gets no traffic"
    canary = plan(v2, waiting.state, Observed(ready=frozenset({r1, r2})))
    assert split(canary) == {r2: 20, r1: 80}
    tags = {t.tag: t.revision for t in canary.traffic}
    assert tags == {"latest": r2, "prev": r1}
    rollback = plan(isvc("/m/v2", canary=0), canary.state, Observed(ready=frozenset({r1, r2})))
    assert split(rollback) == {r1: 100, r2: 0}
    promoted = plan(isvc("/m/v2"), canary.state, Observed(ready=frozenset({r1, r2})))
    assert split(promoted) == {r2: 100}
    comp = promoted.status["components"]["predictor"]
    assert comp["latestRolledoutRevision"] == r2 and comp["previousRolledoutRevision"] == r1
    assert set(promoted.run) == {r2}, "the old revision stops after promotion"


def test_a_canary_that_stops_being_ready_hands_its_share_to_stable_until_it_is_back() -> None:
    """Its last replica crashed (README, Faults): none of its requests waits for it; the split returns."""
    v1, r1 = isvc("/m/v1"), Revision.from_spec(isvc("/m/v1")).name
    state = plan(v1, None, Observed(ready=frozenset({r1}))).state
    v2 = isvc("/m/v2", canary=20)
    r2 = Revision.from_spec(v2).name
    canary = plan(v2, state, Observed(ready=frozenset({r1, r2})))
    down = plan(v2, canary.state, Observed(ready=frozenset({r1})))
    assert split(down) == {r1: 100}
    assert set(down.run) == {r1, r2}, "the canary keeps running (its replica is restarted)"
    back = plan(v2, down.state, Observed(ready=frozenset({r1, r2})))
    assert split(back) == {r2: 20, r1: 80}


def test_failed_revision_never_gets_traffic() -> None:
    v1, r1 = isvc("/m/v1"), Revision.from_spec(isvc("/m/v1")).name
    state = plan(v1, None, Observed(ready=frozenset({r1}))).state
    bad = isvc("/m/broken")
    rb = Revision.from_spec(bad).name
    p = plan(bad, state, Observed(ready=frozenset({r1}), failed={rb: "ArtifactError: no model file"}))
    assert split(p) == {r1: 100}
    assert p.status["modelStatus"]["lastFailureInfo"]["message"] == "ArtifactError: no model file"
    latest = next(c for c in p.status["conditions"] if c["type"] == "LatestDeploymentReady")
    assert latest["status"] == "False" and "no model file" in latest["message"]


def test_traffic_and_scale_fields_create_no_revision() -> None:
    a = Revision.from_spec(isvc("/m/v1", canary=10))
    b = Revision.from_spec(isvc("/m/v1", canary=50))
    assert a.name == b.name and a.name.startswith("iris-") and len(a.name) == len("iris-") + 8
    assert Revision.from_spec(isvc("/m/v2")).name != a.name


def test_state_round_trips_through_json() -> None:
    v1, r1 = isvc("/m/v1"), Revision.from_spec(isvc("/m/v1")).name
    state = plan(v1, None, Observed(ready=frozenset({r1}))).state
    assert RolloutState.from_json(state.to_json()) == state


def test_a_canary_keeps_its_share_while_a_newer_revision_loads_or_fails() -> None:
    """KServe (Knative's latestRevision target is the latest *ready* revision): with v2 a 30 % canary, applying v3
    leaves 70/30 on v1/v2 until v3 is ready (then v3 takes the 30 %); if v3 fails, 70/30 stays."""
    v1, r1 = isvc("/m/v1"), Revision.from_spec(isvc("/m/v1")).name
    state = plan(v1, None, Observed(ready=frozenset({r1}))).state
    v2, v3 = isvc("/m/v2", canary=30), isvc("/m/v3", canary=30)
    r2, r3 = Revision.from_spec(v2).name, Revision.from_spec(v3).name
    state = plan(v2, state, Observed(ready=frozenset({r1, r2}))).state
    loading = plan(v3, state, Observed(ready=frozenset({r1, r2})))
    assert split(loading) == {r1: 70, r2: 30} and set(loading.run) == {r1, r2, r3}
    assert {t.tag: t.revision for t in loading.traffic} == {"latest": r2, "prev": r1}
    failed = plan(v3, loading.state, Observed(ready=frozenset({r1, r2}), failed={r3: "no model file"}))
    assert split(failed) == {r1: 70, r2: 30}
    ready = plan(v3, loading.state, Observed(ready=frozenset({r1, r2, r3})))
    assert split(ready) == {r1: 70, r3: 30} and set(ready.run) == {r1, r3}  # the earlier canary stops
    promoted = plan(isvc("/m/v3"), ready.state, Observed(ready=frozenset({r1, r3})))
    assert split(promoted) == {r3: 100} and promoted.state.canary is None
    assert RolloutState.from_json(loading.state.to_json()) == loading.state


TRANSFORMER = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: tx, namespace: ml}
spec:
  predictor:
    sklearn: {storageUri: "/m/v1"}
  transformer:
    containers: [{args: ["serving", "transform", "--transformer", "tabular"]}]
"""


def conditions(p) -> dict[str, dict]:
    return {c["type"]: c for c in p.status["conditions"]}


def test_conditions_are_kserves_knative_conditions() -> None:
    """KServe's Ready is NewLivingConditionSet(PredictorReady, IngressReady) (+ TransformerReady with a
    transformer); Knative conditions carry lastTransitionTime (RFC 3339), reason/message when not True, and
    severity Info on the non-terminal ones."""
    v1, r1 = isvc("/m/v1"), Revision.from_spec(isvc("/m/v1")).name
    waiting = plan(v1, None, Observed(), now=1_700_000_000)
    got = conditions(waiting)
    assert [c["type"] for c in waiting.status["conditions"]] == [
        "PredictorReady",
        "IngressReady",
        "LatestDeploymentReady",
        "Ready",
    ]
    assert {c["lastTransitionTime"] for c in got.values()} == {"2023-11-14T22:13:20Z"}
    assert got["IngressReady"] == {
        "type": "IngressReady",
        "status": "False",
        "reason": "Predictor ingress not created",
        "lastTransitionTime": "2023-11-14T22:13:20Z",
    }
    assert got["LatestDeploymentReady"]["severity"] == "Info"
    assert not any("severity" in got[t] for t in ("PredictorReady", "IngressReady", "Ready"))
    ready = conditions(plan(v1, waiting.state, Observed(ready=frozenset({r1})), previous=waiting.status))
    assert {t: c["status"] for t, c in ready.items()} == dict.fromkeys(got, "True")
    assert not any("reason" in c or "message" in c for c in ready.values())

    tx = load_documents(TRANSFORMER)[0]
    with_transformer = plan(tx, None, Observed(), now=0)
    assert [c["type"] for c in with_transformer.status["conditions"]] == [
        "PredictorReady",
        "TransformerReady",
        "IngressReady",
        "LatestDeploymentReady",
        "Ready",
    ]
    assert conditions(with_transformer)["TransformerReady"]["severity"] == "Info"


def test_last_transition_time_holds_while_the_status_holds_and_moves_on_a_flip() -> None:
    v1, r1 = isvc("/m/v1"), Revision.from_spec(isvc("/m/v1")).name
    first = plan(v1, None, Observed(), now=100)
    again = plan(v1, first.state, Observed(), previous=first.status, now=200)
    assert again.status["conditions"] == first.status["conditions"]  # nothing changed: nothing to write
    # A new reason or message without a flip keeps the time (the status did not transition).
    failed = plan(v1, again.state, Observed(failed={r1: "no model file"}), previous=again.status, now=300)
    assert conditions(failed)["Ready"]["message"] == "no model file"
    assert {c["lastTransitionTime"] for c in failed.status["conditions"]} == {"1970-01-01T00:01:40Z"}
    ready = plan(v1, failed.state, Observed(ready=frozenset({r1})), previous=failed.status, now=400)
    assert {c["lastTransitionTime"] for c in ready.status["conditions"]} == {"1970-01-01T00:06:40Z"}
    # One that flips moves; one that holds keeps its own time.
    v2, r2 = isvc("/m/v2"), Revision.from_spec(isvc("/m/v2")).name
    rolling = plan(v2, ready.state, Observed(ready=frozenset({r1})), previous=ready.status, now=500)
    times = {t: c["lastTransitionTime"] for t, c in conditions(rolling).items()}
    assert times == {
        "PredictorReady": "1970-01-01T00:06:40Z",
        "IngressReady": "1970-01-01T00:06:40Z",
        "LatestDeploymentReady": "1970-01-01T00:08:20Z",
        "Ready": "1970-01-01T00:06:40Z",
    }
    assert r2 not in split(rolling)


def test_status_urls_are_kserves() -> None:
    """status.url external, status.address.url in-cluster (KServe's top-level NAME.NS.svc host) where there is
    a cluster, the router's Host on one machine; each component with KServe's NAME-COMPONENT url and address."""
    tx = load_documents(TRANSFORMER)[0]
    local = plan(tx, None, Observed()).status
    assert local["url"] == "http://tx.ml.example.com"
    assert local["address"] == {"url": "http://tx.ml.example.com"}
    cluster = plan(tx, None, Observed(), "models.io", cluster_domain="cluster.local").status
    assert cluster["url"] == "http://tx.ml.models.io"
    assert cluster["address"] == {"url": "http://tx.ml.svc.cluster.local"}
    for status, domain in ((local, "example.com"), (cluster, "models.io")):
        for component in ("predictor", "transformer"):
            got = status["components"][component]
            assert got["url"] == f"http://tx-{component}.ml.{domain}"
            assert got["address"] == {"url": f"http://tx-{component}.ml.svc.cluster.local"}
            assert "latestCreatedRevision" in got and "traffic" not in got  # none yet: left out


def _nulls(node: object, path: str = "status") -> list[str]:
    """Where a status holds null or an empty list (what Go's omitempty leaves out)."""
    if node is None or node == []:
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _nulls(v, f"{path}[{i}]")]
    return []


def test_empty_status_fields_are_left_out_as_kserves_omitempty_does() -> None:
    """Before any revision is ready, and while a new one fails, the revisions not there yet are absent, not null
    (audit /tmp/audit-kserve4 M3: `previousRolledoutRevision: null`, `latestReadyRevision: null`...)."""
    v1 = isvc("/m/v1")
    r1 = Revision.from_spec(v1).name
    loading = plan(v1, None, Observed())
    assert _nulls(loading.status) == []
    assert loading.status["components"]["predictor"].keys() >= {"latestCreatedRevision", "url"}
    assert not loading.status["components"]["predictor"].keys() & {
        "latestReadyRevision",
        "latestRolledoutRevision",
        "previousRolledoutRevision",
        "traffic",
    }
    failed = plan(v1, None, Observed(failed={r1: "no model"}))
    assert (
        _nulls(failed.status) == [] and "latestReadyRevision" not in failed.status["components"]["predictor"]
    )
    served = plan(v1, None, Observed(ready=frozenset({r1})))
    assert (
        _nulls(served.status) == []
        and "previousRolledoutRevision" not in served.status["components"]["predictor"]
    )


def test_deployment_mode_is_in_the_status_in_current_kserves_names() -> None:
    """KServe records `status.deploymentMode` from the annotation (GetDeploymentMode: the legacy Serverless and
    RawDeployment written as Knative and Standard), its default mode without one."""

    def mode(annotation: str | None) -> str:
        written = f"annotations: {{serving.kserve.io/deploymentMode: {annotation}}}" if annotation else ""
        doc = BASE.format(uri="/m/v1", canary="").replace(
            "metadata: {name: iris}", f"metadata: {{name: iris, {written}}}"
        )
        return plan(load_documents(doc)[0], None, Observed()).status["deploymentMode"]

    assert mode(None) == "Knative" and mode("Serverless") == "Knative" and mode("Knative") == "Knative"
    assert mode("RawDeployment") == "Standard" and mode("Standard") == "Standard"


def test_the_selected_runtime_is_named_in_the_status_by_its_kind() -> None:
    """KServe's status.clusterServingRuntimeName / servingRuntimeName: one of the two, for the latest revision;
    while the latest has none (no runtime serves it) the one of the revision still serving."""
    v1, v2 = isvc("/m/v1"), isvc("/m/v2")
    r1, r2 = Revision.from_spec(v1).name, Revision.from_spec(v2).name
    cluster = {r1: ("ClusterServingRuntime", "kserve-sklearnserver")}
    first = plan(v1, None, Observed(ready=frozenset({r1}), runtimes=cluster))
    assert first.status["clusterServingRuntimeName"] == "kserve-sklearnserver"
    assert "servingRuntimeName" not in first.status
    team = {**cluster, r2: ("ServingRuntime", "team")}
    second = plan(v2, first.state, Observed(ready=frozenset({r1}), runtimes=team))
    assert second.status["servingRuntimeName"] == "team" and "clusterServingRuntimeName" not in second.status
    none_yet = plan(v2, first.state, Observed(ready=frozenset({r1}), failed={r2: "x"}, runtimes=cluster))
    assert none_yet.status["clusterServingRuntimeName"] == "kserve-sklearnserver"
    assert not plan(v1, None, Observed()).status.keys() & {"servingRuntimeName", "clusterServingRuntimeName"}
