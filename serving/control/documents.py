"""Reading files for apply: validate each document by its kind (InferenceService, Canary) with the file and
document named in errors, and pin relative storage URIs to the file's folder.

A relative `storageUri` (or `file://` relative path) means "next to this YAML", as a user expects; it is
made absolute on the client side so the served model never depends on the server's working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.canary.spec import parse_canary
from serving.errors import ServingError
from serving.servingruntime import KINDS as RUNTIME_KINDS
from serving.servingruntime import parse_runtime
from serving.spec import SUPPORTED_FORMATS, SpecError, parse, yaml_documents


def read_documents(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    docs = yaml_documents(text, str(path))
    if not docs:
        raise SpecError(f"{path}: no InferenceService document found")
    for index, doc in enumerate(docs):  # validate with field paths before anything is sent
        try:
            validate_document(doc)
        except ServingError as exc:
            where = f"{path}: " + (f"document {index + 1}: " if len(docs) > 1 else "")
            raise SpecError(where + exc.message) from exc
    for doc in docs:
        pin_storage_uris(doc, path.resolve().parent)
    return docs


def validate_document(doc: Any) -> None:
    """One document of any kind `serving apply` takes."""
    if isinstance(doc, dict) and doc.get("kind") == "Canary":
        parse_canary(doc)
    elif isinstance(doc, dict) and doc.get("kind") in RUNTIME_KINDS:
        parse_runtime(doc)
    else:
        parse(doc)


def pin_storage_uris(doc: dict[str, Any], base: Path) -> None:
    predictor = doc.get("spec", {}).get("predictor", {})
    for key in ("model", *SUPPORTED_FORMATS):
        section = predictor.get(key)
        if isinstance(section, dict) and isinstance(section.get("storageUri"), str):
            section["storageUri"] = absolute_uri(section["storageUri"], base)


def absolute_uri(uri: str, base: Path) -> str:
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        return uri if path.startswith("/") else "file://" + str((base / path).resolve())
    if "://" in uri or uri.startswith("/"):
        return uri
    return str((base / uri).resolve())
