"""The ServingRuntimes and ClusterServingRuntimes `serving up` knows: the built-in ones plus those applied.

Applied documents persist in the state directory (`servingruntimes.json`, written atomically) so a restart
keeps them. `check` runs at apply time and refuses an InferenceService whose explicit `runtime:` cannot serve it
(unknown name, disabled, another format or protocol) with the field path, before anything changes; a runtime
KServe's ServingRuntime webhook denies (a format with two priorities, or a tie with another runtime of its scope:
`conflict`) is refused when applied, as kubectl apply is refused by that webhook; `flags_for`
runs when a revision starts: the chosen runtime's `serving serve` flags, or KServe's "no runtime" message that
leaves the revision not ready. A `module:Class` runtime is our custom-runtime hook and bypasses selection.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from serving.errors import NotFound, existing_names
from serving.revision import Revision
from serving.servingruntime import (
    BUILTIN_RUNTIMES,
    KINDS,
    ModelRequest,
    RuntimeSpecError,
    SelectionError,
    ServiceMeta,
    ServingRuntime,
    bind,
    parse_runtime,
    priority_conflict,
    runtime_implementation,
    select_runtime,
    serve_flags,
)
from serving.spec import InferenceService, SpecError

STATE_FILE = "servingruntimes.json"
Key = tuple[str, str | None, str]  # (kind, namespace or None for cluster runtimes, name)
log = logging.getLogger("serving.control")


def is_runtime_document(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") in KINDS


class RuntimeCatalog:
    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / STATE_FILE if state_dir is not None else None
        self.documents: dict[Key, dict[str, Any]] = {}
        self.runtimes: dict[Key, ServingRuntime] = {}
        for doc in self._load():
            try:  # a priority conflict stored by a version that took it: kept (it may be serving), said
                self._add(doc, warn=lambda why: log.warning("a stored runtime apply now refuses: %s", why))
            except RuntimeSpecError as exc:  # stored by a version that accepted it: skipped, said, not fatal
                log.warning("ignoring a stored runtime this version refuses: %s", exc.message)

    def apply(self, doc: dict[str, Any], *, admitted: bool = False) -> dict[str, Any]:
        """Validate and store (replacing one of the same kind, namespace and name); returns the document. A
        runtime KServe's webhook denies for a priority conflict (`conflict`) is refused: RuntimeSpecError, unless
        `admitted` (a cluster's runtime: its API server took it, and the operator warns instead)."""
        doc = _unmarked(doc)  # a built-in one printed and applied back is an applied one
        self._add(doc, refuse=not admitted)
        self._save()
        return doc

    def delete(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Forget an applied runtime (a built-in one of the same name serves again); returns its document."""
        key = (kind, namespace if kind == "ServingRuntime" else None, name)
        if key not in self.documents:
            where = f"{namespace}/{name}" if kind == "ServingRuntime" else name
            builtin = kind == "ClusterServingRuntime" and any(r.name == name for r in BUILTIN_RUNTIMES)
            hint = " (it is built in: apply one of the same name to replace it)" if builtin else ""
            applied = sorted(k[2] for k in self.documents if k[0] == kind and k[1] == key[1])
            raise NotFound(f"{kind} {where} not found{hint}{existing_names(applied) if applied else ''}")
        doc = self.documents.pop(key)
        del self.runtimes[key]
        self._save()
        return doc

    def preview(
        self, docs: list[dict[str, Any]], warn: Callable[[str], None] | None = None
    ) -> RuntimeCatalog:
        """A copy holding `docs` as well (validated, each against those before it as if applied in turn), to
        check InferenceServices before anything is applied. A priority conflict is refused, or given to `warn`
        (`serving render`: what the cluster, which has no such webhook here, would accept)."""
        copy = RuntimeCatalog(None)
        copy.documents, copy.runtimes = dict(self.documents), dict(self.runtimes)
        for doc in docs:
            copy._add(doc, refuse=warn is None, warn=warn)
        return copy

    def conflict(self, runtime: ServingRuntime) -> str | None:
        """Why KServe's ServingRuntime webhook would deny `runtime` next to the runtimes of its scope (its
        namespace's ServingRuntimes, or the ClusterServingRuntimes: the built-in ones are ordinary ones there),
        else None (`serving.servingruntime.priority_conflict`)."""
        scope = [
            r
            for (kind, namespace, _), r in self.runtimes.items()
            if kind == runtime.kind and namespace == runtime.namespace
        ]
        builtins = []
        if runtime.cluster_scoped:
            applied = {r.name for r in scope}
            builtins = [r for r in BUILTIN_RUNTIMES if r.name not in applied]
        return priority_conflict(runtime, scope + builtins, (r.name for r in builtins))

    def items(self) -> list[dict[str, Any]]:
        """Applied documents, then the built-in cluster runtimes not shadowed by an applied one."""
        applied = list(self.documents.values())
        names = {(k[0], k[2]) for k in self.documents}
        builtins = [builtin_document(r) for r in BUILTIN_RUNTIMES if (r.kind, r.name) not in names]
        return applied + builtins

    def check(self, isvc: InferenceService) -> None:
        """Refuse an explicit `runtime:` that cannot serve this predictor (KServe's message, our field path)."""
        predictor = isvc.spec.predictor
        request = _request(predictor.normalised_model()) if predictor.custom_container is None else None
        if request is None or request.runtime is None:
            return
        try:
            self.select(request, isvc.metadata.namespace)
        except SelectionError as exc:
            raise SpecError(f"spec.predictor.model.runtime: {exc.message}") from exc

    def flags_for(self, revision: Revision) -> list[str]:
        """`serving serve` flags of the runtime this revision gets; SelectionError if none supports it."""
        return self.resolve(revision)[1]

    def resolve(
        self, revision: Revision, meta: ServiceMeta | None = None
    ) -> tuple[ServingRuntime | None, list[str]]:
        """The runtime this revision gets (None: nothing to select, e.g. `module:Class`), its placeholders filled
        in from `meta` (the InferenceService's metadata; its name and namespace when not given), and its `serving
        serve` flags; SelectionError if none supports it."""
        request = _request(revision.model)
        if request is None:
            return None, []
        meta = meta or ServiceMeta(revision.isvc, revision.namespace)
        runtime = bind(self.select(request, revision.namespace), meta)
        flags = [
            "--runtime",
            runtime_implementation(runtime, request.format_name),
            *serve_flags(runtime, meta),
        ]
        return runtime, flags

    def select(self, request: ModelRequest, namespace: str) -> ServingRuntime:
        local = [
            r for (kind, ns, _), r in self.runtimes.items() if kind == "ServingRuntime" and ns == namespace
        ]
        cluster = [r for (kind, _, _), r in self.runtimes.items() if kind == "ClusterServingRuntime"]
        applied = {r.name for r in cluster}
        cluster += [r for r in BUILTIN_RUNTIMES if r.name not in applied]
        return select_runtime(request, local, cluster)

    def _add(
        self, doc: dict[str, Any], *, refuse: bool = False, warn: Callable[[str], None] | None = None
    ) -> None:
        """`refuse` / `warn`: a priority conflict is a RuntimeSpecError / said (else, as stored: kept silently)."""
        runtime = parse_runtime(doc)
        if (refuse or warn is not None) and (why := self.conflict(runtime)) is not None:
            if refuse:
                raise RuntimeSpecError(why)
            assert warn is not None
            warn(why)
        key = (runtime.kind, runtime.namespace, runtime.name)
        self.documents[key], self.runtimes[key] = doc, runtime

    def _load(self) -> list[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return []
        docs = orjson.loads(self.path.read_bytes())
        return docs if isinstance(docs, list) else []

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps(list(self.documents.values()), option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.path)


BUILTIN_ANNOTATION = "serving.dev/builtin"  # marks a built-in runtime's document; ignored when applied back


def builtin_document(runtime: ServingRuntime) -> dict[str, Any]:
    """A built-in runtime as `get csr NAME -o yaml` prints it: a document `serving apply` takes back as is (it
    then shadows the built-in one), marked by an annotation rather than a key Kubernetes has not got."""
    doc = runtime.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["metadata"] = {**doc["metadata"], "annotations": {BUILTIN_ANNOTATION: "true"}}
    return doc


def is_builtin(doc: dict[str, Any]) -> bool:
    annotations = doc.get("metadata", {}).get("annotations") or {}
    return annotations.get(BUILTIN_ANNOTATION) == "true"


def _unmarked(doc: dict[str, Any]) -> dict[str, Any]:
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        return doc
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict) or BUILTIN_ANNOTATION not in annotations:
        return doc
    kept = {k: v for k, v in annotations.items() if k != BUILTIN_ANNOTATION}
    trimmed = {k: v for k, v in metadata.items() if k != "annotations"} | (
        {"annotations": kept} if kept else {}
    )
    return {**doc, "metadata": trimmed}


def _request(model: Any) -> ModelRequest | None:
    """Selection input from a `ModelSpec`; None when there is nothing to select (no format, or `module:Class`)."""
    if model is None or model.model_format is None or (model.runtime and ":" in model.runtime):
        return None
    return ModelRequest(
        model.model_format.name, model.model_format.version, model.protocol_version, model.runtime
    )
