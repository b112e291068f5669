"""Reading files for apply: validate each document by its kind (InferenceService, Canary, ServingRuntime,
ClusterServingRuntime) with the file and document named in errors, and pin relative storage URIs to the file's
folder.

A relative `storageUri` (or `file://` relative path) means "next to this YAML", as a user expects; it is
made absolute on the client side so the served model never depends on the server's working directory.

A `v1` Secret or ServiceAccount in the same files is kept: `serving up` stores it (see
`serving.control.local.secrets`) for the models whose KServe `storage:` reads the Secret, or whose service
account lists Secrets of storage credentials (KServe's S3, GCS, Azure and http(s) headers Secrets). Other
Kubernetes objects of other API groups (a ConfigMap, a Role: KServe's YAML sometimes carries them) are not ours
to run on this machine: they are skipped with one warning line per file naming them (`serving render` /
`convert` pass them through, see `serving.control.kubernetes.documents`). KServe kinds we do not run (InferenceGraph, TrainedModel, ClusterStorageContainer...) are
skipped the same way, one warning line each, everywhere (render and convert too: no operator of ours acts on
them); the rest of the file is applied. A `kind: List` (what `kubectl get -o yaml` writes) is read item by item.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.canary.spec import parse_canary
from serving.control.local.secrets import is_kept_document, kept_record
from serving.errors import ServingError
from serving.servingruntime import KINDS as RUNTIME_KINDS
from serving.servingruntime import parse_runtime
from serving.spec import KFSERVING_GROUP, SUPPORTED_FORMATS, SpecError, located, parse, placed_documents

OUR_GROUPS = ("serving.kserve.io", "serving.dev")
# Groups whose objects are ours to read or refuse, never Kubernetes objects to pass by: KFServing's old one too
# (its KFService and v1alpha2 InferenceService are refused naming what to write instead).
KNOWN_GROUPS = (*OUR_GROUPS, KFSERVING_GROUP)
OUR_KINDS = ("InferenceService", "Canary", *RUNTIME_KINDS)
# KServe's other kinds (serving.kserve.io/v1alpha1): known, so not "misspelt", and not run here; what to do instead.
KSERVE_ONLY_KINDS = {
    "InferenceGraph": "call the services in turn from the client, or put the steps in a transformer",
    "TrainedModel": "multi-model serving: give each model its own InferenceService",
    "ClusterStorageContainer": "serving's own storage-initializer fetches every storageUri",
    "LocalModelCache": "models are cached by `serving up --cache-dir` (and each pod's storage-initializer)",
    "LocalModelNodeGroup": "models are cached by `serving up --cache-dir` (and each pod's storage-initializer)",
    "LocalModelNode": "models are cached by `serving up --cache-dir` (and each pod's storage-initializer)",
    "LLMInferenceService": "large language models are not served here",
    "LLMInferenceServiceConfig": "large language models are not served here",
}


def warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read_documents(path: Path, warn: Callable[[str], None] = warn_stderr) -> list[dict[str, Any]]:
    """The documents of a file that `serving up` runs or keeps (v1 Secrets and ServiceAccounts), validated;
    other Kubernetes objects skipped (`warn`)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    placed = placed_documents(text, str(path))
    if not placed:
        raise SpecError(f"{path}: no InferenceService document found")
    foreign = [doc for _, doc in placed if is_foreign(doc) and not is_kept_document(doc)]
    if foreign:
        warn(skipped_message(path, foreign))
    for _, doc in placed:
        if is_unsupported_kserve(doc):
            warn(unsupported_message(path, doc))
    ours = [
        (where, doc)
        for where, doc in placed
        if (not is_foreign(doc) or is_kept_document(doc)) and not is_unsupported_kserve(doc)
    ]
    for where, doc in ours:  # validate with field paths before anything is sent
        try:
            if is_kept_document(doc):
                kept_record(doc)
            else:
                validate_document(doc)
        except ServingError as exc:
            raise SpecError(located(str(path), where) + exc.message) from exc
    for _, doc in ours:
        if not is_kept_document(doc):
            pin_storage_uris(doc, path.resolve().parent)
    return [doc for _, doc in ours]


def is_foreign(doc: Any) -> bool:
    """A Kubernetes object of another API group (`v1` Secret, ServiceAccount, ConfigMap; `apps/v1` ...): one
    whose kind is none of ours and whose apiVersion is not KServe's group, KFServing's or ours. (A misspelt kind
    of those groups is not foreign: it is refused, naming the field.)"""
    if not isinstance(doc, dict):
        return False
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str) or kind in OUR_KINDS:
        return False
    return api_version.rpartition("/")[0] not in KNOWN_GROUPS  # "v1": the core group ""


def is_unsupported_kserve(doc: Any) -> bool:
    """One of KServe's kinds that is not run here (InferenceGraph, TrainedModel, ClusterStorageContainer...)."""
    if not isinstance(doc, dict) or doc.get("kind") not in KSERVE_ONLY_KINDS:
        return False
    api_version = doc.get("apiVersion")
    return isinstance(api_version, str) and api_version.rpartition("/")[0] in OUR_GROUPS


def unsupported_message(path: Path | str, doc: dict[str, Any]) -> str:
    """One line for one skipped KServe object: its kind, what it is, and what to do instead."""
    kind = doc["kind"]
    return (
        f"{path}: kind {kind} ({doc.get('apiVersion')}) is not supported here; skipped {describe(doc)} "
        f"({KSERVE_ONLY_KINDS[kind]}); the rest of the file is applied"
    )


def describe(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{doc.get('kind')}/{name or '?'}"


def skipped_message(path: Path, foreign: list[dict[str, Any]]) -> str:
    return (
        f"{path}: skipped {', '.join(describe(d) for d in foreign)}: Kubernetes objects serving up does not "
        "manage (locally, storage credentials come from the environment, the predictor's env and the v1 "
        "Secrets and ServiceAccounts applied with it; on Kubernetes, kubectl apply them, or use serving render, "
        "which passes them through)"
    )


def is_canary_document(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "Canary"


def validate_document(doc: Any) -> None:
    """One document of any kind `serving apply` takes."""
    if is_canary_document(doc):
        parse_canary(doc)
    elif isinstance(doc, dict) and doc.get("kind") in RUNTIME_KINDS:
        parse_runtime(doc)
    else:
        parse(doc)


def pin_storage_uris(doc: dict[str, Any], base: Path) -> None:
    """Relative local storage URIs made absolute: `storageUri`, and each `storageUris` item's `uri`."""
    predictor = doc.get("spec", {}).get("predictor", {})
    for section in storage_sections(predictor):
        if isinstance(section.get("storageUri"), str):
            section["storageUri"] = absolute_uri(section["storageUri"], base)
        for item in section.get("storageUris") or ():
            if isinstance(item, dict) and isinstance(item.get("uri"), str):
                item["uri"] = absolute_uri(item["uri"], base)


def storage_sections(predictor: Any) -> list[dict[str, Any]]:
    """The mappings of a written predictor that may hold storageUri / storageUris: the model (in either form)
    and the predictor itself (KServe's component-level storageUris)."""
    if not isinstance(predictor, dict):
        return []
    sections = [predictor.get(key) for key in ("model", *SUPPORTED_FORMATS)]
    return [s for s in [*sections, predictor] if isinstance(s, dict)]


def absolute_uri(uri: str, base: Path) -> str:
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        return uri if path.startswith("/") else "file://" + str((base / path).resolve())
    if "://" in uri or uri.startswith("/"):
        return uri
    return str((base / uri).resolve())
