"""Canary policies inside `serving up`: the controller's host on this machine.

Keeps each Canary document with its status and history in the state directory (atomic writes), so a restarted
`serving up` resumes an analysis at the step it had reached; reads the canary revision's counters from the
router's own metrics; and tells the local control plane the weight and routing each policy wants.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client import CollectorRegistry

from serving.canary.analysis import CanaryStatus, Phase
from serving.canary.controller import CanaryController, Key, RolloutView
from serving.canary.load_test import load_test_command, read_summary, time_limit_s
from serving.canary.promql import evaluate
from serving.canary.spec import Canary, LoadTest, parse_canary
from serving.control.local.control_plane import LocalControlPlane
from serving.control.local.spawn import spawn
from serving.control.local.state import write_atomic
from serving.errors import BadRequest, NotFound, ServingError

log = logging.getLogger("serving.canary")
TICK_S = 0.2
JOURNAL_LIMIT = 200  # status changes kept per Canary (in memory) for `serving rollout status --watch`


class LocalCanaries:
    def __init__(
        self,
        control: LocalControlPlane,
        expositions: Callable[[], Sequence[bytes]],
        registry: CollectorRegistry | None = None,
        prometheus_url: str | None = None,
    ) -> None:
        self.control = control
        self.prometheus_url = prometheus_url
        self.expositions = expositions
        self.dir = control.store.root / "canaries"
        self.documents: dict[Key, dict[str, Any]] = {}
        # Every status change, numbered across all Canaries: a watch reads those since its last poll, so a phase
        # shorter than a poll (Promoting, a candidate's Waiting) is still shown; the history keeps only phases.
        self.journal: dict[Key, list[dict[str, Any]]] = {}
        self.seq = 0
        self.controller = CanaryController(self, registry)
        self._task: asyncio.Task[None] | None = None
        self._load_tests: set[asyncio.Task[None]] = set()
        control.canaries = self.controller  # its percent_for/routing_for steer plan() and the route

    # -- CanaryHost (asked by the controller) -------------------------------------------------------
    def rollout_view(self, key: Key) -> RolloutView | None:
        service = self.control.services.get(key)
        if service is None:
            return None
        latest, rolled_out = service.rollout.latest_created, service.rollout.rolled_out
        runner = self.control.runners.get((key[0], latest)) if latest is not None else None
        retrying = self.control.retrying(key[0], latest) if latest is not None else False
        if runner is None:  # being made again (a retry) or not yet
            return RolloutView(latest, rolled_out, False, retrying, latest_retrying=retrying)
        failure = runner.failure()  # its model failed to load (or it crashed before ever ready): for good
        ready = self.control.serves(key[0], runner)  # as plan() sees it: only then does it get its share
        # the supervisor's count of crashes of each replica (processes.Replica.restarts)
        restarts = sum(getattr(replica, "restarts", 0) for replica in runner.all_replicas())
        return RolloutView(
            latest,
            rolled_out,
            ready,
            failure is not None,
            failure or "",
            restarts,
            retrying and failure is not None,
        )

    def router_expositions(self) -> Sequence[bytes]:
        return self.expositions()

    def run_load_test(self, key: Key, revision: str, load_test: LoadTest) -> None:
        task = asyncio.create_task(self._load_test(key, revision, load_test), name=f"loadtest-{revision}")
        self._load_tests.add(task)
        task.add_done_callback(self._load_tests.discard)

    async def _load_test(self, key: Key, revision: str, load_test: LoadTest) -> None:
        """`serving loadtest v1` (Locust, its own process) against the canary revision's own endpoint: the
        split is not involved, so every request tests the canary. Its report folder stays with the rollout."""
        runner = self.control.runners.get((key[0], revision))
        endpoints = runner.endpoints() if runner else ()
        report = self.dir / f"{key[0]}__{key[1]}-loadtest-{revision}"
        summary: dict[str, Any] = {}
        if endpoints:
            command = load_test_command(load_test, endpoints[0], key[1], report)
            process = spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                await asyncio.wait_for(process.wait(), time_limit_s(load_test))
            except TimeoutError:
                process.kill()
                await process.wait()
            summary = read_summary(report)
            if not summary:
                log.error(
                    "canary %s/%s: the load test of %s wrote no summary (see %s)", *key, revision, report
                )
        self.controller.load_test_finished(key, revision, summary, str(report))
        self.control.request_reconcile()

    def canary_changed(self, key: Key, status: CanaryStatus, history: list[dict[str, Any]]) -> None:
        self._journal(key, status)
        document = self.documents.get(key)
        if document is not None:
            self._write(key, document, status, history)
        if status.phase is Phase.FAILED and status.revision:
            self.control.history.event(
                *key, status.revision, "rolled back", f"canary analysis: {status.message}"
            )
        self.control.request_reconcile()

    # -- documents -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load persisted policies (resuming their analyses) and start the tick loop."""
        for path in sorted(self.dir.glob("*.json")) if self.dir.exists() else ():
            try:
                record = orjson.loads(path.read_bytes())
                canary = parse_canary(record["document"])
            except (OSError, orjson.JSONDecodeError, KeyError, ServingError) as exc:
                log.error("skipping a stored Canary %s: %s", path.name, exc)
                continue
            self.documents[canary.target_key] = record["document"]
            self.controller.apply(
                canary, CanaryStatus.from_json(record.get("status", {})), record.get("history", [])
            )
            self._journal(canary.target_key, self.controller.tracked[canary.target_key].status)
        self._task = asyncio.create_task(self._loop(), name="canaries")

    async def stop(self) -> None:
        for task in [self._task, *self._load_tests]:
            if task is not None:
                task.cancel()

    def apply(self, document: dict[str, Any]) -> Canary:
        canary = parse_canary(document)
        for index, metric in enumerate(canary.spec.analysis.metrics):
            if metric.query is not None and not self.prometheus_url:
                raise BadRequest(
                    f"spec.analysis.metrics[{index}].query: PromQL metrics need a Prometheus; "
                    "start serving up with --prometheus-url URL"
                )
        key = canary.target_key
        self.documents[key] = document
        self.controller.apply(canary)
        tracked = self.controller.tracked[key]
        if key not in self.journal:  # the status it starts from is the first a watch shows
            self._journal(key, tracked.status)
        self._write(key, document, tracked.status, tracked.history)
        self.control.request_reconcile()
        return canary

    def delete(self, namespace: str, name: str) -> Key:
        """Forget a Canary; the InferenceService it targets (its key) is what it steered."""
        key = next(
            (
                k
                for k, d in self.documents.items()
                if k[0] == namespace and d.get("metadata", {}).get("name") == name
            ),
            None,
        )
        if key is None:
            raise NotFound(f"Canary {namespace}/{name} not found")
        del self.documents[key]
        self.journal.pop(key, None)
        self.controller.remove(key)
        self._path(key).unlink(missing_ok=True)
        self.control.request_reconcile()
        return key

    def items(self) -> list[dict[str, Any]]:
        return [self.document_with_status(key) for key in self.documents]

    def document_with_status(self, key: Key) -> dict[str, Any]:
        tracked = self.controller.tracked.get(key)
        if tracked is None or key not in self.documents:
            raise NotFound(f"no Canary targets InferenceService {key[0]}/{key[1]}")
        return {**self.documents[key], "status": {**tracked.status.to_json(), "history": tracked.history}}

    def changes(self, key: Key, since: int) -> list[dict[str, Any]]:
        """The status changes of the Canary targeting `key` numbered after `since` (0: all that are kept)."""
        return [entry for entry in self.journal.get(key, ()) if entry["seq"] > since]

    def _journal(self, key: Key, status: CanaryStatus) -> None:
        tracked = self.controller.tracked.get(key)
        self.seq += 1
        entries = self.journal.setdefault(key, [])
        entries.append(
            {
                "seq": self.seq,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **status.to_json(),
                "steps": list(tracked.canary.spec.analysis.weights) if tracked else [],
            }
        )
        del entries[:-JOURNAL_LIMIT]

    def _path(self, key: Key) -> Path:
        return self.dir / f"{key[0]}__{key[1]}.json"

    def _write(
        self, key: Key, document: dict[str, Any], status: CanaryStatus, history: list[dict[str, Any]]
    ) -> None:
        record = {"document": document, "status": status.to_json(), "history": history}
        try:
            write_atomic(self._path(key), orjson.dumps(record, option=orjson.OPT_INDENT_2))
        except ServingError as exc:
            log.error("could not persist the Canary of %s/%s: %s", key[0], key[1], exc.message)

    async def _loop(self) -> None:
        async with httpx.AsyncClient() as client:
            while True:
                await asyncio.sleep(TICK_S)
                try:
                    self.controller.tick(await self._queried(client))
                except Exception:  # keep judging whatever one pass hit
                    log.exception("canary tick failed")

    async def _queried(self, client: httpx.AsyncClient) -> dict[Key, dict[str, float]]:
        """Evaluate the PromQL metrics of the checks that are due (none without --prometheus-url). The tick
        that follows judges only these checks' PromQL: one that falls due while they run waits a pass."""
        out: dict[Key, dict[str, float]] = {}
        if not self.prometheus_url:
            return out
        for key, queries in self.controller.due_queries().items():
            values = {name: await evaluate(client, self.prometheus_url, q) for name, q in queries.items()}
            out[key] = {name: v for name, v in values.items() if v is not None}
        return out
