"""Canary policies in the operator: the `CanaryController`'s host on Kubernetes (the same controller as `serving up`).

- documents: `Canary` objects (serving.dev/v1alpha1) arrive as kopf watch events; a new one resumes from the
  status it carries, so an operator restart continues the analysis at the step it had reached;
- rollout view: the InferenceService status the backend wrote (KServe's latestCreated/Ready/Rolledout fields);
- counters: every ready router pod's /metrics (selected by the chart's labels), summed by the snapshot code; a pod
  that went away keeps its last counters for a while, so the sum never drops when the router scales down;
- results: the Canary's status subresource (phase, weight, checks, conditions, bounded history), then a reconcile
  of the target, whose plan() takes `percent_for` and whose route takes `routing_for` (affinity, mirror).
- `query:` metrics: PromQL evaluated at `--prometheus-url` before each pass (none configured: no data, the check fails).
Every method here blocks (API calls, scrapes): the operator calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import kubernetes
from prometheus_client import CollectorRegistry

from serving.canary.analysis import CanaryStatus, Phase
from serving.canary.controller import CanaryController, Key, RolloutView, policy_percent
from serving.canary.crd import GROUP, PLURAL, VERSION
from serving.canary.load_test import load_test_command, read_summary, time_limit_s
from serving.canary.promql import evaluate
from serving.canary.snapshot import revision_counters
from serving.canary.spec import Canary, CanarySpecError, LoadTest, parse_canary
from serving.cluster import (
    ClusterError,
    PermanentClusterError,
    TemporaryClusterError,
    classify,
    merge_patch,
)
from serving.control.canary_status import invalid_status, status_body
from serving.control.kubernetes.backend import KubernetesBackend, _rollout
from serving.control.kubernetes.render import LABEL_REVISION, entry_component, service_url

log = logging.getLogger("serving.operator")
DEFAULT_ROUTER_PORT = 8080
GONE_POD_KEPT_S = 3600.0  # a vanished router's last counters still count this long (the sum must not drop)
ACTION_ANNOTATION = "serving.dev/action"  # promote | rollback | pause | resume, removed once applied


class KubernetesCanaryHost:
    def __init__(
        self,
        backend: KubernetesBackend,
        registry: CollectorRegistry | None = None,
        scrape_timeout_s: float = 2.0,
    ) -> None:
        self.backend = backend
        self.cluster = backend.cluster
        self.config = backend.config
        self.registry = registry or CollectorRegistry()  # the operator serves it at --metrics-port
        self.controller = CanaryController(self, self.registry)
        self.lock = threading.Lock()  # the watch handlers and the tick loop share the controller
        self._http = httpx.Client(timeout=scrape_timeout_s)
        self._scraped: dict[str, tuple[float, bytes]] = {}  # router pod uid -> (last seen, exposition)
        self._written: dict[Key, dict[str, Any]] = {}  # the status last written, per target
        backend.canaries = self.controller  # its percent_for/routing_for steer plan() and the route
        backend.untracked_canary = self.untracked_percent

    # -- CanaryHost (asked by the controller) ---------------------------------------------------------
    def rollout_view(self, key: Key) -> RolloutView | None:
        body = self.cluster.get("InferenceService", *key)
        status = (body or {}).get("status") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        latest = predictor.get("latestCreatedRevision")
        if body is None or latest is None:
            return None
        model_status = status.get("modelStatus") or {}
        failed = model_status.get("transitionStatus") == "BlockedByFailedLoad"
        return RolloutView(
            latest,
            predictor.get("latestRolledoutRevision"),
            predictor.get("latestReadyRevision") == latest,
            failed,
            latest_error=str((model_status.get("lastFailureInfo") or {}).get("message", ""))
            if failed
            else "",
            latest_restarts=self._restarts(key[0], latest),
        )

    def _restarts(self, namespace: str, revision: str) -> int:
        """The revision's container restarts so far, from its pods (a crash-looping canary fails its checks
        even when the router retried its requests on stable and it counted none)."""
        pods = self.cluster.list("Pod", namespace, {LABEL_REVISION: revision})
        return sum(
            int(container.get("restartCount") or 0)
            for pod in pods
            for container in (pod.get("status") or {}).get("containerStatuses") or ()
        )

    def router_expositions(self) -> Sequence[bytes]:
        """Every router replica's /metrics now; one that cannot be read fails the whole read (never judge
        on part of the traffic), one that is gone keeps its last reading."""
        now = time.monotonic()
        pods = self.cluster.list("Pod", self.config.routes_namespace, dict(self.config.router_selector))
        for pod in pods:
            url = metrics_url(pod)
            if url is None:
                continue
            try:
                answer = self._http.get(url)
                answer.raise_for_status()
            except httpx.HTTPError as exc:
                raise TemporaryClusterError(f"router pod {pod['metadata']['name']} ({url}): {exc}") from exc
            self._scraped[pod["metadata"].get("uid") or pod["metadata"]["name"]] = (now, answer.content)
        self._scraped = {uid: seen for uid, seen in self._scraped.items() if now - seen[0] < GONE_POD_KEPT_S}
        return [text for _, text in self._scraped.values()]

    def run_load_test(self, key: Key, revision: str, load_test: LoadTest) -> None:
        threading.Thread(
            target=self._load_test, args=(key, revision, load_test), daemon=True, name=f"loadtest-{revision}"
        ).start()

    def _load_test(self, key: Key, revision: str, load_test: LoadTest) -> None:
        """`serving loadtest v1` (Locust, its own process) against the canary revision's own Service, so every
        request tests the canary; the report folder stays in the operator's /tmp, named in the status."""
        state = _rollout((self.cluster.get("InferenceService", *key) or {}).get("status", {}).get("rollout"))
        known = state.revisions.get(revision) if state else None
        report = Path(tempfile.gettempdir()) / f"canary-{key[0]}-{key[1]}-loadtest-{revision}"
        summary: dict[str, Any] = {}
        if known is not None:
            url = service_url(known, entry_component(known), self.config.render)
            command = load_test_command(load_test, url, key[1], report)
            try:
                subprocess.run(command, capture_output=True, timeout=time_limit_s(load_test))
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.error("canary %s/%s: the load test of %s did not finish: %s", *key, revision, exc)
            summary = read_summary(report)
        with self.lock:
            self.controller.load_test_finished(key, revision, summary, str(report))

    def canary_changed(self, key: Key, status: CanaryStatus, history: list[dict[str, Any]]) -> None:
        tracked = self.controller.tracked.get(key)
        if tracked is not None:
            self._patch_status(
                tracked.canary.metadata.namespace,
                tracked.canary.metadata.name,
                key,
                status_body(status, history),
            )
        self._reconcile(key)

    # -- documents (kopf watch events) ----------------------------------------------------------------
    def document_event(self, body: dict[str, Any], event_type: str | None) -> None:
        """Track, re-read or forget one Canary; idempotent, so every event (ours included) may come here."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        with self.lock:
            current = self._target_of(namespace, name)
            if event_type == "DELETED":
                if current is not None:
                    self.controller.remove(current)
                    self._written.pop(current, None)
                    self._reconcile(current)
                return
            try:
                canary = parse_canary(_document(body))
            except CanarySpecError as exc:
                self._patch_status(namespace, name, None, invalid_status("InvalidSpec", exc.message))
                return
            refused = _refusal(canary)
            if refused is not None:
                self._patch_status(namespace, name, None, refused)
                return
            self._track(canary, body.get("status") or {}, current)
            action = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
            if action is not None:
                self._manual(canary, action)

    def untracked_percent(self, key: Key) -> int | None:
        """The weight for `key` of a Canary that exists in the cluster but has not reached this host yet (its
        watch event is on its way: a separate stream from the InferenceService's), or None when there is none.

        The backend asks before it promotes a new revision with no Canary tracked, which would retire the
        stable one for good: a Canary created before that revision must analyse it, not find it promoted.
        The weight is the one `document_event` will restore: its stored status's (an operator that restarted
        mid-analysis), else 0 until the analysis starts. No lock: read by the reconcile that a watch handler
        holding `self.lock` may be waiting for."""
        tracked = self.controller.percent_for(key)
        if tracked is not None:  # it arrived meanwhile
            return tracked
        try:
            bodies = self.cluster.list("Canary", key[0], {})
        except PermanentClusterError as exc:
            if " 404" in exc.message:  # no Canary CRD in this cluster: no Canary either
                return None
            raise
        for body in bodies:
            try:
                canary = parse_canary(_document(body))
            except CanarySpecError:
                continue  # never tracked (its status says why): the spec's split rules
            if canary.target_key == key and _refusal(canary) is None:
                stored = body.get("status") or {}
                if stored.get("phase") in set(Phase):
                    return policy_percent(CanaryStatus.from_json(stored))
                return 0
        return None

    def _manual(self, canary: Canary, action: str) -> None:
        """`kubectl annotate canary NAME serving.dev/action=promote|rollback|pause|resume`: manual control wins;
        the annotation is removed once done, so the same word can be given again later."""
        actions = {
            "promote": self.controller.promote,
            "rollback": self.controller.rollback,
            "pause": self.controller.pause,
            "resume": self.controller.resume,
        }
        tracked = self.controller.tracked.get(canary.target_key)
        if action not in actions:
            log.warning(
                "Canary %s/%s: %s=%r is not one of %s",
                *canary.key,
                ACTION_ANNOTATION,
                action,
                ", ".join(actions),
            )
        elif tracked is not None and tracked.canary.metadata.name == canary.metadata.name:
            actions[action](canary.target_key)
        try:
            self.cluster.patch(
                "Canary", *canary.key, {"metadata": {"annotations": {ACTION_ANNOTATION: None}}}
            )
        except ClusterError as exc:
            log.warning("could not clear %s on Canary %s/%s: %s", ACTION_ANNOTATION, *canary.key, exc.message)

    def _track(self, canary: Canary, stored: dict[str, Any], current: Key | None) -> None:
        key = canary.target_key
        other = self.controller.tracked.get(key)
        if other is not None and other.canary.metadata.name != canary.metadata.name:
            self._patch_status(
                *canary.key,
                None,
                invalid_status(
                    "TargetTaken", f"Canary {other.canary.metadata.name} already drives {key[0]}/{key[1]}"
                ),
            )
            return
        if (
            current is not None and current != key
        ):  # its targetRef changed: the old service is on its own again
            self.controller.remove(current)
            self._written.pop(current, None)
            self._reconcile(current)
        if other is None:
            self._written.pop(key, None)  # a new object: its first status write is whole, not a diff
            resumable = current is None and stored.get("phase") in set(Phase)
            resumed = CanaryStatus.from_json(stored) if resumable else None
            self.controller.apply(canary, resumed, list(stored.get("history") or []) if resumed else None)
            if (
                resumed is not None
                and resumed.revision
                and resumed.phase in (Phase.PROGRESSING, Phase.MIRRORING)
            ):
                self._baseline(key, resumed.revision, canary.spec.analysis.interval_s)
            self._reconcile(key)
        elif other.canary.spec != canary.spec:
            self.controller.apply(canary)

    def _baseline(self, key: Key, revision: str, interval_s: float) -> None:
        """Resumed mid-analysis: the routers kept counting while no operator ran, so today's counters are the
        baseline and the first check judges one fresh interval (not everything since the routers started)."""
        tracked = self.controller.tracked[key]
        try:
            tracked.counters = revision_counters(self.router_expositions(), key[0], key[1], revision)
        except ClusterError as exc:
            log.warning("canary %s/%s resumed without a baseline: %s", key[0], key[1], exc.message)
            return
        tracked.next_check_s = self.controller.clock() + interval_s

    def _target_of(self, namespace: str, name: str) -> Key | None:
        return next(
            (key for key, t in self.controller.tracked.items() if t.canary.key == (namespace, name)), None
        )

    # -- the loop ---------------------------------------------------------------------------------------
    def tick(self) -> None:
        """One controller pass; the due PromQL metrics are evaluated first (at --prometheus-url)."""
        with self.lock:
            due = self.controller.due_queries() if self.config.prometheus_url else {}
            self.controller.tick(asyncio.run(self._queried(due)) if due else None)

    async def _queried(self, due: Mapping[Key, Mapping[str, str]]) -> dict[Key, dict[str, float]]:
        out: dict[Key, dict[str, float]] = {}
        async with httpx.AsyncClient() as client:
            for key, queries in due.items():
                values = {
                    name: await evaluate(client, self.config.prometheus_url, q) for name, q in queries.items()
                }
                out[key] = {name: v for name, v in values.items() if v is not None}  # no data fails the check
        return out

    # -- writes -----------------------------------------------------------------------------------------
    def _reconcile(self, key: Key) -> None:
        try:
            self.backend.reconcile(*key)
        except ClusterError as exc:  # the resync timer tries again; the weight is read on every reconcile
            log.warning("reconcile of %s/%s after a canary change: %s", key[0], key[1], exc.message)

    def _patch_status(self, namespace: str, name: str, key: Key | None, new: dict[str, Any]) -> None:
        old = self._written.get(key, {}) if key else {}
        patch = merge_patch(old, new) if key in self._written else new
        api = kubernetes.client.CustomObjectsApi(self.cluster.client)
        try:
            api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": patch},
                _content_type="application/merge-patch+json",
            )
        except Exception as exc:
            error = classify(exc, f"patch status of Canary {namespace}/{name}")
            log.warning("%s", error.message)
            return
        if key is not None:
            self._written[key] = new


def metrics_url(pod: Mapping[str, Any]) -> str | None:
    """A ready router pod's /metrics URL (its container port named http); None while it is not ready."""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
    )
    if not ip or not ready:
        return None
    ports = [p for c in (pod.get("spec") or {}).get("containers") or () for p in c.get("ports") or ()]
    port = next((p["containerPort"] for p in ports if p.get("name") == "http"), DEFAULT_ROUTER_PORT)
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/metrics"


def _refusal(canary: Canary) -> dict[str, Any] | None:
    """The status of a valid Canary this operator will not track, or None when it will."""
    if canary.spec.analysis.load_test is not None and importlib.util.find_spec("locust") is None:
        return invalid_status(
            "LoadTestUnavailable",
            "spec.analysis.loadTest: Locust is not installed in the operator's image "
            "(pip install locust there, or drop loadTest)",
        )
    return None


def _document(body: Mapping[str, Any]) -> dict[str, Any]:
    """A live object as a Canary document: server-managed metadata and the status are not part of the spec."""
    meta = body.get("metadata") or {}
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": kept,
        "spec": body.get("spec"),
    }
