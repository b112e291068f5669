"""InferenceService documents for the cluster: KServe group -> ours, validated, applied with create-or-patch.

`serving convert` and `serving apply --backend kubernetes` use these. KServe's ServingRuntime and
ClusterServingRuntime documents in the same files go the same way (to `serving.dev/v1alpha1`, the operator
watches them). A local `storageUri` is kept as
written but warned about: the cluster cannot see this machine's files (use pvc:// or http(s)://).
Kubernetes objects of other API groups in the files (a `v1` Secret or ServiceAccount with storage
credentials, a ConfigMap) pass through as written (`serving convert` / `render` print them for `kubectl apply`,
with `-n` set); `serving apply --backend kubernetes` leaves them to kubectl, with a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.autoscale.knobs import unknown_annotations
from serving.cluster import Cluster, merge_patch
from serving.control.documents import (
    describe,
    is_canary_document,
    is_foreign,
    is_unsupported_kserve,
    unsupported_message,
    validate_document,
    warn_stderr,
)
from serving.control.kubernetes.render import model_ports
from serving.control.runtime_catalog import is_runtime_document
from serving.crd import VERSION
from serving.errors import ServingError
from serving.revision import Revision
from serving.runtime_crd import VERSION as RUNTIME_VERSION
from serving.runtime_effects import runtime_warnings
from serving.servingruntime import parse_runtime
from serving.spec import (
    OUR_GROUP,
    SpecError,
    concurrency_per_worker,
    dropped_logger,
    load_documents,
    located,
    model_args_warnings,
    parse,
    placed_documents,
)
from serving.spec_effects import (
    VISIBILITY_LABELS,
    component_annotations,
    no_kubernetes_effect,
    scrape_warnings,
    unsupported_annotations,
)

OUR_API_VERSION = f"{OUR_GROUP}/{VERSION}"
OUR_RUNTIME_API_VERSION = f"{OUR_GROUP}/{RUNTIME_VERSION}"


def convert_document(doc: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """The same InferenceService (or ServingRuntime) under our API group (a Canary is ours already) (the spec is identical); validates it,
    as written first, with `serving apply`'s own check (an apiVersion apply refuses is refused here too, not
    replaced by ours). The pod spec's deprecated `serviceAccount` is written `serviceAccountName` (our CRD knows
    only that one)."""
    validate_document(doc)
    if is_canary_document(doc):  # already ours: the operator's controller reads it as written
        return _passed_through(doc, namespace)
    runtime = is_runtime_document(doc)
    out = {**doc, "apiVersion": OUR_RUNTIME_API_VERSION if runtime else OUR_API_VERSION}
    if namespace is not None and doc.get("kind") != "ClusterServingRuntime":
        out["metadata"] = {**out.get("metadata", {}), "namespace": namespace}
    if runtime:
        parse_runtime(out)
    else:
        parse(out)
        out = _service_account_named(out)
    return out


def _service_account_named(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return doc
    components = {}
    for name in ("predictor", "transformer"):
        component = spec.get(name)
        if isinstance(component, dict) and "serviceAccount" in component:
            component = {k: v for k, v in component.items() if k != "serviceAccount"}
            component["serviceAccountName"] = spec[name].get(
                "serviceAccountName", spec[name]["serviceAccount"]
            )
            components[name] = component
    return {**doc, "spec": {**spec, **components}} if components else doc


def read_converted(
    paths: list[Path], namespace: str | None = None, warn: Callable[[str], None] = warn_stderr
) -> list[dict[str, Any]]:
    """Every document of the files (a `kind: List` item by item), ours converted and validated (errors name the
    file and document), other Kubernetes objects as written (`-n` set on them too); KServe kinds no operator of
    ours runs (InferenceGraph...) are left out, one `warn` line each."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
        found = placed_documents(text, str(path))
        if not found:
            load_documents(text, str(path))  # "no InferenceService document found", named
        for where, doc in found:
            if is_foreign(doc):
                docs.append(_passed_through(doc, namespace))
                continue
            if is_unsupported_kserve(doc):
                warn(unsupported_message(path, doc))
                continue
            try:
                docs.append(convert_document(doc, namespace))
            except ServingError as exc:
                raise SpecError(located(str(path), where) + exc.message) from exc
    return docs


def _passed_through(doc: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    if namespace is None:
        return doc
    return {**doc, "metadata": {**(doc.get("metadata") or {}), "namespace": namespace}}


def cluster_warnings(doc: dict[str, Any]) -> list[str]:
    """What of an InferenceService does nothing (or less than it says) on Kubernetes, by field: printed by
    `serving render`, `convert` and `apply --backend kubernetes` (accepted means in effect, or said)."""
    if is_runtime_document(doc):  # what a ServingRuntime sets that the cluster ignores too
        return runtime_warnings(parse_runtime(doc), local=False)
    if is_foreign(doc) or is_canary_document(doc):
        return []
    isvc = parse(doc)
    predictor = isvc.spec.predictor
    custom = predictor.custom_container is not None
    out = [] if custom else model_args_warnings(predictor) + concurrency_per_worker(predictor)
    out += dropped_logger(isvc)
    model = None if custom else predictor.normalised_model()
    uri = predictor.custom_storage_uri if model is None else model.storage_uri
    field = "containers[].env STORAGE_URI" if custom else "model.storageUri"
    items = model.storage_uris or () if model is not None else ()
    located = [(field, uri)] + [(f"model.storageUris[{i}].uri", item.uri) for i, item in enumerate(items)]
    out += [
        f"spec.predictor.{where}: {given!r} is a local path; the cluster cannot read it "
        "(use pvc://CLAIM/path, an object store such as s3:// or gs://, or http(s)://)"
        for where, given in located
        if given and ("://" not in given or given.startswith("file://"))
    ]
    storage = None if custom else predictor.normalised_model().storage
    if storage is not None and storage.schema_path is not None:
        out.append(
            f"spec.predictor.model.storage.schemaPath: {storage.schema_path!r}: ModelMesh's model schema; no "
            "effect here (KServe's own predictors do not read it either)"
        )
    out += unknown_annotations(isvc.metadata.annotations) + unsupported_annotations(isvc.metadata.annotations)
    if not custom:
        sidecars = {str(p.get("containerPort")) for c in predictor.containers for p in c.ports}
        http = model_ports(Revision.from_spec(isvc))[0]
        out += scrape_warnings(isvc.metadata.annotations, str(http), sidecars)
    out += component_annotations(isvc) + no_kubernetes_effect(isvc)
    out += [
        f"metadata.labels.{key}: {isvc.metadata.labels[key]}: not enforced per service: every InferenceService "
        "is reached through the serving router (no Ingress of its own to leave out), so it is as cluster-local as "
        "the router's Service (the chart's default ClusterIP; not if you expose the router)"
        for key in VISIBILITY_LABELS
        if key in isvc.metadata.labels
    ]
    if custom:
        out += [
            f"spec.predictor.{name}: no effect on a custom predictor container (it is a setting of our model "
            "server; your image runs as written)"
            for name, value in (
                ("batcher", predictor.batcher),
                ("logger", predictor.logger),
                ("containerConcurrency", predictor.container_concurrency),
            )
            if value not in (None, 0)  # containerConcurrency 0: unlimited, as without it
        ]
    return out


def apply_kubernetes(
    paths: list[Path], namespace: str | None = None, cluster: Cluster | None = None
) -> list[str]:
    """Create or patch each InferenceService in the current kubeconfig context; one line per object."""
    cluster = cluster or Cluster.from_environment()
    lines = []
    for doc in read_converted(paths, namespace):
        if is_foreign(doc):
            lines.append(f"  warning: skipped {describe(doc)}: apply Kubernetes objects with kubectl")
            continue
        if doc["kind"] != "ClusterServingRuntime":
            doc.setdefault("metadata", {}).setdefault("namespace", "default")
        outcome = apply_document(cluster, doc)
        lines.append(f"{doc['kind'].lower()}.{OUR_GROUP}/{doc['metadata']['name']} {outcome}")
        lines += [f"  warning: {w}" for w in cluster_warnings(doc)]
    return lines


def apply_document(cluster: Cluster, doc: dict[str, Any]) -> str:
    """Create, or patch so the live spec becomes exactly the document's (removed fields removed too,
    e.g. `canaryTrafficPercent` to promote); labels and annotations are merged, as kubectl does."""
    meta, kind = doc["metadata"], doc.get("kind", "InferenceService")
    live = cluster.get(kind, meta.get("namespace", ""), meta["name"])
    if live is None:
        return cluster.apply(doc, None, known=True)
    patch = {
        k: v
        for k, v in {
            "spec": merge_patch(live.get("spec") or {}, doc.get("spec") or {}),
            "metadata": {k: meta[k] for k in ("labels", "annotations") if meta.get(k)},
        }.items()
        if v
    }
    if not patch:
        return "unchanged"
    cluster.patch(kind, meta.get("namespace", ""), meta["name"], patch)
    return "configured"
