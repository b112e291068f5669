"""A predictor's storage credentials on Kubernetes, read as KServe's credential builder reads them.

The predictor's `serviceAccountName` ("default" when unset) names a ServiceAccount; each Secret in its
`secrets[]` list is read from the same namespace and handed to the renderer, which turns it into the
storage-initializer's env (`valueFrom.secretKeyRef`, never the value) and mounts
(`serving/storage/kserve_secrets.py`). As in KServe, a missing ServiceAccount means no credentials and a missing
Secret is skipped, each logged; a forbidden read (RBAC) is logged the same way. Only the Secrets' names,
annotations and key names leave this module: the values are dropped as soon as they are read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from serving.cluster import Cluster, PermanentClusterError
from serving.revision import Revision

log = logging.getLogger("serving.operator")
DEFAULT_ACCOUNT = "default"  # the pod's service account when the predictor names none, as in KServe


def account_of(revision: Revision) -> str:
    return revision.predictor.service_account_name or DEFAULT_ACCOUNT


def needs_credentials(revision: Revision) -> bool:
    """A storage-initializer that downloads: a pvc:// model is mounted, so no credentials are read for it."""
    uri = revision.storage_uri or ""
    return bool(uri) and not uri.startswith("pvc://")


def secrets_by_account(
    cluster: Cluster, namespace: str, revisions: Iterable[Revision]
) -> dict[str, list[dict[str, Any]]]:
    """Service account name -> its Secrets (values dropped), for every revision that downloads its model."""
    accounts = sorted({account_of(r) for r in revisions if needs_credentials(r)})
    return {account: account_secrets(cluster, namespace, account) for account in accounts}


def account_secrets(cluster: Cluster, namespace: str, account: str) -> list[dict[str, Any]]:
    """The Secrets listed by one ServiceAccount, in its order."""
    service_account = _read(cluster, "ServiceAccount", namespace, account)
    if service_account is None:
        return []
    out = []
    for ref in service_account.get("secrets") or []:
        name = (ref or {}).get("name")
        secret = _read(cluster, "Secret", namespace, name) if name else None
        if secret is not None:
            out.append(without_values(secret))
    return out


def without_values(secret: dict[str, Any]) -> dict[str, Any]:
    """Name, annotations and key names only: what the renderer needs, nothing a log or a dump could leak."""
    meta = secret.get("metadata") or {}
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    return {
        "metadata": {"name": meta.get("name", ""), "annotations": dict(meta.get("annotations") or {})},
        "data": {key: "" for key in sorted(keys)},
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
