"""KServe's `storage:` form of a model's location: a path in a bucket described by an entry of a Secret.

`spec.predictor.model.storage: {key, path, parameters}` names an entry (`key`) of the `storage-config` Secret
in the InferenceService's namespace (another Secret with the annotation `serving.kserve.io/storageSecretName`);
each entry is a JSON object (`{"type": "s3", "bucket": ..., "access_key_id": ..., "endpoint_url": ...}`), and
`parameters` override its entries. The rules are KServe's (its credential builder's
CreateStorageSpecSecretEnvs and its storage initializer's `_update_with_storage_spec`), written here once as
pure functions: both backends call `resolve_storage`; the Kubernetes storage-initializer (`serving storage
pull`) calls `env_from_storage_config` on the STORAGE_CONFIG / STORAGE_OVERRIDE_CONFIG env it is given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from serving.storage.errors import StorageError

DEFAULT_SECRET = "storage-config"  # KServe's DefaultStorageSpecSecret
SECRET_ANNOTATION = "serving.kserve.io/storageSecretName"  # KServe's StorageSpecSecretName annotation
DEFAULT_KEY = "default"  # KServe's DefaultStorageSpecSecretKey (`default_<type>` with parameters.type)
TYPES = ("s3", "hdfs", "webhdfs")
CONFIG_ENV, OVERRIDE_ENV = "STORAGE_CONFIG", "STORAGE_OVERRIDE_CONFIG"  # the initializer's env (KServe's)
# entry of the JSON -> the env variable KServe's storage initializer sets from it (type s3)
S3_ENV = (
    ("endpoint_url", "AWS_ENDPOINT_URL"),
    ("access_key_id", "AWS_ACCESS_KEY_ID"),
    ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ("region", "AWS_DEFAULT_REGION"),
    ("ca_bundle", "AWS_CA_BUNDLE"),
    ("verify_ssl", "S3_VERIFY_SSL"),
    ("anonymous", "awsAnonymousCredential"),
)


class StorageSpecError(StorageError):
    """A `storage:` spec that its Secret cannot complete (no such Secret or key, no type or bucket)."""


@dataclass(frozen=True)
class ResolvedStorage:
    """Where the model is and how to reach it. `env` holds secret values: give it to the fetch only."""

    uri: str
    secret: str  # the Secret's name
    key: str | None  # the entry read (None: the parameters alone were enough)
    overrides: dict[str, str] = field(default_factory=dict)  # the spec's parameters (STORAGE_OVERRIDE_CONFIG)
    env: dict[str, str] = field(default_factory=dict, repr=False)


def secret_name(annotations: Mapping[str, str]) -> str:
    """The Secret a service's `storage:` reads: `storage-config`, unless the annotation names another."""
    return annotations.get(SECRET_ANNOTATION) or DEFAULT_SECRET


def resolve_storage(
    key: str | None,
    path: str | None,
    parameters: Mapping[str, str],
    secret_data: Mapping[str, str] | None,
    secret: str = DEFAULT_SECRET,
    uri: str | None = None,
) -> ResolvedStorage:
    """KServe's rules. `secret_data` is the Secret's data as {key: JSON text} (None: no such Secret); `uri`:
    the model's storageUri, when the entry only gives its credentials (then no path).

    A `key` must exist in the Secret; without one the entry `default` is read (`default_<type>` when the
    parameters give a type), and may be missing only when the parameters give the type and the bucket (the
    type alone beside a storageUri)."""
    data = secret_data or {}
    where = f"storage secret {secret}" + ("" if secret_data is not None else " (no such Secret)")
    if key:
        if key not in data:
            raise StorageSpecError(f"specified storage key {key} not found in {where}")
        chosen: str | None = key
    else:
        chosen = f"{DEFAULT_KEY}_{parameters['type']}" if parameters.get("type") else DEFAULT_KEY
        if chosen not in data:
            if not optional_entry(key, parameters, uri):
                needs = "type" if uri else "type and bucket"
                raise StorageSpecError(
                    f"no storage key given and {where} has no entry {chosen!r}; add it, name an entry with "
                    f"storage.key, or give storage.parameters {needs}"
                )
            chosen = None
    config = _entry(data[chosen], chosen, secret) if chosen is not None else {}
    config.update(parameters)
    if uri is None:
        where_to = storage_uri(config, path or "")
    else:
        storage_type(config)  # KServe: "unable to determine storage type" without one
        where_to = uri
    return ResolvedStorage(where_to, secret, chosen, dict(parameters), env_from_config(config))


def _entry(text: str, key: str, secret: str) -> dict[str, str]:
    try:
        value: Any = json.loads(text)
    except ValueError as exc:
        raise StorageSpecError(f"entry {key} of storage secret {secret} is not JSON") from exc
    if not isinstance(value, dict):
        raise StorageSpecError(f"entry {key} of storage secret {secret} is not a JSON object")
    return _strings(value)


def _strings(value: dict[Any, Any]) -> dict[str, str]:
    """JSON values as the env strings they become (`true`, not `True`)."""
    return {str(k): json.dumps(v) if isinstance(v, bool) else str(v) for k, v in value.items()}


def storage_type(config: Mapping[str, str]) -> str:
    """The entry's `type` (parameters over it); KServe's errors when there is none or one it cannot read."""
    kind = config.get("type", "")
    if not kind:
        raise StorageSpecError("unable to determine storage type: the entry and storage.parameters give none")
    if kind not in TYPES:
        raise StorageSpecError(
            f"storage type must be one of [{', '.join(TYPES)}]. storage type [{kind}] is not supported"
        )
    return kind


def storage_uri(config: Mapping[str, str], path: str) -> str:
    """`s3://BUCKET/PATH`, or `hdfs://PATH` / `webhdfs://PATH`; KServe's errors otherwise."""
    kind = storage_type(config)
    path = path.lstrip("/")
    if kind == "s3":
        bucket = config.get("bucket", "")
        if not bucket:
            raise StorageSpecError(
                "format [s3] requires a bucket but one wasn't found in storage data or parameters"
            )
        return f"s3://{bucket}/{path}"
    return f"{kind}://{path}"


def env_from_config(config: Mapping[str, str]) -> dict[str, str]:
    """The S3 env of one JSON entry (with the parameters over it), as KServe's storage initializer sets it."""
    if config.get("type") != "s3":
        return {}
    return {env: str(config[entry]) for entry, env in S3_ENV if entry in config}


def config_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The storage-initializer's view: STORAGE_CONFIG (the Secret's entry, from a secretKeyRef) with
    STORAGE_OVERRIDE_CONFIG (the parameters) over it. Neither set: {}."""
    config: dict[str, str] = {}
    for name in (CONFIG_ENV, OVERRIDE_ENV):
        text = environ.get(name)
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise StorageSpecError(f"{name} is not JSON") from exc
        if not isinstance(value, dict):
            raise StorageSpecError(f"{name} is not a JSON object")
        config.update(_strings(value))
    return config


def fallback(
    key: str | None, parameters: Mapping[str, str], secret: str = DEFAULT_SECRET, uri: str | None = None
) -> ResolvedStorage:
    """What is rendered when the Secret cannot be read here: the storageUri if there is one, else no URI (the
    initializer builds it from its STORAGE_CONFIG), and the entry KServe would read (`key`, else `default` /
    `default_<type>`)."""
    chosen = key or (f"{DEFAULT_KEY}_{parameters['type']}" if parameters.get("type") else DEFAULT_KEY)
    return ResolvedStorage(uri or "", secret, chosen, dict(parameters))


def optional_entry(key: str | None, parameters: Mapping[str, str], uri: str | None = None) -> bool:
    """Whether the entry may be missing: no key given, and the parameters give the type and the bucket (beside
    a storageUri, the type alone)."""
    return not key and bool(parameters.get("type")) and (uri is not None or bool(parameters.get("bucket")))


def initializer_env(
    location: ResolvedStorage, key_given: str | None, storage_uri: str | None = None
) -> list[dict[str, Any]]:
    """KServe's env for the storage-initializer: STORAGE_CONFIG from the Secret's entry (a secretKeyRef: the
    value never lands in a manifest) and STORAGE_OVERRIDE_CONFIG, the parameters as JSON."""
    env: list[dict[str, Any]] = []
    if location.key is not None:
        ref: dict[str, Any] = {"name": location.secret, "key": location.key}
        if optional_entry(key_given, location.overrides, storage_uri):
            ref["optional"] = True
        env.append({"name": CONFIG_ENV, "valueFrom": {"secretKeyRef": ref}})
    env.append({"name": OVERRIDE_ENV, "value": json.dumps(location.overrides, sort_keys=True)})
    return env
