"""`plan(desired, observed) -> Plan`: KServe's rollout semantics as a pure function.

- first revision: gets 100 % once ready;
- a new revision with `canaryTrafficPercent: P`: P % once ready, the last rolled-out one keeps 100 - P;
- without the field (or 100): promoted to 100 % once ready; 0: rolled back (latest deployed at 0 %);
- a revision that is not ready never gets traffic; traffic stays where it was (a rolled-out revision whose
  replicas restart keeps its traffic: the router holds those requests until one is back).
Both backends call this; it touches no process or socket, and the clock only to stamp a condition whose status
flipped (`now` overrides it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from serving.autoscale.annotations import RAW_MODES, AutoscaleSpecError
from serving.autoscale.annotations import deployment_mode as annotated_deployment_mode
from serving.revision import Revision, served_document
from serving.servingruntime import failure_reason
from serving.spec import InferenceService


@dataclass(frozen=True, slots=True)
class RolloutState:
    """What persists per InferenceService between reconciles."""

    revisions: dict[str, Revision] = field(default_factory=dict)
    latest_created: str | None = None
    rolled_out: str | None = None
    previous_rolled_out: str | None = None
    # The revision serving the canary share (ready, not rolled out): it keeps that share while a newer one loads
    # or fails, as Knative's latestRevision target stays on the latest *ready* revision
    canary: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "revisions": {k: v.to_json() for k, v in self.revisions.items()},
            "latestCreated": self.latest_created,
            "rolledOut": self.rolled_out,
            "previousRolledOut": self.previous_rolled_out,
            "canary": self.canary,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        return cls(
            revisions={k: Revision.from_json(v) for k, v in data.get("revisions", {}).items()},
            latest_created=data.get("latestCreated"),
            rolled_out=data.get("rolledOut"),
            previous_rolled_out=data.get("previousRolledOut"),
            canary=data.get("canary"),
        )


@dataclass(frozen=True, slots=True)
class Observed:
    ready: frozenset[str] = frozenset()
    failed: dict[str, str] = field(default_factory=dict)  # revision -> why it cannot become ready
    # revision -> KServe's selection message when no ServingRuntime serves it (also in `failed`, with its field
    # path): the model status is then KServe's InvalidSpec, not a failed load
    no_runtime: dict[str, str] = field(default_factory=dict)
    # revision -> what it is doing while not ready yet (fetching its model): the status message meanwhile
    progress: dict[str, str] = field(default_factory=dict)
    # revision -> (kind, name) of the ServingRuntime / ClusterServingRuntime selected for it (KServe's
    # status.servingRuntimeName / clusterServingRuntimeName); none for a `module:Class` runtime or a custom container
    runtimes: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrafficTarget:
    revision: str
    percent: int
    tag: str  # "latest" or "prev"
    latest: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "revisionName": self.revision,
            "percent": self.percent,
            "tag": self.tag,
            "latestRevision": self.latest,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    state: RolloutState
    run: dict[str, int]  # revision -> replicas
    traffic: tuple[TrafficTarget, ...]
    status: dict[str, Any]


def plan(
    isvc: InferenceService,
    state: RolloutState | None,
    observed: Observed,
    domain: str = "example.com",
    canary_percent: int | None = None,
    *,
    previous: Mapping[str, Any] | None = None,
    now: float | None = None,
    cluster_domain: str | None = None,
) -> Plan:
    """`canary_percent`, when given, replaces the spec's canaryTrafficPercent: a Canary policy drives the split.
    `previous`: the status last written (its conditions keep their `lastTransitionTime` while their status holds);
    `now`: the time a flipped condition gets (default the wall clock); `cluster_domain`: where the service has
    in-cluster DNS names (Kubernetes: `status.address.url` is `NAME.NAMESPACE.svc.CLUSTER_DOMAIN`), None on one
    machine (the address is `status.url`, the Host the router routes)."""
    state = state or RolloutState()
    revision = Revision.from_spec(isvc)
    revisions = dict(state.revisions)
    revisions.setdefault(revision.name, revision)
    state = replace(state, revisions=revisions, latest_created=revision.name)
    latest = revision.name
    stable = state.rolled_out
    if canary_percent is not None:
        percent: int | None = canary_percent
    else:
        percent = spec_canary_percent(isvc, state.revisions.get(stable) if stable else None, revision)
    latest_ready = latest in observed.ready

    earlier_canary = state.canary
    if stable is None or stable == latest:
        if latest_ready:
            state = replace(state, rolled_out=latest, canary=None)
        # Once rolled out it keeps its traffic while its replicas restart: the router holds its requests
        traffic = _single(state.rolled_out, latest)
    elif latest_ready and (percent is None or percent == 100):
        state = replace(state, previous_rolled_out=state.rolled_out, rolled_out=latest, canary=None)
        traffic = _single(latest, latest)
    elif latest_ready and percent:
        state = replace(state, canary=latest)
        traffic = (
            TrafficTarget(latest, percent, "latest", True),
            TrafficTarget(stable, 100 - percent, "prev", False),
        )
    elif (
        percent
        and percent < 100
        and earlier_canary not in (None, stable, latest)
        and earlier_canary not in observed.failed
    ):  # a newer revision loads (or failed): the earlier canary keeps its share until one is ready
        assert earlier_canary is not None
        traffic = (
            TrafficTarget(earlier_canary, percent, "latest", True),
            TrafficTarget(stable, 100 - percent, "prev", False),
        )
    else:  # not ready yet, failed, or rolled back with 0 %
        traffic = (TrafficTarget(stable, 100, "prev", False),)
        if latest_ready:
            traffic += (TrafficTarget(latest, 0, "latest", True),)

    replicas = isvc.spec.predictor.replicas
    run = {latest: replicas}
    if state.rolled_out is not None:
        run[state.rolled_out] = replicas
    for target in traffic:  # every revision with a share keeps running (the earlier canary)
        run.setdefault(target.revision, replicas)
    live = {t.revision for t in traffic}
    # Drop revisions that are neither running nor one of the rollout pointers (their records can go).
    keep = set(run) | {state.previous_rolled_out} | live
    state = replace(state, revisions={k: v for k, v in state.revisions.items() if k in keep})
    if isvc.stopped:  # KServe's stop: nothing runs; the revisions and the split are kept for the resume
        run = {}
    status = _status(isvc, state, observed, traffic, domain, cluster_domain)
    stamp_conditions(status["conditions"], previous, now)
    return Plan(state, run, traffic, status)


def spec_canary_percent(isvc: InferenceService, stable: Revision | None, latest: Revision) -> int | None:
    """The new revision's share from the spec. A revision is the (predictor, transformer) pair, so KServe's two
    splits become one: the predictor's `canaryTrafficPercent` when the predictor changed (KServe splits only
    the component that has a new revision); when only the transformer did, the transformer's, if written (else
    the predictor's, which has always split the pair here)."""
    predictor = isvc.spec.predictor.canary_traffic_percent
    transformer = isvc.spec.transformer.canary_traffic_percent if isvc.spec.transformer is not None else None
    if transformer is None or stable is None:
        return predictor
    if served_document(stable.predictor) != served_document(latest.predictor):
        return predictor
    return transformer


def _single(revision: str | None, latest: str) -> tuple[TrafficTarget, ...]:
    if revision is None:
        return ()
    return (TrafficTarget(revision, 100, "latest", revision == latest),)


def service_url(isvc: InferenceService, domain: str) -> str:
    return f"http://{isvc.metadata.name}.{isvc.metadata.namespace}.{domain}"


# Knative's condition severities: KServe's Ready is NewLivingConditionSet(PredictorReady, IngressReady); those
# and Ready are terminal (severity Error, written as no severity), any other condition is Info.
TERMINAL = frozenset({"Ready", "PredictorReady", "IngressReady"})
STOPPED_MESSAGE = (
    'stopped: metadata.annotations.serving.kserve.io/stop is "true" (set it to "false" to resume)'
)
INGRESS_NOT_CREATED = "Predictor ingress not created"  # KServe's IngressReady reason while nothing serves


def condition(kind: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    """A Knative condition (`lastTransitionTime` comes from `stamp_conditions`); reason and message only when
    not True, as KServe's MarkTrue writes none."""
    cond: dict[str, Any] = {"type": kind, "status": "True" if ok else "False"}
    if kind not in TERMINAL:
        cond["severity"] = "Info"
    if reason and not ok:
        cond["reason"] = reason
    if message and not ok:
        cond["message"] = message
    return cond


def rfc3339(seconds: float) -> str:
    """A Kubernetes `metav1.Time` as it is serialised: UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def stamp_conditions(
    conditions: list[dict[str, Any]], previous: Mapping[str, Any] | None, now: float | None = None
) -> None:
    """Give each condition its `lastTransitionTime`: the previous one while its status is the same (the time
    it last flipped, as the Kubernetes conventions and Knative's Condition define it), else `now`."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or () if isinstance(c, dict)}
    stamp = rfc3339(time.time() if now is None else now)
    for cond in conditions:
        old = before.get(cond["type"]) or {}
        held = old.get("status") == cond["status"] and old.get("lastTransitionTime")
        cond["lastTransitionTime"] = held or stamp


def _component(
    isvc: InferenceService, component: str, domain: str, cluster_domain: str | None
) -> dict[str, Any]:
    """KServe's per-component URLs (the Knative Service `NAME-COMPONENT`): external and in-cluster."""
    host = f"{isvc.metadata.name}-{component}.{isvc.metadata.namespace}"
    return {
        "url": f"http://{host}.{domain}",
        "address": {"url": f"http://{host}.svc.{cluster_domain or 'cluster.local'}"},
    }


def _status(
    isvc: InferenceService,
    state: RolloutState,
    observed: Observed,
    traffic: tuple[TrafficTarget, ...],
    domain: str,
    cluster_domain: str | None = None,
) -> dict[str, Any]:
    latest = state.latest_created
    stopped = isvc.stopped
    serving_ok = (
        not stopped and bool(traffic) and all(t.revision in observed.ready for t in traffic if t.percent > 0)
    )
    latest_ok = latest in observed.ready and not stopped
    failure = STOPPED_MESSAGE if stopped else observed.failed.get(latest or "")
    latest_ready_revision = (
        latest if latest_ok else state.rolled_out if state.rolled_out in observed.ready else None
    )
    url = service_url(isvc, domain)
    rollout = _present(  # KServe's omitempty: a revision not there yet is left out, never written as null
        {
            "latestCreatedRevision": latest,
            "latestReadyRevision": latest_ready_revision,
            "latestRolledoutRevision": state.rolled_out,
            # While a canary runs, the revision taking the rest (tagged prev) is the previous rolled-out one.
            "previousRolledoutRevision": next(
                (t.revision for t in traffic if t.tag == "prev"), state.previous_rolled_out
            ),
            "traffic": [t.to_json() for t in traffic],
        }
    )
    reason = (
        "Stopped" if stopped else "RevisionFailed" if failure else ("" if latest_ok else "RevisionNotReady")
    )
    why, message = (
        reason or "NoTraffic",
        failure or (observed.progress.get(latest or "", "") if reason else ""),
    )
    conditions = [condition("PredictorReady", serving_ok, why, message)]
    if isvc.spec.transformer is not None:
        conditions.append(condition("TransformerReady", serving_ok, why, message))
    conditions += [
        # KServe writes the ingress once the predictor (and transformer) is ready: here, the router routes the
        # service to ready replicas (both backends write the route table in the same pass, before the status).
        condition("IngressReady", serving_ok, INGRESS_NOT_CREATED),
        condition("LatestDeploymentReady", latest_ok, reason, message),
    ]
    if stopped:  # KServe's Stopped condition (True while the stop annotation is)
        conditions.append({"type": "Stopped", "status": "True", "severity": "Info"})
    conditions.append(
        condition("Ready", serving_ok, why, message)
    )  # last: `serving up` and its tests read it

    address = (
        f"http://{isvc.metadata.name}.{isvc.metadata.namespace}.svc.{cluster_domain}"
        if cluster_domain
        else url
    )
    components = {"predictor": {**_component(isvc, "predictor", domain, cluster_domain), **rollout}}
    if isvc.spec.transformer is not None:
        components["transformer"] = {**_component(isvc, "transformer", domain, cluster_domain), **rollout}
    status = {
        "url": url,
        "address": {"url": address},
        "conditions": conditions,
        "components": components,
        "modelStatus": _model_status(
            latest_ok, serving_ok, None if stopped else failure, observed.no_runtime.get(latest or "")
        ),
        "deploymentMode": deployment_mode(isvc),
    }
    # The runtime of the latest revision; while it has none (no runtime serves it) the one still serving, as
    # KServe's status keeps the name its last successful selection wrote.
    selected = observed.runtimes.get(latest or "") or observed.runtimes.get(state.rolled_out or "")
    if selected is not None:
        kind, name = selected
        key = "clusterServingRuntimeName" if kind == "ClusterServingRuntime" else "servingRuntimeName"
        status[key] = name
    return _present(status)


def deployment_mode(isvc: InferenceService) -> str | None:
    """KServe's `status.deploymentMode`: the `serving.kserve.io/deploymentMode` annotation in current KServe's
    names (its `GetDeploymentMode`: Serverless is written Knative, RawDeployment Standard), Knative without one
    (our default mode: revisions, traffic split, scale to zero). None for a value apply refuses."""
    try:
        mode = annotated_deployment_mode(isvc.metadata.annotations)
    except AutoscaleSpecError:
        return None
    return "Standard" if mode in RAW_MODES else "Knative"


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """Without the fields that have no value (None, an empty list): Go's `omitempty`, as KServe writes them."""
    return {k: v for k, v in fields.items() if v is not None and v != []}


def _model_status(
    latest_ok: bool, serving_ok: bool, failure: str | None, no_runtime: str | None
) -> dict[str, Any]:
    """KServe's `modelStatus` of the latest revision (`UpdateModelRevisionStates` / `UpdateModelTransitionStatus`):
    ready: UpToDate / Loaded; no runtime serves it: InvalidSpec / FailedToLoad with reason NoSupportingRuntime,
    RuntimeNotRecognized or RuntimeDisabled; its storage or model failed: BlockedByFailedLoad / FailedToLoad with
    reason ModelLoadFailed; else InProgress / Pending."""
    if latest_ok:
        transition, target = "UpToDate", "Loaded"
    elif no_runtime is not None:
        transition, target = "InvalidSpec", "FailedToLoad"
    elif failure:
        transition, target = "BlockedByFailedLoad", "FailedToLoad"
    else:
        transition, target = "InProgress", "Pending"
    model: dict[str, Any] = {
        "transitionStatus": transition,
        "states": {"activeModelState": "Loaded" if serving_ok else "Pending", "targetModelState": target},
    }
    if no_runtime is not None and not latest_ok:
        model["lastFailureInfo"] = {"reason": failure_reason(no_runtime), "message": no_runtime}
    elif failure:
        model["lastFailureInfo"] = {"reason": "ModelLoadFailed", "message": failure}
    return model
