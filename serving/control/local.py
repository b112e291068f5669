"""The local backend: applies `plan()` with processes on this machine and feeds the router its table.

One reconcile loop (level-based, serialised): on every apply/delete, replica state change or tick it
recomputes each InferenceService's plan from the persisted rollout state and what the replicas report,
starts/scales/stops runners, swaps the route table, and persists rollout state and status.
Revisions leave the route table before their processes stop, and stop only once drained.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.control.reconcile import Observed, Plan, RolloutState, plan
from serving.control.routes import RouteSink, route_table, routes_for
from serving.control.runner import ReplicaFactory, ReplicaHandle, RevisionRunner
from serving.control.state import StateStore
from serving.control.storage_bridge import resolve_model_dir
from serving.errors import NotFound, ServingError
from serving.revision import Revision
from serving.router.table import RouteTable
from serving.spec import InferenceService, parse
from serving.storage import StorageConfig

log = logging.getLogger("serving.local")
TICK_S = 1.0


@dataclass
class Service:
    isvc: InferenceService
    document: dict[str, Any]
    rollout: RolloutState = field(default_factory=RolloutState)
    status: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    generation: int = 1

    def record(self) -> dict[str, Any]:
        return {"document": self.document, "rollout": self.rollout.to_json(), "status": self.status,
                "created": self.created, "generation": self.generation}


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One running model-server process and the labels its metrics get in the federated /metrics."""

    url: str
    labels: dict[str, str]


class LocalControlPlane:
    """`routes` receives every new route table (the router); `replica_factory(name, spec, log_dir)` makes one
    replica (default: a supervised OS process; tests pass in-process fakes with the same small interface)."""

    def __init__(
        self, store: StateStore, routes: RouteSink, *, domain: str = "example.com", storage: StorageConfig | None = None,
        predictor_flags: tuple[str, ...] = (), replica_factory: ReplicaFactory | None = None,
    ) -> None:
        self.store = store
        self.predictor_flags = predictor_flags
        self.routes = routes
        self.replica_factory = replica_factory
        self._version = 0
        self.domain = domain
        self.storage = storage or StorageConfig(cache_dir=store.root / "cache")
        self.services: dict[tuple[str, str], Service] = {}
        self.runners: dict[tuple[str, str], RevisionRunner] = {}  # (namespace, revision) -> runner
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self.store.prepare()
        for record in self.store.load_all():
            try:
                isvc = parse(record["document"])
            except (ServingError, KeyError) as exc:
                log.error("skipping a stored InferenceService that no longer validates: %s", exc)
                continue
            service = Service(isvc, record["document"], RolloutState.from_json(record.get("rollout", {})),
                              record.get("status", {}), record.get("created", time.time()), record.get("generation", 1))
            self.services[isvc.key] = service
        await self.reconcile()
        self._loop_task = asyncio.create_task(self._loop(), name="reconcile")

    async def shutdown(self) -> None:
        """Stop routing, then stop every process (each drains its in-flight requests)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        self.routes.set_table(RouteTable())
        runners = list(self.runners.values())
        self.runners.clear()
        await asyncio.gather(*(self._drain_and_stop(r) for r in runners), *self._background, return_exceptions=True)

    # -- API ---------------------------------------------------------------------------------------
    async def apply(self, isvc: InferenceService, document: dict[str, Any]) -> Service:
        async with self._lock:
            old = self.services.get(isvc.key)
            service = Service(isvc, document, old.rollout if old else RolloutState(), old.status if old else {},
                              old.created if old else time.time(), (old.generation + 1) if old else 1)
            self.store.save(*isvc.key, service.record())  # raises StateError: nothing changes in memory then
            self.services[isvc.key] = service
        await self.reconcile()
        return self.services[isvc.key]

    async def delete(self, namespace: str, name: str) -> None:
        async with self._lock:
            if (namespace, name) not in self.services:
                raise NotFound(f"InferenceService {namespace}/{name} not found")
            self.store.delete(namespace, name)
            del self.services[(namespace, name)]
        await self.reconcile()

    async def observe(self, namespace: str, name: str) -> dict[str, Any] | None:
        service = self.services.get((namespace, name))
        return None if service is None else service.status

    def get(self, namespace: str, name: str) -> Service:
        service = self.services.get((namespace, name))
        if service is None:
            raise NotFound(f"InferenceService {namespace}/{name} not found")
        return service

    def scrape_targets(self) -> list[ScrapeTarget]:
        """Every running model-server process, labelled for the federated /metrics."""
        targets = []
        for (namespace, _), runner in self.runners.items():
            revision = runner.revision
            for component, replicas in (("predictor", runner.predictors), ("transformer", runner.transformers)):
                for index, replica in enumerate(replicas):
                    if not replica.port:
                        continue  # not listening yet
                    labels = {"isvc": revision.isvc, "namespace": namespace, "revision": revision.name,
                              "component": component, "replica": str(index)}
                    targets.append(ScrapeTarget(replica.url, labels))
        return targets

    def ready(self) -> bool:
        return all(s.status.get("conditions", [{}])[-1].get("status") == "True" for s in self.services.values())

    # -- reconcile ---------------------------------------------------------------------------------
    def _changed(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:  # keep reconciling whatever one pass hit
                log.exception("reconcile failed")

    async def reconcile(self) -> None:
        async with self._lock:
            plans = {key: self._plan(service) for key, service in self.services.items()}
            wanted: dict[tuple[str, str], tuple[Revision, int]] = {}
            for (namespace, _), p in plans.items():
                for name, replicas in p.run.items():
                    wanted[(namespace, name)] = (p.state.revisions[name], replicas)
            retiring = await self._converge(wanted)
            self.routes.set_table(self._table(plans))
            for runner, leaving in retiring:  # only now: they are out of the table
                self._spawn(self._drain_and_stop(runner, leaving))
            for key, p in plans.items():
                self._record(self.services[key], p)

    def _plan(self, service: Service) -> Plan:
        namespace = service.isvc.metadata.namespace
        ready, failed = set(), {}
        for (ns, name), runner in self.runners.items():
            if ns != namespace:
                continue
            if runner.ready():
                ready.add(name)
            elif (why := runner.failure()) is not None:
                failed[name] = why
        return plan(service.isvc, service.rollout, Observed(frozenset(ready), failed), self.domain)

    async def _converge(
        self, wanted: dict[tuple[str, str], tuple[Revision, int]]
    ) -> list[tuple[RevisionRunner, list[ReplicaHandle] | None]]:
        """Start and scale runners; return what must stop (after the route table no longer lists it)."""
        retiring: list[tuple[RevisionRunner, list[ReplicaHandle] | None]] = []
        for key, (revision, replicas) in wanted.items():
            runner = self.runners.get(key)
            if runner is None:
                runner = await self._new_runner(revision)
                self.runners[key] = runner
            removed = runner.scale(replicas) if not runner.error else []
            if removed:
                retiring.append((runner, removed))
        for key in [k for k in self.runners if k not in wanted]:
            retiring.append((self.runners.pop(key), None))
        return retiring

    async def _new_runner(self, revision: Revision) -> RevisionRunner:
        log_dir = self.store.root / "logs"
        try:
            model_dir = await asyncio.to_thread(resolve_model_dir, revision, self.storage)
        except ServingError as exc:
            runner = RevisionRunner(revision, Path("."), log_dir, self._changed, replica_factory=self.replica_factory)
            runner.error = f"spec.predictor.model.storageUri: {exc.message}"
            return runner
        return RevisionRunner(revision, model_dir, log_dir, self._changed, self.predictor_flags, self.replica_factory)

    async def _drain_and_stop(self, runner: RevisionRunner, replicas: list[ReplicaHandle] | None = None) -> None:
        targets = runner.all_replicas() if replicas is None else replicas
        await self.routes.drain([r.url for r in targets if r.port])
        await runner.stop(targets)
        if replicas is None:  # the whole revision retired
            revision = runner.revision
            self.routes.forget(revision.isvc, revision.namespace, revision.name)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _table(self, plans: dict[tuple[str, str], Plan]) -> RouteTable:
        routes = {key: routes_for(self.services[key].isvc, p, self._endpoints(key[0]), self.domain)
                  for key, p in plans.items()}
        self._version += 1
        return route_table(routes, self._version)

    def _endpoints(self, namespace: str) -> Callable[[str], tuple[str, ...]]:
        def ready_urls(revision: str) -> tuple[str, ...]:
            runner = self.runners.get((namespace, revision))
            return runner.endpoints() if runner else ()
        return ready_urls

    def _record(self, service: Service, p: Plan) -> None:
        status = {**p.status, "observedGeneration": service.generation}
        if p.state != service.rollout or status != service.status:
            service.rollout, service.status = p.state, status
            try:
                self.store.save(*service.isvc.key, service.record())
            except ServingError as exc:
                log.error("could not persist state: %s", exc.message)
