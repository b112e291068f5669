"""The local backend: applies `plan()` with processes on this machine and feeds the router its table.

One reconcile loop (level-based, serialised): on every apply/delete, replica state change or tick it
recomputes each InferenceService's plan from the persisted rollout state and what the replicas report,
starts/scales/stops runners, swaps the route table, and persists rollout state and status.
Revisions leave the route table before their processes stop, and stop only once drained.

Failures are retried as KServe's controller and kubelet do: a revision no ServingRuntime serves is selected
again when runtimes are applied or deleted (KServe requeues on runtime events); one whose storageUri could not
be fetched (KServe's storage-initializer in CrashLoopBackOff), or whose downloaded model failed to load, starts
again from scratch after an exponential backoff (1 s doubling to 5 min, reset once it is ready), its status
message saying when. A model's KServe `storage:` is resolved from the applied Secrets (`secrets.py`) when it is
fetched: a missing Secret or entry fails the same way, and a Secret applied starts those fetches again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.autoscale.knobs import knobs_from
from serving.autoscale.metrics import ScalingMetrics
from serving.control import events
from serving.control.local.autoscaler import (
    SAMPLE_INTERVAL_S,
    Autoscalers,
    Fleet,
    LoadSource,
    local_bounds,
    machine_max_replicas,
    stable_floor,
)
from serving.control.local.processes import ReplicaState
from serving.control.local.retry_note import retry_note
from serving.control.local.rollout_history import RolloutHistory
from serving.control.local.runner import ReplicaFactory, ReplicaHandle, RevisionRunner
from serving.control.local.secrets import KeptStore, kept_record
from serving.control.local.state import StateStore, write_atomic
from serving.control.local.storage_bridge import (
    AccountSource,
    SecretSource,
    account_env,
    let_go,
    location,
    resolve_at,
    resolve_composed,
)
from serving.control.process_args import SecretLookup
from serving.control.reconcile import Observed, Plan, RolloutState, plan
from serving.control.routes import NO_CANARY, CanaryPolicy, RouteSink, route_table, routes_for
from serving.control.runtime_catalog import RuntimeCatalog
from serving.errors import NotFound, ServingError, existing_names
from serving.revision import REMOTE_SCHEMES, Revision
from serving.router.table import RouteTable
from serving.servingruntime import ServiceMeta, parse_runtime
from serving.spec import InferenceService, parse
from serving.storage import StorageConfig, scheme_of
from serving.storage.errors import StorageError, StorageRefused, redact
from serving.storage.kserve_secrets import account_entry
from serving.storage.reclaim import entry_of, reclaim
from serving.storage.storage_spec import StorageSpecError, optional_entry, secret_name

log = logging.getLogger("serving.local")
TICK_S = 1.0
RUNTIME_FIELD = "spec.predictor.model.runtime"
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 300.0  # a failed fetch / load is retried after 1 s, doubling to 5 min
DUE_SLACK_S = 0.01  # asyncio may run a timer this much early (its clock resolution): still due
DOWNLOADS = "downloads"  # under the state directory: per revision, the download-cache entries it came from


@dataclass
class Service:
    isvc: InferenceService
    document: dict[str, Any]
    rollout: RolloutState = field(default_factory=RolloutState)
    status: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    generation: int = 1

    def record(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "rollout": self.rollout.to_json(),
            "status": self.status,
            "created": self.created,
            "generation": self.generation,
        }


@dataclass(frozen=True, slots=True)
class Retry:
    """A revision's failed attempt and when the next one starts."""

    runner: RevisionRunner  # the attempt that failed
    attempts: int  # failed attempts in a row
    delay_s: float
    due: float  # time.monotonic() of the next attempt
    message: str  # the failure, then when it is tried again


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One running model-server process and the labels its metrics get in the federated /metrics."""

    url: str
    labels: dict[str, str]


class LocalControlPlane:
    """`routes` receives every new route table (the router); `replica_factory(name, spec, log_dir)` makes one
    replica (default: a supervised OS process; tests pass in-process fakes with the same small interface)."""

    def __init__(
        self,
        store: StateStore,
        routes: RouteSink,
        *,
        domain: str = "example.com",
        storage: StorageConfig | None = None,
        predictor_flags: tuple[str, ...] = (),
        replica_factory: ReplicaFactory | None = None,
        load: LoadSource | None = None,
        scaling_metrics: ScalingMetrics | None = None,
        autoscale_interval_s: float = SAMPLE_INTERVAL_S,
        default_max_replicas: int | None = None,
        retry_first_s: float = RETRY_FIRST_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.store = store
        self.retry_first_s, self.retry_max_s = retry_first_s, retry_max_s
        self._retries: dict[tuple[str, str], Retry] = {}  # (namespace, revision) -> its backoff
        # revisions that were ready once: a later load failure (a cold start from zero, a restart) may be
        # passing (a file being replaced, memory short), so it is retried as a downloaded model's is
        self._was_ready: set[tuple[str, str]] = set()
        self._retry_now: set[tuple[str, str]] = set()  # failures an object applied meanwhile may have healed
        # The ceiling of a revision whose spec sets no maxReplicas (KServe: no upper bound): `serving up
        # --default-max-replicas`, default the CPU count.
        self.default_max_replicas = default_max_replicas or machine_max_replicas()
        self.predictor_flags = predictor_flags
        self.routes = routes
        self.replica_factory = replica_factory
        self._version = 0
        self.domain = domain
        self.storage = storage or StorageConfig(cache_dir=store.root / "cache")
        self.runtimes = RuntimeCatalog(store.root)  # ServingRuntimes: built-in + applied (persisted)
        self.secrets = KeptStore(store.root)  # v1 Secrets applied: what a model's `storage:` reads
        self.accounts = KeptStore(store.root, "ServiceAccount")  # whose Secrets give storageUri credentials
        self.services: dict[tuple[str, str], Service] = {}
        self.runners: dict[tuple[str, str], RevisionRunner] = {}  # (namespace, revision) -> runner
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._fetches: set[asyncio.Task[None]] = set()  # model downloads: cancelled, not awaited, at shutdown
        # the download cache is swept (`serving.storage.reclaim`) at start and after a revision retires
        self._reclaim_due = True
        self._reclaiming: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # One autoscaler loop per revision that scales (maxReplicas above minReplicas, or minReplicas 0);
        # `load` is the router's per-revision counts (serving.router.load.RevisionLoad).
        self.autoscalers = Autoscalers(
            load, self._fleet, self._changed, metrics=scaling_metrics, interval_s=autoscale_interval_s
        )
        self._desired: dict[tuple[str, str], dict[str, int]] = {}  # service -> revision -> replicas wanted
        self.history = RolloutHistory(store.root)
        # Canary policies (serving.control.local.canaries): their weight overrides canaryTrafficPercent, and they may
        # ask the router for session affinity or mirroring.
        self.canaries: CanaryPolicy = NO_CANARY

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, restored: Callable[[list[tuple[str, str]]], None] | None = None) -> None:
        """Load the stored services and start them; `restored` hears which, before any of them starts (its
        line comes first in the log)."""
        self.store.prepare()
        for record in self.store.load_all():
            try:
                isvc = parse(record["document"])
            except (ServingError, KeyError) as exc:
                log.error("skipping a stored InferenceService that no longer validates: %s", exc)
                continue
            service = Service(
                isvc,
                record["document"],
                RolloutState.from_json(record.get("rollout", {})),
                record.get("status", {}),
                record.get("created", time.time()),
                record.get("generation", 1),
            )
            self.services[isvc.key] = service
        if restored is not None:
            restored(list(self.services))
        await self.reconcile()
        self._loop_task = asyncio.create_task(self._loop(), name="reconcile")

    async def shutdown(self) -> None:
        """Stop routing, then stop every process (each drains its in-flight requests)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        for fetch in self._fetches:
            fetch.cancel()
        await self.autoscalers.close()
        self.routes.set_table(RouteTable())
        runners = list(self.runners.values())
        self.runners.clear()
        await asyncio.gather(
            *(self._drain_and_stop(r) for r in runners), *self._background, return_exceptions=True
        )

    # -- API ---------------------------------------------------------------------------------------
    async def apply(
        self,
        isvc: InferenceService,
        document: dict[str, Any],
        rolled_back_by: str = "canaryTrafficPercent: 0",
    ) -> Service:
        """Store and reconcile a service. A canary rolled back by this apply (its percent written 0, KServe's
        way, or `serving rollout rollback`: `rolled_back_by`) is in the rollout history."""
        async with self._lock:
            old = self.services.get(isvc.key)
            if old is not None and old.document == document:  # kubectl's `unchanged`: no new generation
                events.applied(isvc.key, "unchanged", old.generation)
                if not self._start_failed_again(*isvc.key):
                    return old
            else:
                if old is not None and _rolls_back(old, isvc):
                    self.history.event(*isvc.key, old.rollout.latest_created, "rolled back", rolled_back_by)
                service = Service(
                    isvc,
                    document,
                    old.rollout if old else RolloutState(),
                    old.status if old else {},
                    old.created if old else time.time(),
                    (old.generation + 1) if old else 1,
                )
                self.store.save(*isvc.key, service.record())  # raises StateError: nothing changes in memory
                self.services[isvc.key] = service
                self.history.remember(*isvc.key, Revision.from_spec(isvc).name, document)
                events.applied(isvc.key, "configured" if old else "created", service.generation)
        await self.reconcile()
        return self.services[isvc.key]

    async def apply_runtimes(self, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store ServingRuntimes / ClusterServingRuntimes. Revisions that found no runtime are selected again
        (KServe's controller requeues on runtime events); running ones keep the runtime they started with."""
        if not documents:
            return []
        async with self._lock:
            applied = [self.runtimes.apply(doc) for doc in documents]
            self._reselect()
        await self.reconcile()
        return applied

    async def delete_runtime(self, kind: str, namespace: str | None, name: str) -> list[str]:
        """Forget an applied runtime, as KServe lets you: revisions running with it keep running (KServe's
        Deployments stay); revisions that found no runtime are selected again. Returns the warnings."""
        async with self._lock:
            removed = parse_runtime(self.runtimes.delete(kind, namespace, name))
            users = sorted(
                {
                    _service_name(runner.revision.namespace, runner.revision.isvc)
                    for runner in self.runners.values()
                    if runner.runtime is not None
                    and not runner.error
                    and (runner.runtime.kind, runner.runtime.namespace, runner.runtime.name)
                    == (removed.kind, removed.namespace, removed.name)
                }
            )
            self._reselect()
        await self.reconcile()
        if not users:
            return []
        return [
            f"{kind.lower()}/{name} was in use by {', '.join(users)}: their running revisions keep serving with "
            "it (as KServe's Deployments do); a new revision of theirs, or a restart of serving up, selects a "
            "runtime again"
        ]

    async def apply_object(self, namespace: str, doc: dict[str, Any]) -> str:
        """Keep a `v1` Secret or ServiceAccount (created / configured / unchanged). A revision whose model could
        not be resolved or fetched tries again at once, as after its backoff (KServe's initializer would in its
        next restart): the object may be what it lacked."""
        record = kept_record(doc)  # validated before the lock: a bad one changes nothing
        async with self._lock:
            outcome = self.kept(doc["kind"]).put(namespace, doc["metadata"]["name"], record)
            if outcome != "unchanged":
                self._refetch(namespace)
        if outcome != "unchanged":
            await self.reconcile()
        return outcome

    async def delete_object(self, kind: str, namespace: str, name: str) -> None:
        """Forget a Secret or ServiceAccount; running revisions keep the model they fetched (a Pod keeps its
        /mnt/models)."""
        async with self._lock:
            self.kept(kind).delete(namespace, name)
            if kind == "Secret":  # a key file written for a fetch (GCS) goes with its Secret
                shutil.rmtree(self.secrets.folder / "keys" / namespace / name, ignore_errors=True)

    def kept(self, kind: str) -> KeptStore:
        """The store of the Secrets or the ServiceAccounts."""
        return self.accounts if kind == "ServiceAccount" else self.secrets

    def _start_failed_again(self, namespace: str, isvc: str) -> bool:
        """The same spec applied again while a revision of it failed (to load, to fetch): the files it reads
        may have been fixed, so it starts again now, as after its backoff (a Pod deleted by hand). Whether one
        did."""
        again = False
        for key, runner in list(self.runners.items()):
            if key[0] == namespace and runner.revision.isvc == isvc and runner.failure() is not None:
                del self.runners[key]
                self._retries.pop(key, None)
                let_go(runner.model_dir, self.storage)
                self._spawn(runner.stop())
                again = True
        return again

    def _refetch(self, namespace: str) -> None:
        """Forget the runners of `namespace` that a Secret or ServiceAccount may heal (their fetch failed, or an
        env secretKeyRef found nothing): the next reconcile makes them again."""
        for key, runner in list(self.runners.items()):
            if key[0] == namespace and runner.failed_step in ("secret", "storage"):
                del self.runners[key]
                self._spawn(runner.stop())
            elif key[0] == namespace and runner.fetching:
                # its fetch began before this object came (a ServiceAccount and its Secret applied one after
                # the other): if it fails, it goes again at once, not after its doubled backoff
                self._retry_now.add(key)

    def _secret_lookup(self, namespace: str) -> SecretLookup:
        """A key of an applied Secret of `namespace` (what an env `valueFrom.secretKeyRef` reads locally)."""

        def value(name: str, key: str) -> str | None:
            data = self.secrets.data(namespace, name)
            return None if data is None else data.get(key)

        return value

    def storage_warnings(self, isvc: InferenceService) -> list[str]:
        """A model's `storage:` whose Secret is not here (yet): said at apply, the revision fails until it is. A
        `serviceAccountName` not applied here: said, the fetch uses the environment's credentials."""
        predictor = isvc.spec.predictor
        model = predictor.normalised_model() if predictor.custom_container is None else None
        storage = model.storage if model is not None else None
        name = secret_name(isvc.metadata.annotations)
        uri = model.storage_uri if model is not None else None
        uris = [item.uri for item in model.storage_uris or ()] if model is not None else []
        account = predictor.service_account_name
        downloads = any(scheme_of(u) in REMOTE_SCHEMES for u in [*uris, uri or ""] if u)
        if storage is None and account and downloads:
            if self.accounts.record(isvc.metadata.namespace, account) is not None:
                return []
            return [
                f"spec.predictor.serviceAccountName: no ServiceAccount {account} in namespace "
                f"{isvc.metadata.namespace} here: the model is fetched with the credentials of serving up's "
                "environment and the predictor's env (serving apply -f the ServiceAccount and its Secrets to use "
                "theirs)"
            ]
        if storage is None or optional_entry(storage.key, storage.parameters, uri):
            return []
        if self.secrets.data(isvc.metadata.namespace, name) is not None:
            return []
        return [
            f"spec.predictor.model.storage: no Secret {name} in namespace {isvc.metadata.namespace} yet: its "
            "revision fails (and is retried) until it is applied (serving apply -f with the v1 Secret)"
        ]

    def _account_env(self, revision: Revision) -> dict[str, str]:
        """The storage credentials the Secrets of the revision's service account give (KServe's credential
        builder): none when that ServiceAccount, or a Secret it lists, is not applied here (as KServe skips it)."""
        account = self.accounts.record(revision.namespace, revision.service_account) or {}
        meta = {"name": revision.service_account, "annotations": account.get("annotations") or {}}
        secrets = [account_entry({"metadata": meta})]  # an IAM-role account's own s3-* annotations count
        for name in account.get("secrets", []):
            kept = self.secrets.record(revision.namespace, name)
            if kept is not None:
                meta = {"name": name, "annotations": kept.get("annotations") or {}}
                secrets.append({"metadata": meta, "stringData": kept["data"]})
        return account_env(secrets, self.secrets.folder / "keys" / revision.namespace)

    def _storage_secret(self, revision: Revision) -> tuple[str, dict[str, str] | None]:
        """The Secret a revision's `storage:` reads (its service's annotation names it) and its data."""
        service = self.services.get((revision.namespace, revision.isvc))
        name = secret_name(service.isvc.metadata.annotations if service is not None else {})
        return name, self.secrets.data(revision.namespace, name)

    def _reselect(self) -> None:
        """Forget the runners no runtime served: the next reconcile makes them again, selecting anew."""
        for key, runner in list(self.runners.items()):
            if runner.failed_step == "runtime":
                del self.runners[key]

    async def delete(self, namespace: str, name: str) -> None:
        async with self._lock:
            if (namespace, name) not in self.services:
                raise NotFound(f"InferenceService {namespace}/{name} not found{self._existing(namespace)}")
            self.store.delete(namespace, name)
            del self.services[(namespace, name)]
            self.history.forget(namespace, name)
            self._reclaim_due = True
            events.deleted((namespace, name))
        await self.reconcile()

    async def observe(self, namespace: str, name: str) -> dict[str, Any] | None:
        service = self.services.get((namespace, name))
        return None if service is None else service.status

    def get(self, namespace: str, name: str) -> Service:
        service = self.services.get((namespace, name))
        if service is None:
            raise NotFound(f"InferenceService {namespace}/{name} not found{self._existing(namespace)}")
        return service

    def _existing(self, namespace: str) -> str:
        return existing_names([n for (ns, n) in self.services if ns == namespace])

    def scrape_targets(self) -> list[ScrapeTarget]:
        """Every running model-server process, labelled for the federated /metrics."""
        targets = []
        for (namespace, _), runner in self.runners.items():
            revision = runner.revision
            for component, replicas in (
                ("predictor", runner.predictors),
                ("transformer", runner.transformers),
            ):
                for index, replica in enumerate(replicas):
                    if not replica.port:
                        continue  # not listening yet
                    labels = {
                        "isvc": revision.isvc,
                        "namespace": namespace,
                        "revision": revision.name,
                        "component": component,
                        "replica": str(index),
                        # a restarted or woken replica's counters start again from 0: a series of its own, as a
                        # recreated pod's, so that Prometheus never reads 5 -> 8 as +3 when it was +8
                        "pid": str(replica.pid),
                    }
                    targets.append(ScrapeTarget(replica.url, labels))
        return targets

    def ready(self) -> bool:
        return all(
            s.status.get("conditions", [{}])[-1].get("status") == "True" for s in self.services.values()
        )

    # -- reconcile ---------------------------------------------------------------------------------
    def _changed(self) -> None:
        self._wake.set()

    def request_reconcile(self) -> None:
        """Ask for a reconcile pass soon (a Canary moved its weight, a replica changed state)."""
        self._wake.set()

    def revision_ready(self, namespace: str, revision: str) -> bool:
        runner = self.runners.get((namespace, revision))
        return runner is not None and runner.ready()

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
            self._retry_failed()
            plans = {key: self._plan(service) for key, service in self.services.items()}
            wanted: dict[tuple[str, str], tuple[Revision, int]] = {}
            for key, p in plans.items():
                for name, replicas in self._scaled(key, p).items():
                    wanted[(key[0], name)] = (p.state.revisions[name], replicas)
            retiring = await self._converge(wanted)
            for key in [k for k in self._retries if k not in self.runners]:  # retired meanwhile
                del self._retries[key]
            self.autoscalers.retain(set(wanted))
            self.routes.set_table(self._table(plans))
            for runner, leaving in retiring:  # only now: they are out of the table
                self._spawn(self._drain_and_stop(runner, leaving))
            for key, p in plans.items():
                self._record(self.services[key], p)
            self._reclaim_downloads()

    def _retry_failed(self) -> None:
        """Schedule the next attempt of each retryable failure (`_backoff`), and start the ones that are due:
        the failed runner goes (its processes have exited) and `_converge` makes a new one, which selects its
        runtime, fetches its model and starts its processes again. A ready revision's backoff resets."""
        now = time.monotonic()
        for key, runner in list(self.runners.items()):
            retry = self._retries.get(key)
            if runner.ready():
                self._retries.pop(key, None)
                self._retry_now.discard(key)
                self._was_ready.add(key)
                continue
            why = runner.failure()
            if why is None:
                continue
            if not self._retryable(runner, key in self._was_ready):  # e.g. its runtime was deleted meanwhile
                self._retries.pop(key, None)
                self._give_up(runner, why)
                continue
            if key in self._retry_now and runner.failed_step in ("secret", "storage"):
                self._retry_now.discard(key)
                self._retries.pop(key, None)
                del self.runners[key]
                let_go(runner.model_dir, self.storage)
                self._spawn(runner.stop())
                continue
            if retry is None or retry.runner is not runner:
                retry = self._retries[key] = self._backoff(retry, runner, why)
                asyncio.get_running_loop().call_later(retry.delay_s, self._changed)
            elif now >= retry.due - DUE_SLACK_S:
                del self.runners[key]
                let_go(runner.model_dir, self.storage)  # its download lease: the next attempt takes its own
                self._spawn(runner.stop())

    def _give_up(self, runner: RevisionRunner, why: str) -> None:
        """A revision failed for good (one component will not start): its other processes stop too, and it is
        not scaled again (its predictor idled on behind a failed transformer, counted as a replica)."""
        if not runner.error:
            runner.error = why
        live = [
            r for r in runner.all_replicas() if r.state not in (ReplicaState.FAILED, ReplicaState.STOPPED)
        ]
        if live:
            events.gave_up(runner.revision.name, len(live))
            self._spawn(runner.stop(live))

    def retrying(self, namespace: str, revision: str) -> bool:
        """Whether a failed revision will be tried again (its storage fetch or load may yet succeed)."""
        return (namespace, revision) in self._retries

    def _backoff(self, previous: Retry | None, runner: RevisionRunner, why: str) -> Retry:
        delay = self.retry_first_s if previous is None else min(previous.delay_s * 2, self.retry_max_s)
        attempts = 1 if previous is None else previous.attempts + 1
        at = time.strftime("%H:%M:%S", time.gmtime(time.time() + delay))
        message = retry_note(why, attempts, delay, at)
        return Retry(runner, attempts, delay, time.monotonic() + delay, message)

    @staticmethod
    def _retryable(runner: RevisionRunner, was_ready: bool = False) -> bool:
        """A storage failure, or a model that failed to load from a download (the store may be fixed) or after
        the revision was ready once (the failure may be passing)."""
        if runner.failed_step == "storage":
            return True
        loaded_and_failed = bool(runner.predictors) and all(
            r.state is ReplicaState.FAILED for r in runner.predictors
        )
        remote = runner.revision.fetched_remotely
        return not runner.error and loaded_and_failed and (remote or was_ready)

    def serves(self, namespace: str, runner: RevisionRunner) -> bool:
        """Whether a revision counts as ready (for traffic, status and a canary's analysis alike): its replicas
        ready up to its initial scale, or scaled to zero on purpose (the router's activator wakes it)."""
        key = (namespace, runner.revision.name)
        if runner.ready():
            return self.autoscalers.reached_initial_scale(key)
        return self.autoscalers.scaled_to_zero(key) and runner.failure() is None

    def _plan(self, service: Service) -> Plan:
        namespace = service.isvc.metadata.namespace
        ready, failed, no_runtime, progress = set(), {}, {}, {}
        runtimes: dict[str, tuple[str, str]] = {}
        for (ns, name), retry in self._retries.items():  # the last failure and when it is retried, shown
            if ns == namespace:  # while the next attempt runs too (and before its runner is made)
                failed[name] = retry.message
        for (ns, name), runner in self.runners.items():
            if ns != namespace:
                continue
            if runner.runtime is not None:  # status.servingRuntimeName / clusterServingRuntimeName
                runtimes[name] = (runner.runtime.kind, runner.runtime.name)
            if runner.fetching:
                uris = [item.uri for item in runner.revision.storage_uris]
                where = runner.revision.storage_uri or ", ".join(uris) or "the bucket of its storage: entry"
                progress[name] = f"fetching its model from {redact(where)}"
            if self.serves(ns, runner):
                ready.add(name)
                failed.pop(name, None)
            elif name not in failed and (why := runner.failure()) is not None:
                failed[name] = why
                if runner.failed_step == "runtime":  # KServe's InvalidSpec, with its own message
                    no_runtime[name] = why.removeprefix(RUNTIME_FIELD + ": ")
        return plan(
            service.isvc,
            service.rollout,
            Observed(frozenset(ready), failed, no_runtime, progress, runtimes),
            self.domain,
            self.canaries.percent_for(service.isvc.key),
            previous=service.status,  # persisted: conditions keep their lastTransitionTime across restarts
        )

    def _scaled(self, key: tuple[str, str], p: Plan) -> dict[str, int]:
        """Replicas per running revision: the autoscaler's count where the service scales, else the plan's.
        Each canary arm scales on its own load; the stable arm keeps at least its share of the total."""
        isvc = self.services[key].isvc
        knobs = local_bounds(
            knobs_from(isvc.spec.predictor, isvc.metadata.annotations), self.default_max_replicas
        )
        if not knobs.scales:
            self._desired[key] = dict(p.run)
            return self._desired[key]
        desired = {
            name: self.autoscalers.replicas((key[0], name), isvc.metadata.name, knobs) for name in p.run
        }
        stable = next((t for t in p.traffic if t.tag == "prev" and 0 < t.percent < 100), None)
        # once an arm has scaled past one replica (idle, one each: a stable floor would start a second for nothing)
        if stable is not None and stable.revision in desired and sum(desired.values()) > len(desired):
            floor = stable_floor(stable.percent, desired)
            desired[stable.revision] = max(desired[stable.revision], min(floor, knobs.max_replicas))
        self._desired[key] = desired
        return desired

    def _fleet(self, namespace: str, revision: str) -> Fleet:
        runner = self.runners.get((namespace, revision))
        if runner is None:
            return Fleet(0, 0)
        ready = sum(1 for r in runner.predictors if r.state is ReplicaState.READY)
        starting = sum(1 for r in runner.predictors if r.state is ReplicaState.STARTING)
        pids = tuple(
            proc.pid for r in runner.all_replicas() if (proc := getattr(r, "process", None)) is not None
        )
        return Fleet(ready, len(runner.predictors), pids, starting)

    def _replica_status(self, status: dict[str, Any], key: tuple[str, str]) -> None:
        """`currentReplicas` (ready predictor replicas) and `desiredReplicas`, summed over running revisions
        (not one that failed: none of its replicas is coming)."""
        desired = {
            name: count
            for name, count in self._desired.get(key, {}).items()
            if (runner := self.runners.get((key[0], name))) is None or runner.failure() is None
        }
        current = sum(self._fleet(key[0], name).ready for name in desired)
        predictor = status["components"]["predictor"] = dict(status["components"]["predictor"])
        predictor["currentReplicas"], predictor["desiredReplicas"] = current, sum(desired.values())

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
                if runner.error:  # no runtime, or no model here: the status says so on the next pass
                    self._changed()
            removed = runner.scale(replicas) if not runner.error else []
            if removed:
                retiring.append((runner, removed))
        for key in [k for k in self.runners if k not in wanted]:
            retiring.append((self.runners.pop(key), None))
        return retiring

    async def _new_runner(self, revision: Revision) -> RevisionRunner:
        """A runner for `revision`. A model on this machine is found now; one in an object store or behind a
        URL is fetched in the background (the runner starts nothing until it is here), so a slow or
        unreachable store holds up neither the router's start nor any other service's reconcile."""
        log_dir = self.store.root / "logs"
        if revision.namespace != "default":  # one revision name can live in two namespaces: two log files
            log_dir = log_dir / revision.namespace
        service = self.services.get((revision.namespace, revision.isvc))
        meta = ServiceMeta.of(service.isvc.metadata) if service is not None else None  # for its placeholders
        try:  # KServe's runtime selection: which runtime, and the flags its ServingRuntime adds
            selected, runtime_flags = self.runtimes.resolve(revision, meta)
        except ServingError as exc:
            runner = RevisionRunner(
                revision, Path("."), log_dir, self._changed, replica_factory=self.replica_factory
            )
            runner.error = f"{RUNTIME_FIELD}: {exc.message}"
            runner.failed_step = "runtime"
            return runner
        flags = (*self.predictor_flags, *runtime_flags)
        runner = RevisionRunner(revision, Path("."), log_dir, self._changed, flags, self.replica_factory)
        runner.runtime = selected
        if selected is not None:  # which runtime a revision was given: said once, as it is started
            log.info("revision %s: %s %s selected", revision.name, selected.kind, selected.metadata.name)
        runner.secret = self._secret_lookup(revision.namespace)
        if revision.fetched_remotely:
            runner.fetching = True
            task = asyncio.create_task(self._fetch(runner), name=f"fetch {revision.name}")
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)
        else:
            outcome = await asyncio.to_thread(
                _resolve, revision, self.storage, self._storage_secret, self._account_env
            )
            self._found(runner, *outcome)
        return runner

    async def _fetch(self, runner: RevisionRunner) -> None:
        """Download in a daemon thread: a stop (Ctrl-C, SIGTERM) never waits for a store that does not answer."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[Path | None, str, bool]] = loop.create_future()

        def settle(outcome: tuple[Path | None, str, bool]) -> None:
            if not done.done():  # not cancelled by a shutdown meanwhile
                done.set_result(outcome)

        used: list[Path] = []  # the folders it was resolved from: which cache entries it needs

        def fetch() -> None:
            outcome = _resolve(runner.revision, self.storage, self._storage_secret, self._account_env, used)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
                loop.call_soon_threadsafe(settle, outcome)

        threading.Thread(target=fetch, name=f"fetch {runner.revision.name}", daemon=True).start()
        self._found(runner, *await done)
        runner.fetching = False
        if runner.model_dir != Path("."):
            self._note_content(runner, used)
            self._note_downloads(runner.revision, used)
        if self.runners.get((runner.revision.namespace, runner.revision.name)) is not runner:
            let_go(
                runner.model_dir, self.storage
            )  # retired while it downloaded: nobody will read that folder
            return
        self._changed()

    def _note_content(self, runner: RevisionRunner, used: list[Path]) -> None:
        """Which copy of its model a revision serves (the cache folders of one content: `used`, named by the
        content's digest), kept in the state directory: a revision fetched again (a restart of `serving up`, a
        retry) that gets other content than before says so, as its storageUri's object changed behind it
        (KServe's storage-initializer fetches a recreated pod's model the same way). A revision is pinned to its
        content only while it runs. Not the model folder itself: `storageUris` compose one per process."""
        revision = runner.revision
        record = self.store.root / "fetched" / f"{revision.namespace}__{revision.name}"
        now = "\n".join(sorted(str(folder) for folder in used)) if used else str(runner.model_dir)
        try:
            before: str | None = record.read_text()
        except OSError:
            before = None
        if before == now:
            return
        if before is not None:
            log.warning(
                "revision %s: the object behind %s changed since the revision first fetched it; it now serves "
                "the new content (to keep a version, give each version a URI of its own)",
                revision.name,
                redact(revision.storage_uri or "its storage"),
            )
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(record, now.encode())
        except OSError as exc:  # the state directory's own trouble is said where it is written
            log.warning("cannot note which copy revision %s serves: %s", revision.name, exc)

    def _note_downloads(self, revision: Revision, used: list[Path]) -> None:
        """Which download-cache entries a revision's model came from, kept in the state directory: the entries
        it would start from again (a restart of `serving up`, a resume, `rollout undo`) are never reclaimed
        while the revision is kept, even when no process holds a lease on them."""
        found = {str(e) for folder in used if (e := entry_of(folder, self.storage.cache_dir)) is not None}
        record = self.store.root / DOWNLOADS / f"{revision.namespace}__{revision.name}"
        try:
            if found:
                record.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(record, "\n".join(sorted(found)).encode())
            else:
                record.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot note which downloads revision %s uses: %s", revision.name, exc)

    def _kept_downloads(self) -> set[Path] | None:
        """The cache entries a revision may still start from: every runner's, and those noted for a revision
        that is still kept (in a service's rollout state: running, scaled to zero, stopped, the one before for
        a rollback; or in its rollout history, for `rollout undo`). The notes of the others are dropped. None
        when the notes cannot be read (then nothing is reclaimed)."""
        kept = set(self.runners)
        for (namespace, name), service in self.services.items():
            kept |= {(namespace, revision) for revision in service.rollout.revisions}
            kept |= {(namespace, revision) for revision in self.history.load(namespace, name)["documents"]}
        cache = self.storage.cache_dir
        entries = {e for runner in self.runners.values() if (e := entry_of(runner.model_dir, cache))}
        # DOWNLOADS: the entries each revision came from; "fetched" (`_note_content`): the copy it served, the
        # only note of a revision fetched before DOWNLOADS was kept
        for folder, drop in ((DOWNLOADS, True), ("fetched", False)):
            try:
                records = list((self.store.root / folder).iterdir())
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot read %s: %s; no download is reclaimed", self.store.root / folder, exc)
                return None
            for record in records:
                namespace, _, revision = record.name.partition("__")
                if (namespace, revision) not in kept:
                    if drop:
                        record.unlink(missing_ok=True)
                    continue
                try:
                    lines = record.read_text().splitlines()
                except OSError as exc:
                    log.warning("cannot read %s: %s; no download is reclaimed", record, exc)
                    return None
                entries |= {e for line in lines if line and (e := entry_of(line, cache)) is not None}
        return entries

    def _reclaim_downloads(self) -> None:
        """Start a sweep of the download cache (in a thread: removing gigabytes takes a while) if one is due,
        none runs, and no fetch is under way (a revision restored without a note holds its lease only once
        fetched)."""
        if not self._reclaim_due or self._reclaiming is not None:
            return
        if any(runner.fetching for runner in self.runners.values()):
            return  # the fetch's end wakes a reconcile, which tries again
        self._reclaim_due = False
        keep = self._kept_downloads()
        if keep is None:
            return

        async def sweep() -> None:
            try:
                await asyncio.to_thread(reclaim, self.storage.cache_dir, keep)
            except Exception:  # a sweep that failed is tried again after the next retirement
                log.exception("reclaiming the download cache failed")
            finally:
                self._reclaiming = None
                if self._reclaim_due:
                    self._changed()

        self._reclaiming = asyncio.create_task(sweep(), name="reclaim downloads")
        self._background.add(self._reclaiming)
        self._reclaiming.add_done_callback(self._background.discard)

    @staticmethod
    def _found(runner: RevisionRunner, model_dir: Path | None, error: str, retryable: bool) -> None:
        if model_dir is None:
            revision = runner.revision
            field = (
                "storage"
                if revision.storage is not None
                else "storageUris"
                if revision.storage_uris
                else "storageUri"
            )
            runner.error = f"spec.predictor.model.{field}: {error}"
            runner.failed_step = "storage" if retryable else ""
        else:
            runner.model_dir = model_dir

    async def _drain_and_stop(
        self, runner: RevisionRunner, replicas: list[ReplicaHandle] | None = None
    ) -> None:
        targets = runner.all_replicas() if replicas is None else replicas
        await self.routes.drain([r.url for r in targets if r.port])
        await runner.stop(targets)
        events.drained(runner.revision.name, None if replicas is None else len(targets))
        if replicas is None:  # the whole revision retired
            revision = runner.revision
            self.routes.forget(revision.isvc, revision.namespace, revision.name)
            let_go(runner.model_dir, self.storage)  # its downloaded folder: pruned, or reclaimed, once unused
            self._reclaim_due = True
            self._changed()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _table(self, plans: dict[tuple[str, str], Plan]) -> RouteTable:
        routes = {
            key: routes_for(
                self.services[key].isvc,
                p,
                self._endpoints(key[0]),
                self.domain,
                canary=self.canaries.routing_for(key),
            )
            for key, p in plans.items()
        }
        self._version += 1
        return route_table(routes, self._version)

    def _endpoints(self, namespace: str) -> Callable[[str], tuple[str, ...]]:
        def ready_urls(revision: str) -> tuple[str, ...]:
            runner = self.runners.get((namespace, revision))
            return runner.endpoints() if runner else ()

        return ready_urls

    def _record(self, service: Service, p: Plan) -> None:
        status = {**p.status, "observedGeneration": service.generation}
        events.status_changed(service.isvc.key, service.status, status)
        self._replica_status(status, service.isvc.key)
        if p.state.rolled_out != service.rollout.rolled_out and p.state.rolled_out is not None:
            self.history.event(
                *service.isvc.key,
                p.state.rolled_out,
                "rolled out",
                "first ready revision"
                if service.rollout.rolled_out is None
                else f"promoted over {service.rollout.rolled_out}",
            )
        if p.state != service.rollout or status != service.status:
            service.rollout, service.status = p.state, status
            try:
                self.store.save(*service.isvc.key, service.record())
            except ServingError as exc:
                log.error("could not persist state: %s", exc.message)


def _service_name(namespace: str, name: str) -> str:
    return f"inferenceservice/{name}" if namespace == "default" else f"inferenceservice/{namespace}/{name}"


FETCHED_SCHEMES = REMOTE_SCHEMES | {"", "file", "pvc"}


def _rolls_back(old: Service, new: InferenceService) -> bool:
    """The new spec sends a canary in progress back to 0 % (its percent written 0, the revision unchanged)."""
    rollout = old.rollout
    if rollout.latest_created in (None, rollout.rolled_out):
        return False
    if Revision.from_spec(new).name != rollout.latest_created:
        return False
    percents = [c.canary_traffic_percent for c in (old.isvc.spec.predictor, old.isvc.spec.transformer) if c]
    now = [c.canary_traffic_percent for c in (new.spec.predictor, new.spec.transformer) if c]
    return 0 in now and 0 not in percents


def _resolve(
    revision: Revision,
    config: StorageConfig,
    secrets: SecretSource,
    accounts: AccountSource,
    used: list[Path] | None = None,
) -> tuple[Path | None, str, bool]:
    """(the model folder, "", False) or (None, why not, whether trying again may help: not for a refusal by
    policy or a scheme this machine does not fetch; yes for a `storage:` its Secret cannot complete yet).
    `used` hears the folders resolved (for a `storageUris` revision, each item's)."""
    if revision.storage_uris:
        try:
            return resolve_composed(revision, config, accounts, used), "", False
        except ServingError as exc:
            fetchable = all(scheme_of(item.uri) in FETCHED_SCHEMES for item in revision.storage_uris)
            return None, _reason(exc), _retryable_fetch(exc) and fetchable
    try:
        uri, secret_env = location(revision, secrets, accounts)
    except StorageSpecError as exc:
        return None, exc.message, True
    except ServingError as exc:
        return None, exc.message, False
    try:
        folder = resolve_at(revision, uri, secret_env, config)
    except ServingError as exc:
        return None, _reason(exc), _retryable_fetch(exc) and scheme_of(uri) in FETCHED_SCHEMES
    if used is not None:
        used.append(folder)
    return folder, "", False


def _reason(exc: ServingError) -> str:
    """The failure as the revision's status says it: a refusal by policy (an unsafe archive, an object over
    the download limit) says that it is final, as it is not retried on a backoff (each retry of a too-large
    object downloaded up to 2 GiB again)."""
    if isinstance(exc, StorageRefused):
        return f"{exc.message} (refused, not retried: apply the spec again once it is fixed)"
    return exc.message


def _retryable_fetch(exc: ServingError) -> bool:
    """A store that failed may answer later; a refusal by policy will not."""
    return isinstance(exc, StorageError) and not isinstance(exc, StorageRefused)
