"""Where a revision's model files are on this machine: the storage layer resolves `storageUri`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.errors import ArtifactError
from serving.revision import Revision


def resolve_model_dir(revision: Revision, storage: Any) -> Path:
    uri = revision.storage_uri
    if not uri:
        raise ArtifactError("no storageUri given")
    try:
        from serving import storage as storage_module
    except ImportError:  # pragma: no cover - storage layer not installed
        path = Path(uri.removeprefix("file://"))
        if not path.exists():
            raise ArtifactError(f"{uri}: no such file or directory") from None
        return path
    return storage_module.resolve(uri, storage)
