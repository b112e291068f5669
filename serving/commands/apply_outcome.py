"""What `serving apply` says about each document, before sending it: created, configured or unchanged (as
kubectl does), and a warning for a local storageUri that does not exist (the service is still recorded,
as KServe records it, and fails until the path appears)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.control.documents import storage_sections

SERVER_METADATA = ("generation", "creationTimestamp", "uid", "resourceVersion")


def key(doc: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name): a Canary may share its InferenceService's name."""
    meta = doc.get("metadata", {})
    return doc.get("kind", "InferenceService"), meta.get("namespace", "default"), meta.get("name", "")


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The parts a user writes: everything but status, warnings and server-set metadata."""
    meta = {k: v for k, v in doc.get("metadata", {}).items() if k not in SERVER_METADATA}
    return {**{k: v for k, v in doc.items() if k not in ("status", "warnings", "metadata")}, "metadata": meta}


def outcome(doc: dict[str, Any], existing: dict[str, Any] | None) -> str:
    if existing is None:
        return "created"
    return "unchanged" if _comparable(doc) == _comparable(existing) else "configured"


def storage_uris(doc: dict[str, Any]) -> list[str]:
    """Every storage URI a written InferenceService names (storageUri, and each storageUris item's uri)."""
    found = []
    for section in storage_sections(doc.get("spec", {}).get("predictor", {})):
        items = [section.get("storageUri")] + [
            item.get("uri") for item in section.get("storageUris") or () if isinstance(item, dict)
        ]
        found += [uri for uri in items if isinstance(uri, str)]
    return found


def missing_local_paths(doc: dict[str, Any]) -> list[str]:
    """Local storage URIs (absolute by now: pinned to the YAML's folder) that name nothing on this machine."""
    missing = []
    for uri in storage_uris(doc):
        path = uri.removeprefix("file://") if uri.startswith("file://") else uri
        if "://" not in path and path.startswith("/") and not Path(path).exists():
            missing.append(path)
    return missing
