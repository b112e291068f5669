"""The `v1` Secrets `serving apply -f` hands to `serving up`: what a model's KServe `storage:` reads.

One file per Secret in `STATE_DIR/secrets/` (the folder 0700, each file 0600, written atomically), holding
only the decoded data (`data` base64-decoded, `stringData` over it, as the API server merges them). Values
leave this module only towards a model fetch (`data()`); the API lists names, `serving get` never shows them,
and nothing here logs them.
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


def is_secret_document(doc: Any) -> bool:
    """A core `v1` Secret (what `serving apply` keeps; other Kubernetes objects are skipped)."""
    return isinstance(doc, dict) and doc.get("kind") == "Secret" and doc.get("apiVersion") == "v1"


def secret_data(doc: dict[str, Any]) -> dict[str, str]:
    """The Secret's values: `data` base64-decoded (UTF-8 text), `stringData` over it. Errors never quote a value."""
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequest("Secret: metadata.name is required, a lower-case DNS name")
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


class SecretStore:
    def __init__(self, root: Path) -> None:
        self.folder = root / "secrets"

    def _path(self, namespace: str, name: str) -> Path:
        if not _NAME.fullmatch(namespace) or not _NAME.fullmatch(name):
            raise BadRequest(f"{namespace}/{name}: not a Kubernetes namespace and name")
        return self.folder / f"{namespace}__{name}.json"

    def put(self, namespace: str, name: str, data: dict[str, str]) -> str:
        """Store a Secret's data; returns kubectl's word: created, configured or unchanged."""
        path = self._path(namespace, name)
        old = self.data(namespace, name)
        if old == data:
            return "unchanged"
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.folder, 0o700)
        except OSError as exc:
            raise StateError(f"cannot create {self.folder}: {exc.strerror or exc}") from exc
        write_atomic(path, orjson.dumps(data), mode=0o600)
        return "created" if old is None else "configured"

    def delete(self, namespace: str, name: str) -> None:
        path = self._path(namespace, name)
        if not path.exists():
            raise NotFound(f"Secret {namespace}/{name} not found")
        try:
            path.unlink()
        except OSError as exc:
            raise StateError(f"cannot remove Secret {namespace}/{name}: {exc.strerror or exc}") from exc

    def data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's values, or None when there is no such Secret."""
        try:
            value = orjson.loads(self._path(namespace, name).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def names(self) -> list[dict[str, str]]:
        """Every stored Secret as {namespace, name} (never a value)."""
        out = []
        for path in sorted(self.folder.glob("*__*.json")):
            namespace, _, name = path.stem.partition("__")
            out.append({"namespace": namespace, "name": name})
        return out
