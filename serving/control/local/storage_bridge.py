"""Where a revision's model files are on this machine: the storage layer resolves `storageUri`, or KServe's
`storage:` once its Secret (applied with `serving apply -f`, see `secrets.py`) has given the bucket.

Object-store credentials come from the environment of `serving up` overlaid with the predictor's literal
`env` values (KServe's names: AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCESS_KEY...),
and for a `storage:` with the env its Secret's entry gives (as KServe's storage initializer sets it, over the
rest). That env reaches the fetch only, never a model server process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from serving import storage
from serving.control.process_args import local_env, predictor_env
from serving.errors import ArtifactError
from serving.revision import Revision
from serving.storage.storage_spec import resolve_storage

# revision -> (the Secret its `storage:` reads, that Secret's data or None when there is none)
SecretSource = Callable[[Revision], tuple[str, Mapping[str, str] | None]]


def location(revision: Revision, secrets: SecretSource | None = None) -> tuple[str, dict[str, str]]:
    """(the URI to fetch, the env its Secret gives). Raises `StorageSpecError` when a `storage:` cannot be
    completed (no Secret, no such entry, no bucket...)."""
    spec = revision.storage
    if spec is None:
        if not revision.storage_uri:
            raise ArtifactError("no storageUri given")
        return revision.storage_uri, {}
    name, data = secrets(revision) if secrets is not None else ("storage-config", None)
    resolved = resolve_storage(spec.key, spec.path, spec.parameters, data, name, revision.storage_uri)
    return resolved.uri, resolved.env


def resolve_at(
    revision: Revision, uri: str, secret_env: Mapping[str, str], config: storage.StorageConfig
) -> Path:
    own = local_env(predictor_env(revision))
    if own or secret_env:
        config = dataclasses.replace(config, env={**(config.env or os.environ), **own, **secret_env})
    return storage.resolve(uri, config)


def resolve_model_dir(
    revision: Revision, config: storage.StorageConfig, secrets: SecretSource | None = None
) -> Path:
    uri, secret_env = location(revision, secrets)
    return resolve_at(revision, uri, secret_env, config)
