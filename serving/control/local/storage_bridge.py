"""Where a revision's model files are on this machine: the storage layer resolves `storageUri`, or KServe's
`storage:` once its Secret (applied with `serving apply -f`, see `secrets.py`) has given the bucket.

Object-store credentials come from the environment of `serving up` overlaid with the predictor's literal
`env` values (KServe's names: AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCESS_KEY...),
then, as KServe's storage-initializer gets them, with the env of the Secrets its service account lists (applied
with `serving apply -f`: S3 keys and `serving.kserve.io/s3-*` annotations, a GCS key file, Azure keys, http(s)
headers for a host), or for a `storage:` with the env its Secret's entry gives. That env reaches the fetch only,
never a model server process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from serving import storage
from serving.control.local.state import write_atomic
from serving.control.process_args import local_env, predictor_env
from serving.errors import ArtifactError
from serving.revision import Revision
from serving.storage.compose import compose, composed_dir, discard
from serving.storage.kserve_secrets import GCS_KEY_FILE, credentials_from_secrets
from serving.storage.storage_spec import resolve_storage

# revision -> (the Secret its `storage:` reads, that Secret's data or None when there is none)
SecretSource = Callable[[Revision], tuple[str, Mapping[str, str] | None]]
# revision -> the storage credentials' env its service account's Secrets give ({} without any)
AccountSource = Callable[[Revision], dict[str, str]]


def location(
    revision: Revision, secrets: SecretSource | None = None, accounts: AccountSource | None = None
) -> tuple[str, dict[str, str]]:
    """(the URI to fetch, the env its Secret or its service account gives). Raises `StorageSpecError` when a
    `storage:` cannot be completed (no Secret, no such entry, no bucket...)."""
    spec = revision.storage
    if spec is None:
        if not revision.storage_uri:
            raise ArtifactError("no storageUri given")
        env = accounts(revision) if accounts is not None and revision.reads_account_credentials else {}
        return revision.storage_uri, env
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
    revision: Revision,
    config: storage.StorageConfig,
    secrets: SecretSource | None = None,
    accounts: AccountSource | None = None,
) -> Path:
    uri, secret_env = location(revision, secrets, accounts)
    return resolve_at(revision, uri, secret_env, config)


def resolve_composed(
    revision: Revision,
    config: storage.StorageConfig,
    accounts: AccountSource | None = None,
    used: list[Path] | None = None,
) -> Path:
    """KServe's `storageUris`: every item fetched (with the service account's credentials, as its
    storage-initializer fetches them) into one folder of the revision's, each at its place under /mnt/models.
    `used` hears each folder an item was laid from (which cache entries the revision came from)."""
    downloads = accounts(revision) if accounts is not None else {}

    def fetch(uri: str) -> Path:
        remote = storage.scheme_of(uri) not in ("", "file", "pvc")
        folder = resolve_at(revision, uri, downloads if remote else {}, config)
        if used is not None:
            used.append(folder)
        return folder

    items = [(item.uri, item.subpath) for item in revision.storage_uris]
    owner = f"{revision.namespace}.{revision.name}"
    return compose(items, composed_dir(config, owner), config, fetch)


def let_go(model_dir: Path | None, config: storage.StorageConfig) -> None:
    """A retired revision's folder: its download lease given back, a folder built for its storageUris removed."""
    if model_dir is not None:
        storage.release(model_dir)
    discard(model_dir, config)


def account_env(secrets: list[dict[str, Any]], key_dir: Path) -> dict[str, str]:
    """The env KServe's credential builder gives a storage-initializer for these Secrets (each as
    {metadata: {name, annotations}, stringData: its values}), with every secretKeyRef read and a GCS key written
    to a private file under `key_dir` (what the pod mounts)."""
    credentials = credentials_from_secrets(secrets)
    values = {s["metadata"]["name"]: s["stringData"] for s in secrets if "stringData" in s}
    env: dict[str, str] = {}
    for entry in credentials.env:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        value = values.get(ref["name"], {}).get(ref["key"]) if ref else entry.get("value")
        if value is not None:
            env[entry["name"]] = value
    for volume in credentials.volumes:  # a GCS key: the file the pod would see at /var/secrets
        secret = volume["secret"]["secretName"]
        folder = key_dir / secret
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(folder / GCS_KEY_FILE, values[secret][GCS_KEY_FILE].encode(), mode=0o600)
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(folder / GCS_KEY_FILE)
    return env
