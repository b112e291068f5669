"""The `v1` Secrets and ServiceAccounts `serving apply -f` hands to `serving up`: what a model's KServe
`storage:` reads, and the credentials KServe's storage-initializer takes from the Secrets listed by the
predictor's service account (`serviceAccountName`, "default" when unset).

One file per object in `STATE_DIR/secrets/` and `STATE_DIR/serviceaccounts/` (the folders 0700, each file
0600, written atomically). A Secret keeps its decoded data (`data` base64-decoded, `stringData` over it, as the
API server merges them) and its annotations (KServe's `serving.kserve.io/s3-endpoint`...); a ServiceAccount
the names of its `secrets` and its annotations (an IAM-role account's `s3-*` ones count). Values leave this module only towards a model fetch (`data()`); the API lists
names, `serving get` never shows them, and nothing here logs them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Any

import orjson

from serving.control.local.state import StateError, write_atomic
from serving.errors import BadRequest, NotFound

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a Kubernetes object name (DNS subdomain)
_KEY = re.compile(r"[-._a-zA-Z0-9]+")  # a Secret's data key
MAX_BYTES = 1024 * 1024  # Kubernetes' limit for one Secret


KEPT_KINDS = {"Secret": "secrets", "ServiceAccount": "serviceaccounts"}  # kind -> its API plural and folder


def is_secret_document(doc: Any) -> bool:
    """A core `v1` Secret."""
    return isinstance(doc, dict) and doc.get("kind") == "Secret" and doc.get("apiVersion") == "v1"


def is_kept_document(doc: Any) -> bool:
    """A core `v1` Secret or ServiceAccount: what `serving apply` keeps (other Kubernetes objects are skipped)."""
    return isinstance(doc, dict) and doc.get("kind") in KEPT_KINDS and doc.get("apiVersion") == "v1"


def kept_record(doc: dict[str, Any]) -> dict[str, Any]:
    """What is stored of a kept object, validated: a Secret's values and annotations, a ServiceAccount's
    Secret names. Errors name the object and the field, never a value."""
    if doc.get("kind") == "Secret":
        return {"data": secret_data(doc), "annotations": _annotations(doc, "Secret")}
    name = _name(doc, "ServiceAccount")
    refs = doc.get("secrets") or []
    if not isinstance(refs, list):
        raise BadRequest(f"ServiceAccount {name}: secrets must be a list of {{name: ...}}")
    names = []
    for i, ref in enumerate(refs):
        ref_name = ref.get("name") if isinstance(ref, dict) else None
        if not isinstance(ref_name, str) or not _NAME.fullmatch(ref_name):
            raise BadRequest(f"ServiceAccount {name}: secrets[{i}].name must be a Secret's name")
        names.append(ref_name)
    return {"secrets": names, "annotations": _annotations(doc, "ServiceAccount")}


def _name(doc: dict[str, Any], kind: str) -> str:
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequest(f"{kind}: metadata.name is required, a lower-case DNS name")
    return name


def _annotations(doc: dict[str, Any], kind: str) -> dict[str, str]:
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    if not isinstance(annotations, dict):
        raise BadRequest(f"{kind} {_name(doc, kind)}: metadata.annotations must be a mapping")
    return {str(k): str(v) for k, v in annotations.items()}


def secret_data(doc: dict[str, Any]) -> dict[str, str]:
    """The Secret's values: `data` base64-decoded (UTF-8 text), `stringData` over it. Errors never quote a value."""
    name = _name(doc, "Secret")
    out: dict[str, str] = {}
    for section in ("data", "stringData"):
        values = doc.get(section) or {}
        if not isinstance(values, dict):
            raise BadRequest(f"Secret {name}: {section} must be a mapping")
        for key, value in values.items():
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise BadRequest(f"Secret {name}: {section}: {key!r} is not a valid key")
            if not isinstance(value, str):
                raise BadRequest(f"Secret {name}: {section}.{key}: must be a string")
            out[key] = value if section == "stringData" else _decoded(name, key, value)
    if sum(len(k) + len(v) for k, v in out.items()) > MAX_BYTES:
        raise BadRequest(f"Secret {name}: over {MAX_BYTES} bytes")
    return out


def _decoded(name: str, key: str, value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"Secret {name}: data.{key}: not base64 of UTF-8 text") from exc


class KeptStore:
    """The kept objects of one kind, a private file each."""

    def __init__(self, root: Path, kind: str = "Secret") -> None:
        self.kind = kind
        self.folder = root / KEPT_KINDS[kind]

    def _path(self, namespace: str, name: str) -> Path:
        if not _NAME.fullmatch(namespace) or not _NAME.fullmatch(name):
            raise BadRequest(f"{namespace}/{name}: not a Kubernetes namespace and name")
        return self.folder / f"{namespace}__{name}.json"

    def put(self, namespace: str, name: str, record: dict[str, Any]) -> str:
        """Store an object's record; returns kubectl's word: created, configured or unchanged."""
        path = self._path(namespace, name)
        old = self.record(namespace, name)
        if old == record:
            return "unchanged"
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.folder, 0o700)
        except OSError as exc:
            raise StateError(f"cannot create {self.folder}: {exc.strerror or exc}") from exc
        write_atomic(path, orjson.dumps(record), mode=0o600)
        return "created" if old is None else "configured"

    def delete(self, namespace: str, name: str) -> None:
        path = self._path(namespace, name)
        if not path.exists():
            raise NotFound(f"{self.kind} {namespace}/{name} not found")
        try:
            path.unlink()
        except OSError as exc:
            raise StateError(f"cannot remove {self.kind} {namespace}/{name}: {exc.strerror or exc}") from exc

    def record(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored record, or None when there is no such object."""
        try:
            value = orjson.loads(self._path(namespace, name).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(value, dict):
            return None
        if self.kind == "Secret" and not isinstance(value.get("data"), dict):
            return {"data": value, "annotations": {}}  # kept before annotations were: its values only
        return value

    def data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's values, or None when there is no such Secret."""
        record = self.record(namespace, name)
        return None if record is None else record.get("data")

    def names(self) -> list[dict[str, str]]:
        """Every stored object as {namespace, name} (never a value)."""
        out = []
        for path in sorted(self.folder.glob("*__*.json")):
            namespace, _, name = path.stem.partition("__")
            out.append({"namespace": namespace, "name": name})
        return out
