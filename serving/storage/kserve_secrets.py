"""KServe's storage credentials on Kubernetes: the Secrets attached to a predictor's service account become the
storage-initializer's env (and, for GCS, a mounted key file), exactly as KServe's credential builder does.

S3: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` from the Secret (keys of those names, or KServe's older
`awsAccessKeyID` / `awsSecretAccessKey`) plus the `serving.kserve.io/s3-*` annotations: `s3-endpoint` ->
`S3_ENDPOINT` and `AWS_ENDPOINT_URL` (https:// unless `s3-usehttps: "0"`), `s3-usehttps` -> `S3_USE_HTTPS`,
`s3-verifyssl` -> `S3_VERIFY_SSL`, `s3-region` -> `AWS_DEFAULT_REGION`, `s3-useanoncredential` ->
`awsAnonymousCredential`, `s3-cabundle` -> `AWS_CA_BUNDLE`, `s3-usevirtualbucket` -> `S3_USER_VIRTUAL_BUCKET`.
GCS: a `gcloud-application-credentials.json` key, mounted read-only; `GOOGLE_APPLICATION_CREDENTIALS` names it.
Azure: `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_SUBSCRIPTION_ID` (or the
`AZ_CLIENT_ID`, `AZ_TENANT_ID`, `AZ_CLIENT_SECRET`, `AZ_SUBSCRIPTION_ID` keys KServe's Azure docs use),
`AZURE_STORAGE_ACCESS_KEY` (and a connection string) from the Secret. http(s): a Secret with `https-host` and
`headers` (a JSON object) gives env `<host>-headers`, which the fetch of a URL on that host sends as request
headers (`serving.storage.http`). Pure: no API calls here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ANNOTATION = "serving.kserve.io/"
IAM_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"  # an IRSA ServiceAccount: its own s3-* annotations count
S3_ANNOTATIONS = (  # annotation suffix -> env name, in KServe's order
    ("s3-usehttps", "S3_USE_HTTPS"),
    ("s3-verifyssl", "S3_VERIFY_SSL"),
    ("s3-useanoncredential", "awsAnonymousCredential"),
    ("s3-region", "AWS_DEFAULT_REGION"),
    ("s3-usevirtualbucket", "S3_USER_VIRTUAL_BUCKET"),
    ("s3-cabundle", "AWS_CA_BUNDLE"),
)
S3_KEYS = (
    ("AWS_ACCESS_KEY_ID", ("AWS_ACCESS_KEY_ID", "awsAccessKeyID")),
    ("AWS_SECRET_ACCESS_KEY", ("AWS_SECRET_ACCESS_KEY", "awsSecretAccessKey")),
)
AZURE_KEYS = (  # env name -> the Secret's keys that give it: its own name, else KServe's legacy `AZ_*` one
    ("AZURE_CLIENT_ID", ("AZURE_CLIENT_ID", "AZ_CLIENT_ID")),
    ("AZURE_TENANT_ID", ("AZURE_TENANT_ID", "AZ_TENANT_ID")),
    ("AZURE_CLIENT_SECRET", ("AZURE_CLIENT_SECRET", "AZ_CLIENT_SECRET")),
    ("AZURE_SUBSCRIPTION_ID", ("AZURE_SUBSCRIPTION_ID", "AZ_SUBSCRIPTION_ID")),
    ("AZURE_STORAGE_ACCESS_KEY", ("AZURE_STORAGE_ACCESS_KEY",)),
    ("AZURE_STORAGE_CONNECTION_STRING", ("AZURE_STORAGE_CONNECTION_STRING",)),
)
GCS_KEY_FILE = "gcloud-application-credentials.json"
HTTPS_HOST = "https-host"  # the host name (not a secret: the operator keeps it to name the env)
HTTPS_HEADERS = "headers"
GCS_MOUNT = "/var/secrets"


@dataclass
class StorageCredentials:
    env: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)


def account_entry(account: Mapping[str, Any]) -> dict[str, Any]:
    """The ServiceAccount itself, as the first entry of its Secrets' list: its annotations count when it is an
    IAM-role (IRSA) account (`credentials_from_secrets`)."""
    meta = account.get("metadata") or {}
    return {
        "kind": "ServiceAccount",
        "metadata": {"name": meta.get("name", ""), "annotations": dict(meta.get("annotations") or {})},
    }


def credentials_from_secrets(secrets: Iterable[Mapping[str, Any]]) -> StorageCredentials:
    """The storage-initializer's env, volumes and mounts for the Secrets of one service account. An entry of
    kind ServiceAccount (`account_entry`) is the account: with KServe's IAM-role annotation
    (`eks.amazonaws.com/role-arn`) its own `serving.kserve.io/s3-*` annotations give the S3 endpoint and
    options, as KServe's credential builder reads them (the keys come from the role, not a Secret)."""
    out = StorageCredentials()
    for secret in secrets:
        if secret.get("kind") == "ServiceAccount":
            annotations = secret.get("metadata", {}).get("annotations") or {}
            if IAM_ROLE_ANNOTATION in annotations:
                out.env += _s3_annotation_env(annotations)
            continue
        name = secret.get("metadata", {}).get("name", "")
        keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
        annotations = secret.get("metadata", {}).get("annotations") or {}
        out.env += _s3_env(name, keys, annotations)
        out.env += _keyed_env(name, keys, AZURE_KEYS)
        if GCS_KEY_FILE in keys:
            volume = f"gcs-{name}"[:63]
            out.volumes.append({"name": volume, "secret": {"secretName": name}})
            out.mounts.append({"name": volume, "mountPath": GCS_MOUNT, "readOnly": True})
            out.env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_MOUNT}/{GCS_KEY_FILE}"})
        host = https_host(secret)
        if host and HTTPS_HEADERS in keys:
            out.env.append(_from_secret(headers_env(host), name, HTTPS_HEADERS))
    return out


def headers_env(host: str) -> str:
    """The env naming the request headers for one host, as KServe's storage-initializer reads it."""
    return f"{host.strip().lower()}-headers"


def https_host(secret: Mapping[str, Any]) -> str:
    """A Secret's `https-host` value (`stringData`, else `data` base64-decoded), "" when it has none."""
    value = (secret.get("stringData") or {}).get(HTTPS_HOST)
    if isinstance(value, str):
        return value.strip()
    encoded = (secret.get("data") or {}).get(HTTPS_HOST)
    try:
        return base64.b64decode(str(encoded), validate=True).decode().strip() if encoded else ""
    except (binascii.Error, ValueError):
        return ""


def _keyed_env(
    secret: str, keys: set[str], wanted: tuple[tuple[str, tuple[str, ...]], ...]
) -> list[dict[str, Any]]:
    """An env entry per wanted name the Secret has a key for, from the first of its candidate keys present."""
    env = []
    for env_name, candidates in wanted:
        key = next((k for k in candidates if k in keys), None)
        if key is not None:
            env.append(_from_secret(env_name, secret, key))
    return env


def _from_secret(env: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _s3_env(name: str, keys: set[str], annotations: Mapping[str, str]) -> list[dict[str, Any]]:
    env = _keyed_env(name, keys, S3_KEYS)
    if not env and not any(k.startswith(ANNOTATION + "s3-") for k in annotations):
        return []
    return env + _s3_annotation_env(annotations)


def _s3_annotation_env(annotations: Mapping[str, str]) -> list[dict[str, Any]]:
    """The `serving.kserve.io/s3-*` annotations as the storage-initializer's env (KServe's BuildS3EnvVars)."""
    env: list[dict[str, Any]] = []
    endpoint = annotations.get(ANNOTATION + "s3-endpoint")
    if endpoint:
        scheme = "http://" if annotations.get(ANNOTATION + "s3-usehttps") == "0" else "https://"
        env += [
            {"name": "S3_ENDPOINT", "value": endpoint},
            {"name": "AWS_ENDPOINT_URL", "value": scheme + endpoint},
        ]
    for suffix, env_name in S3_ANNOTATIONS:
        value = annotations.get(ANNOTATION + suffix)
        if value is not None and value != "":
            env.append({"name": env_name, "value": str(value)})
    return env
