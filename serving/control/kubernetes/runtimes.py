"""The cluster's ServingRuntimes and ClusterServingRuntimes, for the operator's runtime selection.

Listed once when the operator starts (so the first reconciles already see them), then kept current by the
operator's watch events. One that KServe's ServingRuntime webhook would deny (a priority conflict:
`RuntimeCatalog.conflict`) is logged as a warning when it arrives or changes, and kept: no webhook refuses it.
Selection and the args mapping are the local backend's own (`RuntimeCatalog.flags_for`: KServe's rules,
built-in cluster runtimes included), so a revision gets the same `serving serve` flags on both backends. A
revision no runtime can serve is not rendered; its InferenceService reports KServe's failure
(`Observed.no_runtime` -> `modelStatus.transitionStatus: InvalidSpec`, `targetModelState: FailedToLoad`,
`lastFailureInfo.reason` NoSupportingRuntime / RuntimeNotRecognized / RuntimeDisabled, KServe's message;
`serving.control.reconcile`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from serving.cluster import Cluster, ClusterError
from serving.control.runtime_catalog import RuntimeCatalog
from serving.errors import ServingError
from serving.revision import Revision
from serving.servingruntime import (
    KINDS,
    RuntimeSpecError,
    ServiceMeta,
    ServingRuntime,
    parse_runtime,
    runtime_env,
)
from serving.spec import EnvVar

log = logging.getLogger("serving.operator")
FIELD = "spec.predictor.model.runtime"
# What a runtime KServe's ServingRuntime webhook would deny gets here: the API server admits it (no webhook ships)
NO_WEBHOOK = (
    "the operator keeps it (no ServingRuntime webhook ships with it): of runtimes tied at one priority, selection "
    "takes the one listing the lowest protocol (v1, v2, grpc-v1, grpc-v2), then the first by name"
)
Key = tuple[str, str | None, str]  # (kind, namespace or None, name)


@dataclass(frozen=True)
class Selection:
    """Each revision's chosen runtime (its placeholders filled in), its flags and env, or why none serves it."""

    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    envs: dict[str, tuple[EnvVar, ...]] = field(default_factory=dict)
    runtimes: dict[str, ServingRuntime] = field(default_factory=dict)


class ClusterRuntimes:
    def __init__(self) -> None:
        self._runtimes: dict[Key, tuple[dict[str, Any], ServingRuntime]] = {}
        self._catalog = RuntimeCatalog(None)
        self._lock = threading.Lock()

    def seed(self, cluster: Cluster) -> None:
        """Every runtime in the cluster now; without the CRDs (an older install) only the built-in ones."""
        for kind in KINDS:
            try:
                items = cluster.list_everywhere(kind)
            except ClusterError as exc:
                log.warning(
                    "cannot list %ss (%s): runtime selection uses the built-in runtimes", kind, exc.message
                )
                continue
            for body in items:
                self.event({"kind": kind, **body}, None)

    def event(self, body: dict[str, Any], event_type: str | None) -> tuple[bool, str | None]:
        """A watch event -> (whether selection may change, the namespace it affects: None for all)."""
        document = _document(body)
        runtime = _parse(document)
        meta = document["metadata"]
        scope = None if document["kind"] == "ClusterServingRuntime" else meta.get("namespace") or "default"
        key: Key = (document["kind"], scope, meta.get("name", ""))
        with self._lock:
            before = self._runtimes.get(key)
            if event_type == "DELETED" or runtime is None:
                self._runtimes.pop(key, None)
            else:
                self._runtimes[key] = (document, runtime)
            after = self._runtimes.get(key)
            changed = (before[1] if before else None) != (after[1] if after else None)
            if changed:
                if after is not None and (why := self._catalog.conflict(after[1])) is not None:
                    log.warning("%s; %s", why, NO_WEBHOOK)
                self._catalog = _catalog(doc for doc, _ in self._runtimes.values())
        return changed, scope

    def flags_for(self, revision: Revision) -> list[str]:
        """The chosen runtime's `serving serve` flags; `SelectionError` (KServe's message) when none fits."""
        with self._lock:
            catalog = self._catalog
        return catalog.flags_for(revision)

    def select(self, revisions: Iterable[Revision], meta: ServiceMeta | None = None) -> Selection:
        """The runtime of each revision (`meta`: the InferenceService's metadata, for the placeholders)."""
        with self._lock:
            catalog = self._catalog
        out = Selection()
        for revision in revisions:
            try:
                runtime, revision_flags = catalog.resolve(revision, meta)
            except ServingError as exc:
                out.failures[revision.name] = exc.message
                continue
            out.flags[revision.name] = tuple(revision_flags)
            out.envs[revision.name] = runtime_env(runtime, revision.isvc)
            if runtime is not None:
                out.runtimes[revision.name] = runtime
        return out

    def select_all(
        self, revisions: Iterable[Revision]
    ) -> tuple[dict[str, tuple[str, ...]], dict[str, str], dict[str, tuple[EnvVar, ...]]]:
        """Revision name -> its flags, revision name -> why no runtime serves it, and revision name -> the
        chosen runtime's container env."""
        chosen = self.select(revisions)
        return chosen.flags, chosen.failures, chosen.envs


def _document(body: dict[str, Any]) -> dict[str, Any]:
    """What selection reads (server-managed metadata left out)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion", "serving.dev/v1alpha1"),
        "kind": body.get("kind", ""),
        "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta},
        "spec": body.get("spec") or {},
    }


def _parse(document: dict[str, Any]) -> ServingRuntime | None:
    try:
        return parse_runtime(document)
    except RuntimeSpecError as exc:  # the CRD schema let it through; it takes no part in selection
        log.warning("ignoring %s %s: %s", document["kind"], document["metadata"].get("name"), exc.message)
        return None


def _catalog(documents: Iterable[dict[str, Any]]) -> RuntimeCatalog:
    catalog = RuntimeCatalog(None)
    for document in documents:
        catalog.apply(document, admitted=True)
    return catalog


def field_message(message: str) -> str:
    """The failure as the conditions say it (the same text the local backend reports)."""
    return f"{FIELD}: {message}"
