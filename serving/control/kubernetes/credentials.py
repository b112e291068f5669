"""A predictor's storage credentials on Kubernetes, read as KServe's credential builder reads them.

The predictor's `serviceAccountName` ("default" when unset) names a ServiceAccount; each Secret in its
`secrets[]` list is read from the same namespace and handed to the renderer, which turns it into the
storage-initializer's env (`valueFrom.secretKeyRef`, never the value) and mounts
(`serving/storage/kserve_secrets.py`). As in KServe, a missing ServiceAccount means no credentials and a missing
Secret is skipped, each logged; a forbidden read (RBAC) is logged the same way. Only the Secrets' names,
annotations and key names leave this module: the values are dropped as soon as they are read.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from serving.cluster import Cluster, PermanentClusterError
from serving.revision import Revision
from serving.storage.kserve_secrets import HTTPS_HOST, account_entry, https_host
from serving.storage.storage_spec import (
    ResolvedStorage,
    StorageSpecError,
    fallback,
    resolve_storage,
    secret_name,
)

log = logging.getLogger("serving.operator")


def secrets_by_account(
    cluster: Cluster, namespace: str, revisions: Iterable[Revision]
) -> dict[str, list[dict[str, Any]]]:
    """Service account name -> its Secrets (values dropped), for every revision that downloads its model."""
    accounts = sorted({r.service_account for r in revisions if r.reads_account_credentials})
    return {account: account_secrets(cluster, namespace, account) for account in accounts}


def account_secrets(cluster: Cluster, namespace: str, account: str) -> list[dict[str, Any]]:
    """The Secrets listed by one ServiceAccount, in its order."""
    service_account = _read(cluster, "ServiceAccount", namespace, account)
    if service_account is None:
        return []
    out = [account_entry(service_account)]  # an IAM-role account's own s3-* annotations count
    for ref in service_account.get("secrets") or []:
        name = (ref or {}).get("name")
        secret = _read(cluster, "Secret", namespace, name) if name else None
        if secret is not None:
            out.append(without_values(secret))
    return out


def without_values(secret: dict[str, Any]) -> dict[str, Any]:
    """Name, annotations and key names only: what the renderer needs, nothing a log or a dump could leak;
    but for `https-host`, a host name that names the headers' env (as KServe's builder writes it)."""
    meta = secret.get("metadata") or {}
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    host = https_host(secret)
    return {
        "metadata": {"name": meta.get("name", ""), "annotations": dict(meta.get("annotations") or {})},
        "data": {key: "" for key in sorted(keys)},
        **({"stringData": {HTTPS_HOST: host}} if host else {}),
    }


def _read(cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found = cluster.get(kind, namespace, name)
    except PermanentClusterError as exc:  # e.g. 403: the operator may not read it; KServe logs and goes on
        log.warning("storage credentials: cannot read %s %s/%s: %s", kind, namespace, name, exc.message)
        return None
    if found is None:
        log.warning("storage credentials: %s %s/%s not found; no credentials from it", kind, namespace, name)
    return found


def decoded_data(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret object's values as text: `data` base64-decoded, `stringData` over it (as the API server merges
    them); an undecodable value is left out (the storage-initializer's secretKeyRef still reads it)."""
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[str(key)] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, ValueError):
            continue
    out.update({str(k): str(v) for k, v in (secret.get("stringData") or {}).items()})
    return out


def storage_locations(
    revisions: Iterable[Revision],
    annotations: Mapping[str, str],
    read: Callable[[str], Mapping[str, str] | None],
    unseen: str,
) -> tuple[dict[str, ResolvedStorage], list[str]]:
    """Revision name -> where its `storage:` points (the URI from the storage Secret's entry; values dropped),
    and what could not be resolved. `read(name)` gives the Secret's data, None when it cannot be seen (`unseen`
    says where it was looked for): then, and on a resolution error, the revision renders its path and entry,
    and the storage-initializer builds the URI from its STORAGE_CONFIG when it starts (or says why not)."""
    with_storage = [r for r in revisions if r.storage is not None]
    if not with_storage:
        return {}, []
    name = secret_name(annotations)
    data = read(name)
    out: dict[str, ResolvedStorage] = {}
    problems: list[str] = []
    for revision in with_storage:
        spec = revision.storage
        assert spec is not None
        try:
            out[revision.name] = replace(
                resolve_storage(spec.key, spec.path, spec.parameters, data, name, revision.storage_uri),
                env={},
            )
            continue
        except StorageSpecError as exc:
            out[revision.name] = fallback(spec.key, spec.parameters, name, revision.storage_uri)
            why = f"Secret {name} {unseen}" if data is None else exc.message
        rendered = (
            f"rendered with storageUri {revision.storage_uri}: the storage-initializer reads its credentials"
            if revision.storage_uri
            else f"rendered with storage.path {spec.path!r}: the storage-initializer builds the URI"
        )
        problems.append(
            f"spec.predictor.model.storage: {why}; {rendered} from entry {out[revision.name].key} of Secret "
            f"{name} (STORAGE_CONFIG) when it starts"
        )
    return out, problems


def storage_secret(cluster: Cluster, namespace: str, name: str) -> dict[str, str] | None:
    """The data of a `storage:` Secret, decoded (None: missing or not readable, logged): read for its type and
    bucket; `storage_locations` keeps neither the object nor its values."""
    secret = _read(cluster, "Secret", namespace, name)
    return decoded_data(secret) if secret is not None else None
