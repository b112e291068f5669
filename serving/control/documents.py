"""Reading InferenceService files for apply: validate, and pin relative storage URIs to the file's folder.

A relative `storageUri` (or `file://` relative path) means "next to this YAML", as a user expects; it is
made absolute on the client side so the served model never depends on the server's working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from serving.spec import SUPPORTED_FORMATS, SpecError, load_documents


def read_documents(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    load_documents(text)  # validate with field paths before anything is sent
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for doc in docs:
        pin_storage_uris(doc, path.resolve().parent)
    return docs


def pin_storage_uris(doc: dict[str, Any], base: Path) -> None:
    predictor = doc.get("spec", {}).get("predictor", {})
    for key in ("model", *SUPPORTED_FORMATS):
        section = predictor.get(key)
        if isinstance(section, dict) and isinstance(section.get("storageUri"), str):
            section["storageUri"] = absolute_uri(section["storageUri"], base)


def absolute_uri(uri: str, base: Path) -> str:
    if uri.startswith("file://"):
        path = uri[len("file://"):]
        return uri if path.startswith("/") else "file://" + str((base / path).resolve())
    if "://" in uri or uri.startswith("/"):
        return uri
    return str((base / uri).resolve())
