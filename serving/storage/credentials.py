"""Object-store URIs and their credentials, resolved in this one place (KServe's environment conventions).

`parse_location` turns `s3://`, `gs://`, `az://` and `https://ACCOUNT.blob.core.windows.net/...` into an
`ObjectLocation`; `filesystem_options` reads the credentials for it from an environment mapping (the
`serving up` environment overlaid with the predictor's `env`, or the storage-initializer's env on Kubernetes)
and returns the fsspec protocol and keyword arguments. Nothing here touches the network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from serving.storage.errors import StorageError

AZURE_HOST_SUFFIX = ".blob.core.windows.net"
# KServe's other Azure Blob form: an account in a DNS zone (https://ACCOUNT.zNN.blob.storage.azure.net/...)
_AZURE_DNS_ZONE = re.compile(r"^(?P<account>[^.]+)\.z\d{1,2}\.blob\.storage\.azure\.net$")
# Azure Files (KServe's _AZURE_FILE_RE): a file share, not a blob container: not fetched here
AZURE_FILES = re.compile(r"^[^.]+\.(file\.core\.windows\.net|z\d{1,2}\.file\.storage\.azure\.net)$")
TRUE = ("1", "true", "yes", "on")
SECRET_NAMES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_SAS_TOKEN",
)
AWS_CHAIN_HINTS = (
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


@dataclass(frozen=True)
class ObjectLocation:
    provider: str  # "s3", "gs" or "az"
    bucket: str  # bucket (s3, gs) or container (az)
    key: str  # object key or prefix inside the bucket, no leading slash ("" = the whole bucket)
    account: str | None = None  # Azure storage account, when the URI names it
    host: str | None = None  # Azure: the account's blob host when it is not ACCOUNT.blob.core.windows.net

    @property
    def path(self) -> str:
        """The fsspec path: bucket/key."""
        return f"{self.bucket}/{self.key}".rstrip("/")


def is_object_uri(uri: str) -> bool:
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("s3", "gs", "az"):
        return True
    host = (urlsplit(uri).hostname or "").lower()
    return scheme == "https" and (host.endswith(AZURE_HOST_SUFFIX) or _AZURE_DNS_ZONE.match(host) is not None)


def parse_location(uri: str) -> ObjectLocation:
    """`ObjectLocation` for an object-store URI; `StorageError` naming the URI when it is malformed."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = None
    if scheme == "https":  # https://ACCOUNT.blob.core.windows.net/container/prefix (KServe's Azure forms)
        hostname = (parts.hostname or "").lower()
        zoned = _AZURE_DNS_ZONE.match(hostname)
        account = zoned["account"] if zoned else hostname.removesuffix(AZURE_HOST_SUFFIX)
        host = hostname if zoned else None
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        provider = "az"
    else:
        account, provider = None, scheme
        bucket, key = parts.netloc, unquote(parts.path).lstrip("/")
    if not bucket or "@" in bucket or ":" in bucket:
        what = "container" if provider == "az" else "bucket"
        raise StorageError(f"{uri}: no {what} name in the URI (expected {scheme}://{what.upper()}/PATH)")
    if parts.query or parts.fragment:
        raise StorageError(f"{uri}: query strings and fragments are not part of an object-store URI")
    if any(seg in ("..", ".") for seg in key.split("/")):
        raise StorageError(f"{uri}: '.' and '..' path segments are not allowed in an object key")
    return ObjectLocation(provider, bucket, key, account or None, host)


def filesystem_options(
    location: ObjectLocation, env: Mapping[str, str], timeout_s: float
) -> tuple[str, dict[str, Any]]:
    """(fsspec protocol, constructor kwargs) for `location` with the credentials found in `env`."""
    if location.provider == "s3":
        return "s3", _s3_options(location, env, timeout_s)
    if location.provider == "gs":
        return "gcs", _gcs_options(env, timeout_s)
    return "abfs", _azure_options(location, env)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The secret values present in `env`, so error messages can be scrubbed of them."""
    return [env[name] for name in SECRET_NAMES if env.get(name)]


def _s3_endpoint(env: Mapping[str, str]) -> str | None:
    if env.get("AWS_ENDPOINT_URL"):
        return env["AWS_ENDPOINT_URL"]
    endpoint = env.get("S3_ENDPOINT")
    if not endpoint:
        return None
    if "://" in endpoint:
        return endpoint
    return ("http://" if env.get("S3_USE_HTTPS", "1") == "0" else "https://") + endpoint


def _max_attempts(location: ObjectLocation, env: Mapping[str, str]) -> int:
    """3 attempts in all unless AWS_MAX_ATTEMPTS (the AWS SDKs' own variable: attempts including the first)
    says otherwise; tests set 1, so a refused or TLS-failing endpoint fails without backoff."""
    value = env.get("AWS_MAX_ATTEMPTS", "").strip()
    if not value:
        return 3
    if not value.isdigit() or int(value) < 1:
        raise StorageError(
            f"s3://{location.path}: AWS_MAX_ATTEMPTS must be a whole number of attempts >= 1, not {value!r}"
        )
    return int(value)


def _s3_options(location: ObjectLocation, env: Mapping[str, str], timeout_s: float) -> dict[str, Any]:
    client: dict[str, Any] = {}
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")
    if region:
        client["region_name"] = region
    if env.get("S3_VERIFY_SSL", "1").lower() in ("0", "false"):
        client["verify"] = False
    elif env.get("AWS_CA_BUNDLE"):
        client["verify"] = env["AWS_CA_BUNDLE"]
    options: dict[str, Any] = {
        "endpoint_url": _s3_endpoint(env),
        "client_kwargs": client,
        "config_kwargs": {
            "connect_timeout": timeout_s,
            "read_timeout": timeout_s,
            "retries": {"total_max_attempts": _max_attempts(location, env), "mode": "standard"},
        },
    }
    if env.get("S3_USER_VIRTUAL_BUCKET", "").lower() in TRUE:  # KServe's s3-usevirtualbucket annotation
        options["config_kwargs"]["s3"] = {"addressing_style": "virtual"}
    if env.get("awsAnonymousCredential", "").lower() in TRUE:
        return {**options, "anon": True}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return {
            **options,
            "key": env["AWS_ACCESS_KEY_ID"],
            "secret": env["AWS_SECRET_ACCESS_KEY"],
            "token": env.get("AWS_SESSION_TOKEN") or None,
        }
    if any(env.get(name) for name in AWS_CHAIN_HINTS):
        return options  # botocore's own chain: web identity (IRSA), container credentials, a profile
    raise StorageError(
        f"s3://{location.path}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in the "
        "environment of `serving up`, the predictor's env, or a Secret on the service account), or "
        "awsAnonymousCredential=true for a public bucket"
    )


def _gcs_options(env: Mapping[str, str], timeout_s: float) -> dict[str, Any]:
    options: dict[str, Any] = {"requests_timeout": timeout_s}
    if env.get("STORAGE_EMULATOR_HOST"):
        host = env["STORAGE_EMULATOR_HOST"]
        options["endpoint_url"] = host if "://" in host else f"http://{host}"
    key_file = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key_file:
        if not os.path.isfile(key_file):
            raise StorageError(
                f"GOOGLE_APPLICATION_CREDENTIALS names {key_file}, which is not a readable file"
            )
        _check_key_file(key_file)
        return {**options, "token": key_file}
    return {**options, "token": "anon"}  # KServe falls back to an anonymous client: public buckets


# What google-auth needs of each kind of key file (a file without them failed as "KeyError: 'refresh_token'")
GCS_KEY_FIELDS = {
    "service_account": ("client_email", "private_key", "token_uri"),
    "authorized_user": ("client_id", "client_secret", "refresh_token"),
    "external_account": ("audience", "subject_token_type", "credential_source"),
}


def _check_key_file(path: str) -> None:
    """A Google credentials file that google-auth can use; else what is wrong with it (never a value)."""
    try:
        with open(path, "rb") as handle:
            doc = orjson.loads(handle.read())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StorageError(
            f"GOOGLE_APPLICATION_CREDENTIALS {path}: not a JSON key file ({type(exc).__name__})"
        ) from exc
    kind = doc.get("type") if isinstance(doc, dict) else None
    needed = GCS_KEY_FIELDS.get(kind) if isinstance(kind, str) else None
    if needed is None:
        raise StorageError(
            f"GOOGLE_APPLICATION_CREDENTIALS {path}: not a Google credentials file (its type must be one of "
            f"{', '.join(GCS_KEY_FIELDS)}; a service-account key from the console has type service_account)"
        )
    missing = [f for f in needed if not doc.get(f)]
    if missing:
        raise StorageError(
            f"GOOGLE_APPLICATION_CREDENTIALS {path}: a {kind} key without {', '.join(missing)}"
        )


def _azure_options(location: ObjectLocation, env: Mapping[str, str]) -> dict[str, Any]:
    conn = env.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn:
        return {"connection_string": conn}
    account = location.account or env.get("AZURE_STORAGE_ACCOUNT_NAME") or env.get("AZURE_STORAGE_ACCOUNT")
    if not account:
        raise StorageError(
            f"az://{location.path}: no storage account: use https://ACCOUNT.blob.core.windows.net/"
            "CONTAINER/PATH or set AZURE_STORAGE_ACCOUNT_NAME"
        )
    options: dict[str, Any] = {"account_name": account}
    endpoint = env.get("AZURE_STORAGE_BLOB_ENDPOINT")  # a private endpoint or an emulator (http allowed)
    if endpoint and env.get("AZURE_STORAGE_ACCESS_KEY"):
        return {
            "connection_string": f"AccountName={account};AccountKey={env['AZURE_STORAGE_ACCESS_KEY']};"
            f"BlobEndpoint={endpoint};"
        }
    if endpoint and urlsplit(endpoint).scheme == "http":
        # Plain http (an emulator, a private endpoint): only a connection string carries the scheme and the
        # path; `account_host` is always https://HOST
        if env.get("AZURE_STORAGE_SAS_TOKEN"):
            sas = env["AZURE_STORAGE_SAS_TOKEN"].lstrip("?")
            return {"connection_string": f"BlobEndpoint={endpoint};SharedAccessSignature={sas}"}
        if env.get("AZURE_CLIENT_ID") and env.get("AZURE_TENANT_ID") and env.get("AZURE_CLIENT_SECRET"):
            raise StorageError(
                f"az://{location.path}: a service principal's token is sent over https only: "
                "AZURE_STORAGE_BLOB_ENDPOINT must be https:// (or use a SAS token or an access key)"
            )
        return {"connection_string": f"BlobEndpoint={endpoint};"}  # a public container
    if endpoint:  # https: the host and any path (an account under a path), as account_host takes them
        parts = urlsplit(endpoint)
        options["account_host"] = (parts.netloc + parts.path).rstrip("/")
    elif location.host:  # an account in a DNS zone: its own host
        options["account_host"] = location.host
    if env.get("AZURE_STORAGE_ACCESS_KEY"):
        return {**options, "account_key": env["AZURE_STORAGE_ACCESS_KEY"]}
    if env.get("AZURE_STORAGE_SAS_TOKEN"):
        return {**options, "sas_token": env["AZURE_STORAGE_SAS_TOKEN"]}
    if env.get("AZURE_CLIENT_ID") and env.get("AZURE_TENANT_ID") and env.get("AZURE_CLIENT_SECRET"):
        return {
            **options,
            "client_id": env["AZURE_CLIENT_ID"],
            "tenant_id": env["AZURE_TENANT_ID"],
            "client_secret": env["AZURE_CLIENT_SECRET"],
        }
    return {**options, "anon": True}  # a public container
