"""The operator: thin kopf handlers that only wire cluster events to `KubernetesBackend.reconcile`.

- create/update/resume of an InferenceService -> reconcile (typed errors: temporary -> retried with
  exponential backoff, permanent -> reported and not retried until the next spec change);
- a Deployment of ours changes (readiness) -> reconcile its InferenceService;
- a timer every `resync_s` -> reconcile (drains finish, missed events are caught up: level-based);
- ServingRuntime / ClusterServingRuntime events -> the runtimes selection reads (listed once at startup too),
  and a change reconciles the InferenceServices it may affect;
- delete -> out of the route table, drain, delete children (ownerReferences would also let the garbage
  collector do it; doing it here keeps the route table honest);
- Canary objects (serving.dev/v1alpha1) -> the canary host tracks them (every watch event, no finalizer), and one
  loop ticks the same CanaryController as `serving up` every `canary_tick_s`.
Handlers are registered on an explicit registry built at run time, never at import. Every handler is async
and runs the backend's blocking client calls in a thread (`asyncio.to_thread`), and waits with
`asyncio.sleep`: nothing blocks kopf's event loop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from serving.canary.crd import GROUP as CANARY_GROUP
from serving.canary.crd import PLURAL as CANARY_PLURAL
from serving.canary.crd import VERSION as CANARY_VERSION
from serving.cluster import Cluster, PermanentClusterError, TemporaryClusterError
from serving.control.kubernetes.backend import KubernetesBackend, OperatorConfig
from serving.control.kubernetes.canaries import KubernetesCanaryHost
from serving.control.kubernetes.render import LABEL_ISVC
from serving.crd import PLURAL, VERSION
from serving.runtime_crd import NAMES as RUNTIME_NAMES
from serving.runtime_crd import VERSION as RUNTIME_VERSION
from serving.spec import OUR_GROUP

log = logging.getLogger("serving.operator")
MAX_BACKOFF_S = 60.0


def _guarded(backend: KubernetesBackend, namespace: str | None, name: str, retry: int) -> None:
    """Reconcile; returns nothing (kopf would store a handler's result in the status)."""
    try:
        backend.reconcile(namespace or "default", name)
    except TemporaryClusterError as exc:
        raise kopf.TemporaryError(exc.message, delay=min(MAX_BACKOFF_S, 2.0 ** min(retry, 6))) from exc
    except PermanentClusterError as exc:
        raise kopf.PermanentError(exc.message) from exc


async def _logged(backend: KubernetesBackend, namespace: str, name: str, why: str) -> None:
    """A reconcile whose failure is only logged (the next event or resync tries again)."""
    try:
        await asyncio.to_thread(backend.reconcile, namespace, name)
    except (TemporaryClusterError, PermanentClusterError) as exc:
        log.warning("reconcile of %s/%s after %s: %s", namespace, name, why, exc.message)


def build_registry(
    backend: KubernetesBackend,
    connection: kopf.ConnectionInfo | None = None,
    canaries: KubernetesCanaryHost | None = None,
) -> kopf.OperatorRegistry:
    """Every handler, bound to one backend. `connection` overrides the kubeconfig/in-cluster login (tests)."""
    registry = kopf.OperatorRegistry()
    _canary_handlers(registry, canaries or KubernetesCanaryHost(backend), backend.config.canary_tick_s)
    config = backend.config
    isvc = (OUR_GROUP, VERSION, PLURAL)

    if connection is not None:

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return connection
    else:
        kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress in our own annotations; status belongs to KServe's fields and our rollout record.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=OUR_GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=OUR_GROUP)
        settings.persistence.finalizer = f"{OUR_GROUP}/operator"
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        await asyncio.to_thread(backend.start)

    @kopf.on.resume(*isvc, registry=registry)
    @kopf.on.create(*isvc, registry=registry)
    @kopf.on.update(*isvc, registry=registry)
    async def changed(namespace: str | None, name: str, retry: int, **_: Any) -> None:
        await asyncio.to_thread(_guarded, backend, namespace, name, retry)

    @kopf.on.timer(*isvc, interval=config.resync_s, registry=registry)
    async def resync(namespace: str | None, name: str, **_: Any) -> None:
        await _logged(backend, namespace or "default", name, "resync")

    @kopf.on.event("apps", "v1", "deployments", labels={LABEL_ISVC: kopf.PRESENT}, registry=registry)
    async def workload(namespace: str | None, labels: Mapping[str, str], type: str, **_: Any) -> None:
        if not type:  # the initial listing: the resume handlers cover it
            return
        await _logged(backend, namespace or "default", labels[LABEL_ISVC], "a Deployment event")

    @kopf.on.delete(*isvc, registry=registry)
    async def deleted(namespace: str | None, name: str, **_: Any) -> None:
        try:
            await backend.delete(namespace or "default", name)
        except TemporaryClusterError as exc:
            raise kopf.TemporaryError(exc.message, delay=5) from exc

    _runtime_handlers(registry, backend)
    return registry


def _canary_handlers(registry: kopf.OperatorRegistry, host: KubernetesCanaryHost, tick_s: float) -> None:
    """Canary documents in, one tick loop (its blocking reads and writes in a thread) started and stopped with kopf."""
    loop: list[asyncio.Task[None]] = []

    async def ticking() -> None:
        while True:
            await asyncio.sleep(tick_s)
            try:
                await asyncio.to_thread(host.tick)
            except Exception:  # one bad pass (a router unreachable) must not end the loop
                log.exception("canary tick failed")

    servers: list[Any] = []

    @kopf.on.startup(registry=registry)
    async def start_canaries(**_: Any) -> None:
        loop.append(asyncio.create_task(ticking(), name="canaries"))
        if host.config.metrics_port:  # serving_canary_weight / _transitions_total for Prometheus (a thread)
            servers.append(start_http_server(host.config.metrics_port, registry=host.registry)[0])

    @kopf.on.cleanup(registry=registry)
    async def stop_canaries(**_: Any) -> None:
        for task in loop:
            task.cancel()
        for server in servers:
            await asyncio.to_thread(server.shutdown)

    @kopf.on.event(CANARY_GROUP, CANARY_VERSION, CANARY_PLURAL, registry=registry)
    async def canary_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        await asyncio.to_thread(host.document_event, copy.deepcopy(dict(body)), type)


def _runtime_handlers(registry: kopf.OperatorRegistry, backend: KubernetesBackend) -> None:
    """ServingRuntime / ClusterServingRuntime events -> the backend's runtimes; a change that may alter selection
    reconciles the InferenceServices it can affect (its namespace, or all for a cluster runtime) at once."""

    async def runtime_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        changed, scope = await asyncio.to_thread(backend.runtimes.event, copy.deepcopy(dict(body)), type)
        if not changed:
            return
        for namespace, name in [key for key in list(backend.routes) if scope is None or key[0] == scope]:
            await _logged(backend, namespace, name, f"a {body.get('kind', 'runtime')} change")

    for plural, *_ in RUNTIME_NAMES.values():
        kopf.on.event(OUR_GROUP, RUNTIME_VERSION, plural, id=f"runtime-{plural}", registry=registry)(
            runtime_event
        )


async def run(
    config: OperatorConfig,
    *,
    namespaces: list[str],
    standalone: bool = False,
    liveness: str | None = None,
    cluster: Cluster | None = None,
    connection: kopf.ConnectionInfo | None = None,
    stop_flag: Any = None,
) -> None:
    """Run until stopped; cluster-wide when `namespaces` is empty."""
    backend = KubernetesBackend(cluster or Cluster.from_environment(), config)
    await kopf.operator(
        registry=build_registry(backend, connection),
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=standalone,
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
    )
