"""The Kubernetes backend: one level-based reconcile per InferenceService, running the shared `plan()`.

read isvc -> observe its Deployments -> plan (same function as the local backend) -> create-or-patch the
revisions it runs -> write the route table (ConfigMap the in-cluster router polls) -> retire revisions that
left the table once `drain_s` has passed -> write the KServe status (plus our rollout record).
`reconcile` is synchronous (blocking client calls, one lock per InferenceService): the operator runs it in a
thread, never on its event loop; the `Backend` methods (`apply`, `delete`, `observe`) are async wrappers that
do the same and wait with `asyncio.sleep`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from serving.cluster import ROUTES_KEY, Cluster, PermanentClusterError, merge_patch
from serving.control.kubernetes.credentials import secrets_by_account, storage_locations, storage_secret
from serving.control.kubernetes.documents import apply_document, convert_document
from serving.control.kubernetes.render import (
    ENTRY_COMPONENT,
    LABEL_COMPONENT,
    LABEL_ISVC,
    LABEL_REVISION,
    RenderSettings,
    entry_component,
    entry_services,
    in_cluster_hosts,
    owner_reference,
    revision_objects,
    service_url,
)
from serving.control.kubernetes.runtimes import ClusterRuntimes, field_message
from serving.control.reconcile import (
    INGRESS_NOT_CREATED,
    Observed,
    Plan,
    RolloutState,
    condition,
    plan,
    stamp_conditions,
)
from serving.control.routes import NO_CANARY, CanaryPolicy, route_table, routes_for
from serving.errors import ServingError
from serving.revision import Revision
from serving.router.table import RouteTable, ServiceRoute
from serving.servingruntime import ServiceMeta
from serving.spec import DEFAULT_TIMEOUT_S, EnvVar, InferenceService, parse

log = logging.getLogger("serving.operator")
RETIRED_AT = "serving.dev/retired-at"
OWN_STATUS = (  # the status keys the operator writes (one it no longer writes is removed)
    "url",
    "address",
    "conditions",
    "components",
    "modelStatus",
    "observedGeneration",
    "rollout",
    "deploymentMode",
    "servingRuntimeName",
    "clusterServingRuntimeName",
)
CHILD_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler")
KEDA_KINDS = (*CHILD_KINDS, "ScaledObject")  # with --keda-prometheus-url (the KEDA CRDs are installed then)


@dataclass(frozen=True)
class OperatorConfig:
    render: RenderSettings = field(default_factory=RenderSettings)
    domain: str = "example.com"
    routes_namespace: str = "serving-system"
    routes_name: str = "serving-routes"
    drain_s: float = 30.0
    resync_s: float = 10.0
    default_timeout_s: float = float(DEFAULT_TIMEOUT_S)  # a service without `timeout`
    # Canary policies: the router pods (in routes_namespace) whose /metrics are read, and how often to look.
    router_selector: tuple[tuple[str, str], ...] = (
        ("app.kubernetes.io/name", "serving"),
        ("app.kubernetes.io/component", "router"),
    )
    canary_tick_s: float = 1.0
    metrics_port: int = 0  # the operator's own /metrics (serving_canary_* series); 0: not served
    prometheus_url: str = ""  # where Canary `query:` metrics are evaluated; empty: such checks get no data
    # NAMESPACE/NAME of the router's Service: each InferenceService's in-cluster names (ExternalName Services)
    # point at it; empty: none are made
    router_service: str = ""


def from_cluster(body: dict[str, Any]) -> InferenceService:
    """Parse a live object: server-managed metadata (managedFields, finalizers...) is not part of the spec."""
    meta = body.get("metadata", {})
    document = {
        **body,
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
        "status": None,
    }
    return parse(document)


def observe(deployments: list[dict[str, Any]], transformer: dict[str, bool]) -> Observed:
    """Ready: every component of the revision has a ready replica. Failed: a Deployment says it gave up."""
    ready: dict[str, set[str]] = {}
    failed: dict[str, str] = {}
    for d in deployments:
        labels = d["metadata"].get("labels", {})
        revision, component = labels.get(LABEL_REVISION, ""), labels.get(LABEL_COMPONENT, "")
        status = d.get("status") or {}
        if (status.get("readyReplicas") or 0) >= 1:
            ready.setdefault(revision, set()).add(component)
        for cond in status.get("conditions") or []:
            gave_up = cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded"
            if gave_up or (cond.get("type") == "ReplicaFailure" and cond.get("status") == "True"):
                failed[revision] = f"{component}: {cond.get('message') or cond.get('reason')}"
    wanted = {
        name: ({"predictor", "transformer"} if has_t else {"predictor"})
        for name, has_t in transformer.items()
    }
    done = frozenset(name for name, parts in ready.items() if wanted.get(name, {"predictor"}) <= parts)
    return Observed(done, failed)


def with_scaled_to_zero(
    observed: Observed, deployments: list[dict[str, Any]], isvc: InferenceService
) -> Observed:
    """minReplicas 0: a revision whose predictor Deployment KEDA scaled to 0 still serves — ready for `plan()`
    (traffic stays), while its route arm has no endpoint, so the router's activator holds its requests."""
    if isvc.spec.predictor.min_replicas != 0:
        return observed
    idle = {
        d["metadata"].get("labels", {}).get(LABEL_REVISION, "")
        for d in deployments
        if d["metadata"].get("labels", {}).get(LABEL_COMPONENT) == "predictor"
        and (d.get("spec") or {}).get("replicas") == 0
    }
    return replace(observed, ready=observed.ready | frozenset(idle - set(observed.failed)))


class KubernetesBackend:
    def __init__(self, cluster: Cluster, config: OperatorConfig) -> None:
        self.cluster = cluster
        self.config = config
        self.routes: dict[tuple[str, str], ServiceRoute] = {}
        self.canaries: CanaryPolicy = NO_CANARY  # a KubernetesCanaryHost when the operator runs canaries
        # Asked before a promotion with no Canary tracked: the weight a Canary that exists for the service but
        # has not reached the canary host yet will give (None: there is none). Set by KubernetesCanaryHost.
        self.untracked_canary: Callable[[tuple[str, str]], int | None] = lambda key: None
        self.version = 0
        self.runtimes = ClusterRuntimes()  # ServingRuntimes: seeded in start(), kept current by the watch
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self._routes_lock = threading.Lock()

    def start(self) -> None:
        """Seed the route table from the ConfigMap so a restart does not drop routes before resuming,
        and the runtimes, so the first reconciles select among all of them."""
        self.runtimes.seed(self.cluster)
        cm = self.cluster.get("ConfigMap", self.config.routes_namespace, self.config.routes_name)
        if cm and (cm.get("data") or {}).get(ROUTES_KEY):
            table = RouteTable.from_json(json.loads(cm["data"][ROUTES_KEY]))
            self.routes, self.version = dict(table.services), table.version

    def _kinds(self) -> tuple[str, ...]:
        return KEDA_KINDS if self.config.render.keda_prometheus_url else CHILD_KINDS

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    # -- reconcile -----------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> Plan | None:
        with self._lock((namespace, name)):
            body = self.cluster.get("InferenceService", namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            old_status = body.get("status") or {}
            try:
                isvc = from_cluster(body)
            except ServingError as exc:
                self._write_status(namespace, name, old_status, _invalid(exc.message, old_status))
                raise PermanentClusterError(f"{namespace}/{name}: {exc.message}") from exc
            live = {kind: self.cluster.list(kind, namespace, {LABEL_ISVC: name}) for kind in self._kinds()}
            state = _rollout(old_status.get("rollout"))
            latest = Revision.from_spec(isvc)
            known = {**(state.revisions if state else {}), latest.name: latest}
            observed = observe(
                live["Deployment"], {n: r.transformer_process is not None for n, r in known.items()}
            )
            chosen = self.runtimes.select(known.values(), ServiceMeta.of(isvc.metadata))
            flags, no_runtime, envs = chosen.flags, chosen.failures, chosen.envs
            observed = replace(
                observed,
                failed={**observed.failed, **{n: field_message(m) for n, m in no_runtime.items()}},
                no_runtime=no_runtime,
                runtimes={n: (r.kind, r.name) for n, r in chosen.runtimes.items()},
            )
            seen = with_scaled_to_zero(observed, live["Deployment"], isvc)
            percent = self.canaries.percent_for(isvc.key)
            p = self._plan(isvc, state, seen, percent, old_status)
            if percent is None and _promotes(state, p):
                held = self.untracked_canary(isvc.key)
                if held is not None:
                    log.info(
                        "%s/%s: a Canary for it is not tracked yet; %s stays at %d%% until it is",
                        namespace,
                        name,
                        p.state.rolled_out,
                        held,
                    )
                    p = self._plan(isvc, state, seen, held, old_status)
            settings = replace(self._settings(isvc, p, flags, no_runtime, envs), runtimes=chosen.runtimes)
            self._converge(isvc, body["metadata"].get("uid", ""), p, live, settings)
            self._set_route(isvc, p, observed)
            self._retire(namespace, p, live)
            status = {
                **p.status,
                "observedGeneration": body["metadata"].get("generation", 1),
                "rollout": p.state.to_json(),
            }
            self._write_status(namespace, name, old_status, _compact(status))
            return p

    def _plan(
        self,
        isvc: InferenceService,
        state: RolloutState | None,
        observed: Observed,
        percent: int | None,
        previous: dict[str, Any],
    ) -> Plan:
        return plan(
            isvc,
            state,
            observed,
            self.config.domain,
            canary_percent=percent,
            previous=previous,
            cluster_domain=self.config.render.cluster_domain,
        )

    def _settings(
        self,
        isvc: InferenceService,
        p: Plan,
        flags: dict[str, tuple[str, ...]],
        no_runtime: dict[str, str],
        envs: dict[str, tuple[EnvVar, ...]],
    ) -> RenderSettings:
        """This reconcile's render inputs: runtime flags and the storage credentials of the revisions to render."""
        namespace = isvc.metadata.namespace
        rendered = [p.state.revisions[name] for name in p.run if name not in no_runtime]
        locations, problems = storage_locations(  # KServe's `storage:`: the URI from the storage Secret
            rendered,
            isvc.metadata.annotations,
            lambda secret: storage_secret(self.cluster, namespace, secret),
            f"was not found in namespace {namespace} (or is not readable)",
        )
        for problem in problems:
            log.warning("%s/%s: %s", namespace, isvc.metadata.name, problem)
        return replace(
            self.config.render,
            runtime_flags={n: f for n, f in flags.items() if n not in no_runtime},
            runtime_env=envs,
            service_account_secrets=secrets_by_account(self.cluster, namespace, rendered),
            storage_locations=locations,
        )

    def _converge(
        self,
        isvc: InferenceService,
        uid: str,
        p: Plan,
        live: dict[str, list[dict[str, Any]]],
        settings: RenderSettings,
    ) -> None:
        """Render the planned revisions that have a runtime (one without keeps whatever it had)."""
        owner = owner_reference(isvc, uid) if uid else None
        by_name = {(kind, o["metadata"]["name"]): o for kind, items in live.items() for o in items}
        wanted: set[tuple[str, str]] = set()
        run = {name: replicas for name, replicas in p.run.items() if name in settings.runtime_flags}
        for revision_name, replicas in run.items():
            revision = p.state.revisions[revision_name]
            exists = any(
                k == "Deployment" and o["metadata"]["labels"].get(LABEL_REVISION) == revision_name
                for (k, _), o in by_name.items()
            )
            for obj in revision_objects(isvc, revision, replicas, settings, owner, existing=exists):
                key = (obj["kind"], obj["metadata"]["name"])
                wanted.add(key)
                outcome = self.cluster.apply(obj, by_name.get(key), known=True)
                if outcome != "unchanged":
                    log.info("%s %s/%s %s", obj["kind"], isvc.metadata.namespace, key[1], outcome)
        if self.config.router_service:
            router_namespace, _, router_name = self.config.router_service.partition("/")
            router_host = f"{router_name}.{router_namespace}.svc.{settings.cluster_domain}"
            for obj in entry_services(isvc, router_host, owner):
                key = (obj["kind"], obj["metadata"]["name"])
                if key not in by_name and self.cluster.get("Service", isvc.metadata.namespace, key[1]):
                    log.warning(  # someone's own Service by that name: never taken over
                        "Service %s/%s exists and is not ours: left as it is (%s's in-cluster name is not "
                        "routed through it)",
                        isvc.metadata.namespace,
                        key[1],
                        isvc.metadata.name,
                    )
                    continue
                wanted.add(key)
                if self.cluster.apply(obj, by_name.get(key), known=True) == "created":
                    log.info("Service %s/%s created (-> %s)", isvc.metadata.namespace, key[1], router_host)
        for (kind, obj_name), obj in by_name.items():  # e.g. an HPA after min == max, NAME-predictor after
            labels = obj["metadata"]["labels"]  # a transformer came
            ours = labels.get(LABEL_REVISION) in run or labels.get(LABEL_COMPONENT) == ENTRY_COMPONENT
            if ours and (kind, obj_name) not in wanted:
                self.cluster.delete(kind, isvc.metadata.namespace, obj_name)

    def _retire(self, namespace: str, p: Plan, live: dict[str, list[dict[str, Any]]]) -> None:
        """Revisions out of the plan: out of the route table already; deleted once drained."""
        now = time.time()  # persisted across operator restarts, so wall clock
        for d in live["Deployment"]:
            revision = d["metadata"]["labels"].get(LABEL_REVISION)
            since = (d["metadata"].get("annotations") or {}).get(RETIRED_AT)
            if revision in p.run:
                if since is not None:  # brought back (a rollback): its next retirement drains it afresh
                    self.cluster.patch(
                        "Deployment",
                        namespace,
                        d["metadata"]["name"],
                        {"metadata": {"annotations": {RETIRED_AT: None}}},
                    )
                continue
            if since is None:
                self.cluster.patch(
                    "Deployment",
                    namespace,
                    d["metadata"]["name"],
                    {"metadata": {"annotations": {RETIRED_AT: f"{now:.3f}"}}},
                )
            elif now - float(since) >= self.config.drain_s:
                self.delete_revision(namespace, live, revision)

    def delete_revision(
        self, namespace: str, live: dict[str, list[dict[str, Any]]], revision: str | None
    ) -> None:
        doomed = [
            (kind, namespace, o["metadata"]["name"])
            for kind, items in live.items()
            for o in items
            if revision is None or o["metadata"]["labels"].get(LABEL_REVISION) == revision
        ]
        if self.cluster.delete_all(doomed):
            log.info("deleted %d objects of %s/%s", len(doomed), namespace, revision or "all revisions")

    def _write_status(self, namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        patch = merge_patch({k: v for k, v in old.items() if k in OWN_STATUS}, new)
        if patch:
            self.cluster.patch_status(namespace, name, {"status": patch})

    # -- routes --------------------------------------------------------------------------------
    def route(self, isvc: InferenceService, p: Plan, observed: Observed) -> ServiceRoute:
        def service(name: str) -> tuple[str, ...]:
            revision = p.state.revisions[name]
            return (
                (service_url(revision, entry_component(revision), self.config.render),)
                if name in observed.ready
                else ()
            )

        return routes_for(
            isvc,
            p,
            service,
            self.config.domain,
            self.config.default_timeout_s,
            canary=self.canaries.routing_for(isvc.key),
            aliases=in_cluster_hosts(isvc, self.config.render.cluster_domain),
        )

    def _set_route(self, isvc: InferenceService, p: Plan, observed: Observed) -> None:
        route = self.route(isvc, p, observed)
        with self._routes_lock:
            if self.routes.get(isvc.key) != route:
                self.routes[isvc.key] = route
                self._write_routes()

    def _write_routes(self) -> None:
        self.version += 1
        table = route_table(self.routes, self.version)
        self.cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": self.config.routes_name,
                    "namespace": self.config.routes_namespace,
                    "labels": {
                        "app.kubernetes.io/part-of": "serving",
                        "app.kubernetes.io/managed-by": "serving-operator",
                    },
                },
                "data": {ROUTES_KEY: json.dumps(table.to_json(), sort_keys=True)},
            }
        )

    # -- delete --------------------------------------------------------------------------------
    def unroute(self, namespace: str, name: str) -> None:
        """Out of the route table (the routers poll it every second)."""
        with self._routes_lock:
            if self.routes.pop((namespace, name), None) is not None:
                self._write_routes()

    def delete_children(self, namespace: str, name: str) -> None:
        with self._lock((namespace, name)):
            live = {kind: self.cluster.list(kind, namespace, {LABEL_ISVC: name}) for kind in self._kinds()}
            self.delete_revision(namespace, live, None)

    # -- the Backend protocol (async; blocking calls in threads) ----------------------------------
    async def apply(self, isvc: InferenceService, document: dict[str, Any]) -> str:
        """Create or patch the InferenceService in the cluster; the operator reconciles it from there."""
        return await asyncio.to_thread(
            apply_document, self.cluster, convert_document(document, isvc.metadata.namespace)
        )

    async def delete(self, namespace: str, name: str) -> None:
        """Stop routing first, wait for in-flight requests, then delete every child object."""
        await asyncio.to_thread(self.unroute, namespace, name)
        if self.config.drain_s > 0:
            await asyncio.sleep(self.config.drain_s)
        await asyncio.to_thread(self.delete_children, namespace, name)

    async def observe(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The InferenceService's status as the cluster has it (None: no such object)."""
        body = await asyncio.to_thread(self.cluster.get, "InferenceService", namespace, name)
        return None if body is None else (body.get("status") or {})


def _rollout(data: dict[str, Any] | None) -> RolloutState | None:
    """The stored rollout record; nulls were dropped on the way in (merge-patch semantics), so restore them (in a
    copy: the status read from the cluster is what the next status patch is computed against, and a null put
    back in it made every reconcile write the status again, with nothing changed)."""
    if not data:
        return None
    revisions = {
        name: {"transformer": None, **revision} for name, revision in data.get("revisions", {}).items()
    }
    return RolloutState.from_json({**data, "revisions": revisions})


def _promotes(state: RolloutState | None, p: Plan) -> bool:
    """`p` makes a new revision the rolled-out one in place of another (which then retires: not undone later).

    The Canary's watch and the InferenceService's are separate streams: a Canary created before the new revision
    can reach the canary host after the reconcile that sees that revision ready. Before such a promotion the
    backend asks whether a Canary exists that it has not seen yet (`untracked_canary`)."""
    return state is not None and state.rolled_out is not None and p.state.rolled_out != state.rolled_out


def _compact(value: Any) -> Any:
    """Without null values: in a merge patch a null deletes the key, so never send one by accident."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def _invalid(message: str, old_status: dict[str, Any]) -> dict[str, Any]:
    conditions = [
        condition("PredictorReady", False, "InvalidSpec", message),
        condition("IngressReady", False, INGRESS_NOT_CREATED),
        condition("Ready", False, "InvalidSpec", message),
    ]
    stamp_conditions(conditions, old_status)
    return {"conditions": conditions}
