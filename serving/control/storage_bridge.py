"""Where a revision's model files are on this machine: the storage layer resolves `storageUri`."""

from __future__ import annotations

from pathlib import Path

from serving import storage
from serving.errors import ArtifactError
from serving.revision import Revision


def resolve_model_dir(revision: Revision, config: storage.StorageConfig) -> Path:
    uri = revision.storage_uri
    if not uri:
        raise ArtifactError("no storageUri given")
    return storage.resolve(uri, config)
